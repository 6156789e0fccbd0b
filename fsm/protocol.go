//go:build !troop_protocol1

package fsm

// ProtocolVersion is the protocol this build speaks: the log entry types it applies. A leader
// proposes an entry only when every server in the pool speaks the entry's protocol
// (Op.MinProtocol). Build with -tags troop_protocol1 for a protocol-1 agent, the "N-1" of a
// rolling-upgrade test.
const ProtocolVersion = 3

// laterOps are the entry types added after protocol 1, with the protocol that added each.
var laterOps = map[Op]int{
	OpSetHostAdmin: 2,
	OpUpsertToken:  3,
	OpDeleteToken:  3,
}
