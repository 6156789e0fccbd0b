package lvs

import (
	"context"
	"strconv"
	"strings"
)

// What `make lab` (integration/lab) needs of a pool beyond what the scenarios use.

// Prefix is what every namespace of the pool is named with ("tp1234": tp1234-hub, tp1234-d1,
// ...); `integration/lab -down PREFIX` removes a pool left running by `make lab KEEP=1`.
func (p *Pool) Prefix() string { return p.prefix }

// Dests is director's IPVS table for the TCP service vipPort ("192.0.2.100:80"), read with
// `ipvsadm -Ln`: each destination "address:port" with its weight. A missing service is an empty
// map, not an error.
func (p *Pool) Dests(ctx context.Context, director, vipPort string) (map[string]int, error) {
	out, err := p.IPVS(ctx, director)
	if err != nil {
		return nil, err
	}
	return parseDests(out, vipPort), nil
}

// parseDests reads `ipvsadm -Ln` output into the destinations of the TCP service vipPort,
// address:port → weight.
func parseDests(ipvsadmLn, vipPort string) map[string]int {
	dests := map[string]int{}
	in := false
	for _, line := range strings.Split(ipvsadmLn, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && (f[0] == "TCP" || f[0] == "UDP" || f[0] == "FWM"):
			in = f[0] == "TCP" && f[1] == vipPort
		case in && len(f) >= 4 && f[0] == "->" && f[1] != "RemoteAddress:Port":
			w, _ := strconv.Atoi(f[3])
			dests[f[1]] = w
		}
	}
	return dests
}
