service "bare" {
  vip      = "2001:db8::10"
  port     = 53
  protocol = "udp"
}

service "mark" {
  fwmark      = 4294967295
  family      = "ipv6"
  scheduler   = "mh"
  sched_flags = ["mh-port"]
  forwarding  = "tun"
  persistence {
    timeout = "1s"
  }
  check "icmp" {
    interval = "500ms"
  }
  fallback {
    address = "::1"
  }
  real "2001:db8::21" {}
  real "[2001:db8::22]:53" {
    forwarding = "dr"
  }
}

service "web" {
  vip         = "192.0.2.10"
  port        = 443
  family      = "ipv4"
  scheduler   = "sh"
  sched_flags = ["sh-fallback", "sh-port"]
  forwarding  = "nat"
  quiescent   = true
  persistence {
    timeout = "5m"
    netmask = 24
  }
  check "https" {
    port            = 8443
    interval        = "5s"
    timeout         = "1.5s"
    rise            = 3
    fall            = 4
    initial_state   = "down"
    path            = "/health"
    host            = "www.example.org"
    expect_status   = ["200-299", "301"]
    expect          = "ok"
    expect_regexp   = "^ok\\s+\"quoted\" $${not} %%{a template}$"
    tls_skip_verify = true
    ca_file         = "/etc/troop/ca.pem"
    send            = "PING\r\n"
    query           = "example.org"
    query_type      = "AAAA"
    expect_rcode    = "NXDOMAIN"
    expect_answer   = "2001:db8::1"
    command         = ["/bin/check", "--name=ünïcode", ""]
  }
  fallback {
    address    = "127.0.0.1"
    port       = 8080
    forwarding = "nat"
  }
  real "192.0.2.21:8443" {
    weight          = 0
    forwarding      = "nat"
    upper_threshold = 1000
    lower_threshold = 10
    admin           = "disabled"
  }
  real "192.0.2.22" {}
  real "192.0.2.23" {
    weight = 1
    admin  = "draining"
  }
}

vip_group "front" {
  interface = "eth0.100"
  vips      = ["192.0.2.9/25", "192.0.2.10"]
}

vip_group "v6" {
  vips = ["2001:db8::10/64"]
}
