package lvs

import (
	"context"
	"fmt"
	"strings"
)

// partitionTable is the nftables table (bridge family, in the hub namespace) that holds the
// partition rules. Heal deletes it; Close deletes the hub namespace, which takes it along, so a
// pool closed while partitioned leaves nothing behind.
const partitionTable = "troop_partition"

// Isolate cuts node off from each of the nodes in from, and only from them: the bridge drops
// every frame (ARP and neighbour discovery included) between node's port and theirs, in both
// directions, while node still reaches, and is reached by, everyone else (the client, say).
// This is the partition that ends with two masters under VRRP: the directors cannot hear each
// other, the client hears both. The rules add to those already installed; Heal removes them all.
func (p *Pool) Isolate(ctx context.Context, node string, from ...string) error {
	n := p.nodes[node]
	if n == nil {
		return fmt.Errorf("isolate %q: no such node", node)
	}
	// The forward hook of the bridge family sees every frame the bridge passes from one port to
	// another, a flooded broadcast once per output port: matching on both port names drops
	// exactly the pair's traffic.
	script := []string{
		"add table bridge " + partitionTable,
		"add chain bridge " + partitionTable + " forward { type filter hook forward priority 0 ; policy accept ; }",
	}
	for _, f := range from {
		o := p.nodes[f]
		if o == nil {
			return fmt.Errorf("isolate %s from %q: no such node", node, f)
		}
		for _, pair := range [][2]string{{n.link, o.link}, {o.link, n.link}} {
			script = append(script, fmt.Sprintf("add rule bridge %s forward iifname %q oifname %q counter drop",
				partitionTable, pair[0], pair[1]))
		}
	}
	if err := p.nft(ctx, script); err != nil {
		return fmt.Errorf("isolate %s from %v: %w", node, from, err)
	}
	p.logf("isolated %s from %v", node, from)
	return nil
}

// Heal removes every partition Isolate installed. Healing an unpartitioned pool is no error.
func (p *Pool) Heal(ctx context.Context) error {
	// "add" first makes the delete succeed when there is nothing to delete.
	if err := p.nft(ctx, []string{"add table bridge " + partitionTable, "delete table bridge " + partitionTable}); err != nil {
		return fmt.Errorf("heal the partition: %w", err)
	}
	p.logf("healed the partition")
	return nil
}

// nft runs statements as one nft transaction in the hub namespace: all of them apply or none.
func (p *Pool) nft(ctx context.Context, statements []string) error {
	return p.in(ctx, p.hub, "nft", strings.Join(statements, " ; "))
}
