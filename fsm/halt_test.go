package fsm

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// loggedFSM is an FSM whose log lines (text format) end up in the returned buffer.
func loggedFSM(t *testing.T) (*FSM, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	return New(slog.New(slog.NewTextHandler(&buf, nil))), &buf
}

// An entry this build cannot read halts the FSM: nothing after it is applied, the index stays
// where it was, Halted says why, and the log says so once at ERROR.
func TestUnreadableEntryHaltsFSM(t *testing.T) {
	tests := []struct {
		entry string
		op    Op
		kind  error
	}{
		{`{"v":1,"op":"teleport"}`, "teleport", ErrUnknownCommand},
		{`{"v":2,"op":"upsert_service","service":{"name":"x"}}`, OpUpsertService, ErrNewerVersion},
		{`{"v":1,"op":"restore","state":{"format":2}}`, OpRestore, ErrNewerVersion},
		// A newer build's field on a known type: a replica that knows it would apply it.
		{`{"v":1,"op":"delete_service","name":"web","surprise":1}`, OpDeleteService, nil},
		{`not json`, "", nil},
		{``, "", nil},
		{`{"op":"delete_service","name":"web"}`, OpDeleteService, nil},
	}
	for _, tt := range tests {
		t.Run(tt.entry, func(t *testing.T) {
			f, logs := loggedFSM(t)
			a := &applier{t: t, f: f}
			a.mustApply(UpsertService(web()))
			before := snapshotBytes(t, f)

			res := f.Apply(2, []byte(tt.entry))
			if !errors.Is(res.Err, ErrHalted) || (tt.kind != nil && !errors.Is(res.Err, tt.kind)) {
				t.Fatalf("entry %q: err = %v, want ErrHalted wrapping %v", tt.entry, res.Err, tt.kind)
			}
			h := f.Halted()
			if h == nil || h.Index != 2 || h.Op != tt.op || h.Err == nil {
				t.Fatalf("Halted() = %+v, want index 2, type %q", h, tt.op)
			}
			if !strings.Contains(h.String(), "entry 2") || !strings.Contains(h.String(), "upgrade this agent") {
				t.Errorf("Halted().String() = %q", h.String())
			}

			// Later entries, valid or not, are not applied and do not move the index.
			a.index = 2
			for _, c := range []Command{DeleteService("web"), SetAdmin("web", "192.0.2.99:80", Draining)} {
				if r := a.apply(c); !errors.Is(r.Err, ErrHalted) {
					t.Errorf("%s after the halt: err = %v, want ErrHalted", c.Op, r.Err)
				}
			}
			if got := f.View().Index(); got != 1 {
				t.Errorf("index = %d after the halt, want 1 (the last entry applied)", got)
			}
			if after := snapshotBytes(t, f); !bytes.Equal(before, after) {
				t.Errorf("state changed while halted:\n%s\nwas:\n%s", after, before)
			}

			// One ERROR line, naming the index, the type and what to do.
			var lines []string
			for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
				if strings.Contains(l, "level=ERROR") {
					lines = append(lines, l)
				}
			}
			if len(lines) != 1 {
				t.Fatalf("ERROR lines = %q, want one", lines)
			}
			for _, want := range []string{"index=2", "type=" + string(tt.op), "upgrade this agent"} {
				if tt.op == "" && strings.HasPrefix(want, "type=") {
					want = `type=""`
				}
				if !strings.Contains(lines[0], want) {
					t.Errorf("log line %q lacks %q", lines[0], want)
				}
			}
		})
	}
}

// Refusals of well-formed entries are decided identically by every replica: they do not halt.
func TestValidationRefusalsDoNotHalt(t *testing.T) {
	a := &applier{t: t, f: testFSM(t)}
	a.mustApply(UpsertService(web()))
	for _, tt := range []struct {
		c    Command
		kind error
	}{
		{SetAdmin("web", "192.0.2.99:80", Draining), ErrNotFound},
		{SetAdmin("web", "192.0.2.21:80", "sleeping"), ErrInvalid},
		{DeleteService("nope"), ErrNotFound},
		{UpsertService(Service{Name: "bad"}), ErrInvalid},
	} {
		if r := a.apply(tt.c); !errors.Is(r.Err, tt.kind) || errors.Is(r.Err, ErrHalted) {
			t.Errorf("%s: err = %v, want %v and no halt", tt.c.Op, r.Err, tt.kind)
		}
	}
	if h := a.f.Halted(); h != nil {
		t.Fatalf("halted by a validation refusal: %v", h)
	}
	if got := a.f.View().Index(); got != 5 {
		t.Errorf("index = %d, want 5 (refused entries advance it)", got)
	}
	a.mustApply(SetAdmin("web", "192.0.2.21:80", Draining))
}

// A restored snapshot replaces the state, halt included.
func TestRestoreClearsHalt(t *testing.T) {
	a := &applier{t: t, f: testFSM(t)}
	a.mustApply(UpsertService(web()))
	snap := snapshotBytes(t, a.f)
	a.f.Apply(2, []byte(`{"v":1,"op":"teleport"}`))
	if a.f.Halted() == nil {
		t.Fatal("not halted")
	}
	if err := a.f.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	if h := a.f.Halted(); h != nil {
		t.Fatalf("still halted after a restore: %v", h)
	}
	a.index = 2
	a.mustApply(SetAdmin("web", "192.0.2.21:80", Draining))
	if _, ok := a.f.View().Service("web"); !ok {
		t.Fatal("web lost")
	}
}
