# The seed deployment: the UltraMonkey LVS-DR pool of the Korean slide deck
# (/work/shared/reference/ultramonkey-lvs-ha-slides.ko.txt), written as a Troop table. The
# slides' public addresses are replaced by documentation ones, keeping the host numbers:
# 211.58.250.6 (the VIP) is 192.0.2.6, the web nodes .25 and .27 are 192.0.2.25 and .27.
#
# The slides' /etc/ha.d/conf/ldirectord.cf:
#
#   timeout=3
#   checkinterval=1
#   fallback=127.0.0.1:80
#   virtual=211.58.250.6:80
#           real=211.58.250.25:80 gate
#           real=211.58.250.27:80 gate
#           service=http
#           request="index.html"
#           receive="Test Page"
#           scheduler=rr
#           protocol=tcp

service "web" {
  vip        = "192.0.2.6"
  port       = 80
  protocol   = "tcp"
  scheduler  = "rr"
  forwarding = "dr" # ldirectord's "gate"
  # A failed real server stays in IPVS at weight 0 instead of being removed, as ldirectord's
  # quiescent=yes default does, so its established connections are not cut.
  quiescent = true

  check "http" {
    path   = "/index.html" # request="index.html"
    expect = "Test Page"   # receive="Test Page"
    # checkinterval=1. ldirectord's timeout=3 is longer than its interval, which Troop refuses
    # (a check would still run when the next one starts), so the timeout is half the interval.
    interval = "1s"
    timeout  = "500ms"
    # ldirectord has no rise: one good check re-adds a server, one failed check removes it.
    rise = 1
    fall = 1
  }

  # The director's own web server answers when both real servers are down.
  fallback {
    address = "127.0.0.1"
    port    = 80
  }

  real "192.0.2.25" {}
  real "192.0.2.27" {}
}

# Heartbeat's haresources put the VIP on eth0 with netmask 255.255.255.128 (IPaddr's
# "ifconfig eth0:0 211.58.250.6 netmask 255.255.255.128"); in Troop the Raft leader holds it.
vip_group "front" {
  interface = "eth0"
  vips      = ["192.0.2.6/25"]
}
