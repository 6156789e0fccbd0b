package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"
)

// CommandVersion is the format version of the commands this build writes. A log entry with a
// higher version is not applied by guesswork: it halts the FSM (ErrNewerVersion, see
// FSM.Apply). New entry types do not change it; they are gated by protocol (Op.MinProtocol).
const CommandVersion = 1

// Op is the type of a command.
type Op string

// Command types.
const (
	OpUpsertService Op = "upsert_service"
	OpDeleteService Op = "delete_service"
	OpUpsertReal    Op = "upsert_real"
	OpDeleteReal    Op = "delete_real"
	OpSetWeight     Op = "set_weight"
	OpSetAdmin      Op = "set_admin"
	OpRecordHealth  Op = "record_health"
	OpApplyTable    Op = "apply_table"
	OpRestore       Op = "restore"
	// OpSetHostAdmin sets the admin state of every real server at one address, in every
	// service. Protocol 2: the protocol-1 build does not know it.
	OpSetHostAdmin Op = "set_host_admin"
	// OpUpsertToken creates or replaces an ACL token (its hash, never its secret), and
	// OpDeleteToken removes one. Protocol 3.
	OpUpsertToken Op = "upsert_token"
	OpDeleteToken Op = "delete_token"
)

// protocol1Ops are the entry types of protocol 1, which every agent applies. Later ones are in
// laterOps (protocol.go, or protocol1.go in the protocol-1 build).
var protocol1Ops = map[Op]bool{
	OpUpsertService: true, OpDeleteService: true, OpUpsertReal: true, OpDeleteReal: true,
	OpSetWeight: true, OpSetAdmin: true, OpRecordHealth: true, OpApplyTable: true, OpRestore: true,
}

// MinProtocol is the protocol an agent must speak to apply entries of type o: 1 for the
// original types, more for later ones, and 0 for a type this build does not know.
func (o Op) MinProtocol() int {
	if protocol1Ops[o] {
		return 1
	}
	return laterOps[o]
}

// Command is one change to the table: the payload of one Raft log entry. Build commands with the
// constructors below; only the fields of the command's Op are set.
type Command struct {
	Version int `json:"v"`
	Op      Op  `json:"op"`
	// Actor says who asked for the change (for the events stream); it does not affect the state.
	Actor string `json:"actor,omitempty"`

	// Service is the whole service for upsert_service. If it exists and Service.Reals is empty,
	// its real servers are kept; otherwise they are replaced.
	Service *Service `json:"service,omitempty"`
	// Name is the service that delete_service and the real-server commands act on.
	Name   string     `json:"name,omitempty"`
	Real   *Real      `json:"real,omitempty"`
	RealID string     `json:"real_id,omitempty"`
	Weight *int       `json:"weight,omitempty"`
	Admin  AdminState `json:"admin,omitempty"`
	// Host is the address set_host_admin acts on.
	Host netip.Addr `json:"host,omitzero"`
	// Token is the ACL token upsert_token writes; Accessor names the one delete_token removes.
	Token    *Token `json:"token,omitempty"`
	Accessor string `json:"accessor,omitempty"`

	// Health is the batch of a record_health command; Time is the leader's clock when it was cut.
	Health []HealthTransition `json:"health,omitempty"`
	Time   time.Time          `json:"time,omitzero"`

	// Table replaces every service and VIP group (apply_table); health of kept reals survives.
	Table *Table `json:"table,omitempty"`
	// State replaces the whole state (restore from a snapshot file).
	State *Snapshot `json:"state,omitempty"`
}

// HealthTransition is one real server's new committed health.
type HealthTransition struct {
	Service string `json:"service"`
	Real    string `json:"real"`
	State   Health `json:"state"`
	Reason  string `json:"reason,omitempty"`
}

// UpsertService creates or replaces a service.
func UpsertService(s Service) Command { return Command{Op: OpUpsertService, Service: &s} }

// DeleteService removes a service and its real servers.
func DeleteService(name string) Command { return Command{Op: OpDeleteService, Name: name} }

// UpsertReal adds or replaces one real server of a service.
func UpsertReal(service string, r Real) Command {
	return Command{Op: OpUpsertReal, Name: service, Real: &r}
}

// DeleteReal removes one real server.
func DeleteReal(service, realID string) Command {
	return Command{Op: OpDeleteReal, Name: service, RealID: realID}
}

// SetWeight changes one real server's weight.
func SetWeight(service, realID string, weight int) Command {
	return Command{Op: OpSetWeight, Name: service, RealID: realID, Weight: &weight}
}

// SetAdmin changes one real server's admin state (enable, drain, disable).
func SetAdmin(service, realID string, a AdminState) Command {
	return Command{Op: OpSetAdmin, Name: service, RealID: realID, Admin: a}
}

// SetHostAdmin changes the admin state of every real server at address host, whatever its port,
// in every service: maintenance of one machine that serves several services. It needs protocol
// 2 on every server of the pool.
func SetHostAdmin(host netip.Addr, a AdminState) Command {
	return Command{Op: OpSetHostAdmin, Host: host, Admin: a}
}

// UpsertToken creates or replaces an ACL token, keyed by its accessor. It needs protocol 3 on
// every server of the pool.
func UpsertToken(tk Token) Command { return Command{Op: OpUpsertToken, Token: &tk} }

// DeleteToken removes the ACL token with this accessor. It needs protocol 3.
func DeleteToken(accessor string) Command { return Command{Op: OpDeleteToken, Accessor: accessor} }

// RecordHealth commits a batch of health transitions observed at time at.
func RecordHealth(at time.Time, ts []HealthTransition) Command {
	return Command{Op: OpRecordHealth, Time: at.UTC(), Health: ts}
}

// ApplyTable replaces the whole declarative table.
func ApplyTable(t Table) Command { return Command{Op: OpApplyTable, Table: &t} }

// Restore replaces the whole state with a snapshot's.
func Restore(s Snapshot) Command { return Command{Op: OpRestore, State: &s} }

// EncodeCommand serializes a command for the Raft log, stamping the current version.
func EncodeCommand(c Command) ([]byte, error) {
	c.Version = CommandVersion
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode %s command: %w", c.Op, err)
	}
	return b, nil
}

// DecodeCommand parses a log entry. It refuses entries of a newer version (ErrNewerVersion), of
// a type this build does not know (ErrUnknownCommand, including a later protocol's type in an
// older build), and anything malformed, without panicking.
func DecodeCommand(b []byte) (*Command, error) {
	var head struct {
		Version int `json:"v"`
		Op      Op  `json:"op"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, fmt.Errorf("decode command: %w", err)
	}
	if head.Version > CommandVersion {
		return nil, fmt.Errorf("decode %s command: version %d, this build reads up to %d: %w", head.Op, head.Version, CommandVersion, ErrNewerVersion)
	}
	if head.Version < 1 {
		return nil, fmt.Errorf("decode command: missing or bad version %d", head.Version)
	}
	if head.Op.MinProtocol() == 0 {
		return nil, fmt.Errorf("decode command: type %q: %w", head.Op, ErrUnknownCommand)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var c Command
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("decode %s command: %w", head.Op, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("decode %s command: trailing data", head.Op)
	}
	return &c, nil
}

// entryOp reads the type of an encoded entry, "" if it has none that can be read.
func entryOp(b []byte) Op {
	var head struct {
		Op Op `json:"op"`
	}
	_ = json.Unmarshal(b, &head)
	return head.Op
}
