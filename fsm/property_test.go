package fsm

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// genCommand draws commands over a small space of names and addresses so that sequences hit
// conflicts, missing objects and repeated edits, not only fresh inserts.
func genCommand() *rapid.Generator[Command] {
	// The spaces are small and mostly valid so that sequences build real state; the rare
	// invalid values (port 0, an IPv6 real under an IPv4 VIP, weight 70000) exercise refusals.
	names := rapid.SampledFrom([]string{"web", "dns"})
	addrs := rapid.SampledFrom([]string{"192.0.2.21", "192.0.2.22", "192.0.2.21", "192.0.2.22", "2001:db8::21"})
	vips := rapid.SampledFrom([]string{"192.0.2.10", "192.0.2.11", "192.0.2.10", "2001:db8::10"})
	real := rapid.Custom(func(t *rapid.T) Real {
		r := Real{Address: netip.MustParseAddr(addrs.Draw(t, "addr"))}
		if rapid.Bool().Draw(t, "hasWeight") {
			w := rapid.SampledFrom([]int{0, 1, 5, 65535, 70000}).Draw(t, "weight")
			r.Weight = &w
		}
		r.Admin = rapid.SampledFrom([]AdminState{"", Enabled, Draining, Disabled}).Draw(t, "admin")
		return r
	})
	service := rapid.Custom(func(t *rapid.T) Service {
		s := Service{
			Name:      names.Draw(t, "name"),
			VIP:       netip.MustParseAddr(vips.Draw(t, "vip")),
			Port:      uint16(rapid.SampledFrom([]int{80, 80, 80, 53, 0}).Draw(t, "port")),
			Protocol:  rapid.SampledFrom([]Protocol{"", TCP, UDP}).Draw(t, "proto"),
			Scheduler: rapid.SampledFrom([]Scheduler{"", "rr", "wrr", "mh"}).Draw(t, "sched"),
			Quiescent: rapid.Bool().Draw(t, "quiescent"),
		}
		if rapid.Bool().Draw(t, "check") {
			s.Check = &HealthCheck{Type: rapid.SampledFrom([]string{"tcp", "http", "none"}).Draw(t, "type")}
		}
		s.Reals = rapid.SliceOfNDistinct(real, 0, 3, Real.ID).Draw(t, "reals")
		return s
	})
	return rapid.Custom(func(t *rapid.T) Command {
		name := names.Draw(t, "svc")
		id := RealID(netip.MustParseAddr(addrs.Draw(t, "rid")), 80)
		// Health batches are drawn as often as all real-server edits together: they are what
		// the pool commits most, and their survival across snapshots is what most often breaks.
		switch rapid.SampledFrom([]int{0, 0, 1, 2, 3, 4, 5, 6, 6, 6, 6, 7}).Draw(t, "op") {
		case 0:
			return UpsertService(service.Draw(t, "service"))
		case 1:
			return DeleteService(name)
		case 2:
			return UpsertReal(name, real.Draw(t, "real"))
		case 3:
			return DeleteReal(name, id)
		case 4:
			return SetWeight(name, id, rapid.SampledFrom([]int{-1, 0, 7, 70000}).Draw(t, "w"))
		case 5:
			return SetAdmin(name, id, rapid.SampledFrom([]AdminState{Enabled, Draining, "bogus"}).Draw(t, "a"))
		case 6:
			transition := rapid.Custom(func(t *rapid.T) HealthTransition {
				return HealthTransition{
					Service: names.Draw(t, "svc"),
					Real:    RealID(netip.MustParseAddr(addrs.Draw(t, "rid")), 80),
					State:   rapid.SampledFrom([]Health{HealthUp, HealthDown}).Draw(t, "h"),
				}
			})
			at := time.Unix(rapid.Int64Range(0, 1e9).Draw(t, "at"), 0)
			return RecordHealth(at, rapid.SliceOfN(transition, 1, 3).Draw(t, "batch"))
		default:
			return ApplyTable(Table{Services: rapid.SliceOfN(service, 0, 3).Draw(t, "table")})
		}
	})
}

func snapshotBytes(t interface{ Fatalf(string, ...any) }, f *FSM) []byte {
	var b bytes.Buffer
	if _, err := f.View().WriteTo(&b); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	return b.Bytes()
}

// Replicas fed the same log end identical, even when one of them is rebuilt from a snapshot
// half way, and every refused entry leaves the state unchanged.
func TestReplicasConvergeProperty(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		cmds := rapid.SliceOfN(genCommand(), 10, 60).Draw(rt, "cmds")
		cut := rapid.IntRange(0, len(cmds)).Draw(rt, "snapshotAt")
		a, b := testFSM(t), testFSM(t)
		for i, c := range cmds {
			entry, err := EncodeCommand(c)
			if err != nil {
				rt.Fatalf("encode: %v", err)
			}
			if i == cut {
				snap := snapshotBytes(rt, b)
				b = testFSM(t)
				if err := b.Restore(bytes.NewReader(snap)); err != nil {
					rt.Fatalf("restore: %v", err)
				}
			}
			before := snapshotBytes(rt, a)
			ra := a.Apply(uint64(i+1), entry)
			rb := b.Apply(uint64(i+1), entry)
			if (ra.Err == nil) != (rb.Err == nil) {
				rt.Fatalf("entry %d: replicas disagree: %v vs %v", i, ra.Err, rb.Err)
			}
			if ra.Err != nil && stripIndex(string(before)) != stripIndex(string(snapshotBytes(rt, a))) {
				rt.Fatalf("entry %d (%s) refused with %v but changed the state", i, c.Op, ra.Err)
			}
		}
		if sa, sb := snapshotBytes(rt, a), snapshotBytes(rt, b); !bytes.Equal(sa, sb) {
			rt.Fatalf("replicas diverged:\n%s\n%s", sa, sb)
		}
		// Whatever the state is, it is valid.
		tbl := a.View().Table()
		if err := ValidateTable(&tbl); err != nil {
			rt.Fatalf("state holds an invalid table: %v", err)
		}
	})
}

// Prepare normalizes a command; what it accepts the FSM applies, and the encoding round-trips.
func TestPreparedCommandsApplyProperty(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		f := testFSM(t)
		for i, c := range rapid.SliceOfN(genCommand(), 1, 20).Draw(rt, "cmds") {
			perr := f.Prepare(&c)
			entry, err := EncodeCommand(c)
			if err != nil {
				rt.Fatalf("encode: %v", err)
			}
			dec, err := DecodeCommand(entry)
			if err != nil {
				rt.Fatalf("decode of an encoded command: %v", err)
			}
			if again, _ := EncodeCommand(*dec); !bytes.Equal(again, entry) {
				rt.Fatalf("encoding does not round-trip:\n%s\n%s", entry, again)
			}
			res := f.Apply(uint64(i+1), entry)
			if (perr == nil) != (res.Err == nil) {
				rt.Fatalf("Prepare said %v but Apply said %v for %s", perr, res.Err, fmt.Sprint(c.Op))
			}
		}
	})
}

// FuzzDecodeCommand feeds arbitrary log entries to the FSM: it must never panic, and an entry
// it refuses must not change the state.
func FuzzDecodeCommand(f *testing.F) {
	for _, c := range []Command{
		UpsertService(web()), DeleteService("web"), SetWeight("web", "192.0.2.21:80", 3),
		SetAdmin("web", "192.0.2.21:80", Draining), ApplyTable(Table{Services: []Service{web()}}),
		RecordHealth(time.Unix(0, 0), []HealthTransition{{Service: "web", Real: "192.0.2.21:80", State: HealthDown}}),
	} {
		b, _ := EncodeCommand(c)
		f.Add(b)
	}
	f.Add([]byte(`{"v":1,"op":"restore","state":{"format":1,"services":[]}}`))
	f.Add([]byte(`{"v":3,"op":"x"}`))
	f.Fuzz(func(t *testing.T, entry []byte) {
		m := testFSM(t)
		seed, _ := EncodeCommand(UpsertService(web()))
		m.Apply(1, seed)
		before := stripIndex(string(snapshotBytes(t, m)))
		res := m.Apply(2, entry)
		if res.Err != nil && stripIndex(string(snapshotBytes(t, m))) != before {
			t.Fatalf("refused entry changed the state: %v", res.Err)
		}
		tbl := m.View().Table()
		if err := ValidateTable(&tbl); err != nil {
			t.Fatalf("entry %q left an invalid table: %v", entry, err)
		}
	})
}
