//go:build troop_protocol1

package fsm

// ProtocolVersion is the protocol this build speaks. This is the protocol-1 build
// (-tags troop_protocol1): it knows none of the later entry types, as an agent of the previous
// release would not, so a log entry of one of them halts its FSM.
const ProtocolVersion = 1

// laterOps is empty in the protocol-1 build.
var laterOps = map[Op]int{}
