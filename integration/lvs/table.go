package lvs

import (
	"fmt"
	"strings"
)

// Health checks for the pool's services: quick, so that scenarios and the lab are.
const (
	HTTPCheck = `  check "http" {
    path     = "/index.html"
    expect   = "Test Page"
    interval = "500ms"
    timeout  = "250ms"
    rise     = 2
    fall     = 2
  }
`
	TCPCheck = `  check "tcp" {
    interval = "500ms"
    timeout  = "250ms"
  }
`
)

// FallbackBlock is a service's fallback block sending to the sorry server's port 80.
var FallbackBlock = fmt.Sprintf("  fallback {\n    address = %q\n    port    = 80\n  }\n", FallbackAddr)

// Service is a table file's service on the VIP: round robin, a real removed (not quiesced) when
// down. extra is more of the block (a check, a fallback); reals are real labels (address[:port]).
func Service(name string, port int, forwarding, extra string, reals ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "service %q {\n  vip        = %q\n  port       = %d\n  protocol   = \"tcp\"\n  scheduler  = \"rr\"\n  forwarding = %q\n  quiescent  = false\n%s",
		name, VIP, port, forwarding, extra)
	for _, r := range reals {
		fmt.Fprintf(&b, "  real %q {}\n", r)
	}
	b.WriteString("}\n")
	return b.String()
}

// WebService is the seed's service (deploy/examples/seed-table.hcl) on the pool's addresses: the
// VIP on port 80, LVS-DR to r1 and r2, an HTTP check of /index.html expecting "Test Page", plus
// extra (a fallback, say).
func WebService(extra string) string {
	return Service("web", 80, "dr", HTTPCheck+extra, RealAddr(1), RealAddr(2))
}
