package fsm

import (
	"net/netip"
	"testing"
	"time"
)

func TestWatchChangesReportsCommittedChangesWithActor(t *testing.T) {
	a := &applier{t: t, f: testFSM(t)}
	changes, stop := a.f.WatchChanges(16)
	at := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

	up := UpsertService(web())
	up.Actor = "alice"
	a.mustApply(up)
	w := SetWeight("web", "192.0.2.21:80", 5)
	w.Actor = "token:ops"
	b, _ := EncodeCommand(w)
	a.index++
	if res := a.f.ApplyAt(a.index, b, at); res.Err != nil {
		t.Fatal(res.Err)
	}
	// Health verdicts are not configuration; a refused command changed nothing.
	a.mustApply(RecordHealth(at, []HealthTransition{{Service: "web", Real: "192.0.2.21:80", State: HealthDown}}))
	if res := a.apply(DeleteReal("web", "192.0.2.99:80")); res.Err == nil {
		t.Fatal("deleting an unknown real was not refused")
	}
	host := SetHostAdmin(netip.MustParseAddr("192.0.2.22"), Disabled)
	a.mustApply(host)
	stop()

	var got []string
	for c := range changes {
		got = append(got, c.String())
		if c.Index == 2 && !c.Appended.Equal(at) {
			t.Errorf("change %d appended at %v, want %v", c.Index, c.Appended, at)
		}
	}
	want := []string{
		"upsert_service service web by alice (index 1)",
		"set_weight real 192.0.2.21:80 of service web (weight 5) by token:ops (index 2)",
		"set_host_admin host 192.0.2.22 (disabled) (index 5, services changed: web)",
	}
	if len(got) != len(want) {
		t.Fatalf("changes:\n%q\nwant:\n%q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("change %d = %q, want %q", i, got[i], want[i])
		}
	}
}
