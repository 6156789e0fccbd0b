# The table of the pool in d1.hcl, d2.hcl and d3.hcl: the seed deployment (seed-table.hcl) on the
# pool's addresses. Apply it on any director: troop apply -f table.hcl
#
# One HTTP service on the VIP, round robin over two real servers by direct routing (LVS-DR: each
# real server has the VIP on lo, `troop realserver setup --vip 192.0.2.100`). A real server whose
# page lacks "Test Page" is removed, not quiesced, as ldirectord did; with both down the local
# fallback server answers.
service "web" {
  vip        = "192.0.2.100"
  port       = 80
  protocol   = "tcp"
  scheduler  = "rr"
  forwarding = "dr"
  quiescent  = false

  check "http" {
    method   = "GET"
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

vip_group "pool" {
  interface = "eth0"
  vips      = ["192.0.2.100/24"]
}
