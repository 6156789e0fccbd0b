# The seed deployment (UltraMonkey: Heartbeat + ldirectord, LVS-DR) as a Troop table, with
# documentation addresses. Its ldirectord.cf: checkinterval=1 timeout=3 fallback=127.0.0.1:80
# virtual=VIP:80, two reals "gate", service=http request="index.html" receive="Test Page"
# scheduler=rr protocol=tcp; failed servers were removed (not quiesced).
service "web" {
  vip        = "192.0.2.6"
  port       = 80
  protocol   = "tcp"
  scheduler  = "rr"
  forwarding = "dr"
  quiescent  = false

  check "http" {
    path     = "/index.html"
    expect   = "Test Page"
    interval = "1s"
    timeout  = "500ms"
  }

  fallback {
    address = "127.0.0.1"
    port    = 80
  }

  real "192.0.2.21" {}
  real "192.0.2.22" {}
}

vip_group "seed" {
  interface = "eth0"
  vips      = ["192.0.2.6/25"]
}
