package director

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// guardTable is the nftables table (one per address family) that holds the guard.
const guardTable = "troop_guard"

// guardPriority runs the guard's input chain after IPVS, whose LOCAL_IN hooks sit at 98 and 99
// (NF_IP_PRI_NAT_SRC - 2 and - 1): segments IPVS forwards never get here.
const guardPriority = nftables.ChainPriority(200)

// nftGuard is the TakeoverGuard on nftables, in the process's network namespace.
type nftGuard struct{}

// NewTakeoverGuard returns the nftables guard after checking that nftables answers.
func NewTakeoverGuard() (TakeoverGuard, error) {
	g := nftGuard{}
	if err := g.Set(nil); err != nil {
		return nil, err
	}
	return g, nil
}

// Set rebuilds both tables in one transaction: delete what is there, then add the rules.
func (nftGuard) Set(ports []netip.AddrPort) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6} {
		t := &nftables.Table{Family: fam, Name: guardTable}
		// Adding first makes the delete valid whether or not the table existed.
		c.AddTable(t)
		c.DelTable(t)
		var mine []netip.AddrPort
		for _, p := range ports {
			if p.Addr().Is4() == (fam == nftables.TableFamilyIPv4) {
				mine = append(mine, p)
			}
		}
		if len(mine) == 0 {
			continue
		}
		c.AddTable(t)
		ch := c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityRef(guardPriority)})
		for _, p := range mine {
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: guardRule(p)})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: set the takeover guard on %d services: %w", len(ports), err)
	}
	return nil
}

func (g nftGuard) Close() error { return g.Set(nil) }

// guardRule drops TCP to p without SYN: `ip daddr A tcp dport P tcp flags & syn == 0 drop`,
// written with payload matches only (no meta expression, which older kernels build as a module).
func guardRule(p netip.AddrPort) []expr.Any {
	addrOff, protoOff := uint32(16), uint32(9) // IPv4 header: daddr, protocol
	if p.Addr().Is6() {
		addrOff, protoOff = 24, 6 // IPv6 header: daddr, next header
	}
	addr := p.Addr().AsSlice()
	port := []byte{byte(p.Port() >> 8), byte(p.Port())}
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: protoOff, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{6}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: addrOff, Len: uint32(len(addr))},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: port},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x02}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0}},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
}
