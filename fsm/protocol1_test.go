//go:build troop_protocol1

package fsm

import (
	"errors"
	"net/netip"
	"testing"
)

// The protocol-1 build stands for the previous release: set_host_admin is not a type it knows,
// and meeting one in the log halts its FSM instead of skipping it.
func TestProtocol1BuildDoesNotKnowSetHostAdmin(t *testing.T) {
	if ProtocolVersion != 1 {
		t.Fatalf("ProtocolVersion = %d, want 1 with -tags troop_protocol1", ProtocolVersion)
	}
	if got := OpSetHostAdmin.MinProtocol(); got != 0 {
		t.Errorf("set_host_admin needs protocol %d here, want 0 (unknown)", got)
	}
	entry := []byte(`{"v":1,"op":"set_host_admin","admin":"draining","host":"192.0.2.21"}`)
	if _, err := DecodeCommand(entry); !errors.Is(err, ErrUnknownCommand) {
		t.Errorf("decode set_host_admin: err = %v, want ErrUnknownCommand", err)
	}
	a := &applier{t: t, f: testFSM(t)}
	a.mustApply(UpsertService(web()))
	if r := a.f.Apply(2, entry); !errors.Is(r.Err, ErrHalted) || !errors.Is(r.Err, ErrUnknownCommand) {
		t.Errorf("apply set_host_admin: err = %v, want ErrHalted wrapping ErrUnknownCommand", r.Err)
	}
	if h := a.f.Halted(); h == nil || h.Index != 2 || h.Op != OpSetHostAdmin {
		t.Errorf("Halted() = %+v, want entry 2, set_host_admin", h)
	}
	// The node's own write of it is refused before anything is proposed.
	c := SetHostAdmin(netip.MustParseAddr("192.0.2.21"), Draining)
	b, _ := EncodeCommand(c)
	if _, err := DecodeCommand(b); !errors.Is(err, ErrUnknownCommand) {
		t.Errorf("own set_host_admin decodes: %v", err)
	}
}

// Nor does it know the ACL token entries of protocol 3.
func TestProtocol1BuildDoesNotKnowTokens(t *testing.T) {
	for _, op := range []Op{OpUpsertToken, OpDeleteToken} {
		if got := op.MinProtocol(); got != 0 {
			t.Errorf("%s needs protocol %d here, want 0 (unknown)", op, got)
		}
	}
	entry := []byte(`{"v":1,"op":"delete_token","accessor":"0f8fad5b-d9cb-469f-a165-70867728950e"}`)
	if _, err := DecodeCommand(entry); !errors.Is(err, ErrUnknownCommand) {
		t.Errorf("decode delete_token: err = %v, want ErrUnknownCommand", err)
	}
}
