package ipvsfake_test

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/troop-lb/troop/director"
	"github.com/troop-lb/troop/director/ipvsfake"
	"github.com/troop-lb/troop/fsm"
)

var (
	web  = director.ServiceKey{Protocol: fsm.TCP, Address: netip.MustParseAddr("192.0.2.10"), Port: 80}
	dns  = director.ServiceKey{Protocol: fsm.UDP, Address: netip.MustParseAddr("192.0.2.10"), Port: 53}
	web6 = director.ServiceKey{Protocol: fsm.TCP, Address: netip.MustParseAddr("2001:db8::10"), Port: 443}
	mark = director.ServiceKey{Family: fsm.IPv4, FWMark: 7}

	rs1  = director.DestinationKey{Address: netip.MustParseAddr("192.0.2.21"), Port: 80}
	rs2  = director.DestinationKey{Address: netip.MustParseAddr("192.0.2.22"), Port: 80}
	rs61 = director.DestinationKey{Address: netip.MustParseAddr("2001:db8::21"), Port: 443}
)

func dest(k director.DestinationKey, fwd fsm.Forwarding, weight int) director.Destination {
	return director.Destination{DestinationKey: k, Forwarding: fwd, Weight: weight}
}

// step is one state of the table: operations applied in order, each with the errno it must
// fail with (0: it must succeed), then the whole table as text.
type step struct {
	name string
	ops  []op
	want string
}

type op struct {
	do    func(*ipvsfake.IPVS) error
	errno syscall.Errno
}

func ok(do func(*ipvsfake.IPVS) error) op { return op{do: do} }
func fails(errno syscall.Errno, do func(*ipvsfake.IPVS) error) op {
	return op{do: do, errno: errno}
}

func createService(s director.Service) func(*ipvsfake.IPVS) error {
	return func(f *ipvsfake.IPVS) error { return f.CreateService(s) }
}
func updateService(s director.Service) func(*ipvsfake.IPVS) error {
	return func(f *ipvsfake.IPVS) error { return f.UpdateService(s) }
}
func removeService(k director.ServiceKey) func(*ipvsfake.IPVS) error {
	return func(f *ipvsfake.IPVS) error { return f.RemoveService(k) }
}
func createDest(k director.ServiceKey, d director.Destination) func(*ipvsfake.IPVS) error {
	return func(f *ipvsfake.IPVS) error { return f.CreateDestination(k, d) }
}
func updateDest(k director.ServiceKey, d director.Destination) func(*ipvsfake.IPVS) error {
	return func(f *ipvsfake.IPVS) error { return f.UpdateDestination(k, d) }
}
func removeDest(k director.ServiceKey, d director.DestinationKey) func(*ipvsfake.IPVS) error {
	return func(f *ipvsfake.IPVS) error { return f.RemoveDestination(k, d) }
}
func listDests(k director.ServiceKey) func(*ipvsfake.IPVS) error {
	return func(f *ipvsfake.IPVS) error { _, err := f.Destinations(k); return err }
}

// TestStates walks the fake through the states a reconciler drives the kernel through, and
// diffs the ipvsadm text after each.
// The states several steps of the walk leave behind; a step that must change nothing expects
// the state before it.
const (
	twoReals = `
TCP  192.0.2.10:80 wrr persistent 300
  -> 192.0.2.21:80  Route  1  0  0
  -> 192.0.2.22:80  Route  1  0  0
`
	everyKind = `
TCP  192.0.2.10:80 wrr persistent 300
  -> 192.0.2.21:80  Route  1  0  0
  -> 192.0.2.22:80  Route  0  0  0
UDP  192.0.2.10:53 rr
  -> 192.0.2.21:53  Masq  3  0  0  thresholds 10-100
TCP  [2001:db8::10]:443 sh (sh-fallback,sh-port) persistent 60 mask 64
  -> [2001:db8::21]:443  Tunnel  2  0  0
FWM  7 mh (mh-fallback) persistent 30 mask 255.255.255.0
  -> 192.0.2.21:0  Route  1  0  0
FWM  7 IPv6 rr
`
)

func TestStates(t *testing.T) {
	steps := []step{{
		name: "empty",
		want: "",
	}, {
		name: "one DR service, two reals",
		ops: []op{
			ok(createService(director.Service{ServiceKey: web, Scheduler: "wrr", Persistent: true, Timeout: 300})),
			ok(createDest(web, dest(rs2, fsm.DR, 1))),
			ok(createDest(web, dest(rs1, fsm.DR, 1))),
		},
		want: twoReals,
	}, {
		name: "duplicates are EEXIST and change nothing",
		ops: []op{
			fails(syscall.EEXIST, createService(director.Service{ServiceKey: web, Scheduler: "rr"})),
			fails(syscall.EEXIST, createDest(web, dest(rs1, fsm.NAT, 5))),
			// The family is optional in an address key: the same service.
			fails(syscall.EEXIST, createService(director.Service{ServiceKey: director.ServiceKey{Family: fsm.IPv4, Protocol: fsm.TCP, Address: web.Address, Port: 80}, Scheduler: "rr"})),
		},
		want: twoReals,
	}, {
		name: "drain a real (weight 0), other services of every kind",
		ops: []op{
			ok(updateDest(web, dest(rs2, fsm.DR, 0))),
			ok(createService(director.Service{ServiceKey: dns, Scheduler: "rr"})),
			ok(createDest(dns, director.Destination{DestinationKey: director.DestinationKey{Address: rs1.Address, Port: 53}, Forwarding: fsm.NAT, Weight: 3, UpperThreshold: 100, LowerThreshold: 10})),
			ok(createService(director.Service{ServiceKey: web6, Scheduler: "sh", SchedFlags: []fsm.SchedulerFlag{fsm.FlagSHPort, fsm.FlagSHFallback}, Persistent: true, Timeout: 60, Netmask: 64})),
			ok(createDest(web6, dest(rs61, fsm.TUN, 2))),
			ok(createService(director.Service{ServiceKey: mark, Scheduler: "mh", SchedFlags: []fsm.SchedulerFlag{fsm.FlagMHFallback}, Persistent: true, Timeout: 30, Netmask: 24})),
			ok(createDest(mark, dest(director.DestinationKey{Address: rs1.Address}, fsm.DR, 1))),
			ok(createService(director.Service{ServiceKey: director.ServiceKey{Family: fsm.IPv6, FWMark: 7}, Scheduler: "rr"})),
		},
		want: everyKind,
	}, {
		name: "what the kernel refuses",
		ops: []op{
			fails(syscall.ESRCH, updateService(director.Service{ServiceKey: director.ServiceKey{Protocol: fsm.TCP, Address: web.Address, Port: 81}, Scheduler: "rr"})),
			fails(syscall.ESRCH, removeService(director.ServiceKey{Protocol: fsm.SCTP, Address: web.Address, Port: 80})),
			fails(syscall.ESRCH, listDests(director.ServiceKey{Family: fsm.IPv4, FWMark: 8})),
			fails(syscall.ESRCH, createDest(director.ServiceKey{Family: fsm.IPv6, FWMark: 8}, dest(rs61, fsm.DR, 1))),
			fails(syscall.ENOENT, updateDest(web, dest(director.DestinationKey{Address: rs1.Address, Port: 81}, fsm.DR, 1))),
			fails(syscall.ENOENT, removeDest(web, director.DestinationKey{Address: rs1.Address, Port: 81})),
			fails(syscall.ENOENT, createService(director.Service{ServiceKey: director.ServiceKey{Protocol: fsm.TCP, Address: web.Address, Port: 81}, Scheduler: "fastest"})),
			fails(syscall.ENOENT, updateService(director.Service{ServiceKey: web, Scheduler: "fastest"})),
			fails(syscall.ERANGE, createDest(web, director.Destination{DestinationKey: rs1, Forwarding: fsm.DR, Weight: -1})),
			fails(syscall.ERANGE, createDest(web, director.Destination{DestinationKey: director.DestinationKey{Address: rs1.Address, Port: 82}, Forwarding: fsm.DR, UpperThreshold: 5, LowerThreshold: 6})),
			// Upper 0 means "no limit", yet the kernel compares them anyway.
			fails(syscall.ERANGE, updateDest(web, director.Destination{DestinationKey: rs1, Forwarding: fsm.DR, LowerThreshold: 1})),
			fails(syscall.EINVAL, createDest(web, dest(rs61, fsm.DR, 1))),
			fails(syscall.EINVAL, createDest(web6, dest(rs1, fsm.NAT, 1))),
			fails(syscall.EINVAL, createDest(web, dest(director.DestinationKey{Address: netip.MustParseAddr("224.0.0.1")}, fsm.DR, 1))),
			fails(syscall.EINVAL, createDest(web6, dest(director.DestinationKey{Address: netip.MustParseAddr("fe80::1")}, fsm.DR, 1))),
			fails(syscall.EINVAL, createService(director.Service{ServiceKey: director.ServiceKey{Protocol: "icmp", Address: web.Address}, Scheduler: "rr"})),
			fails(syscall.EINVAL, createService(director.Service{ServiceKey: director.ServiceKey{Protocol: fsm.TCP, Port: 80}, Scheduler: "rr"})),
			fails(syscall.EINVAL, createService(director.Service{ServiceKey: director.ServiceKey{Family: fsm.IPv6, Protocol: fsm.TCP, Address: web.Address, Port: 81}, Scheduler: "rr"})),
			fails(syscall.EINVAL, createService(director.Service{ServiceKey: director.ServiceKey{Protocol: fsm.TCP, Address: web.Address, Port: 81}, Scheduler: "rr", Persistent: true, Netmask: 33})),
			fails(syscall.EINVAL, createService(director.Service{ServiceKey: director.ServiceKey{Protocol: fsm.TCP, Address: web.Address, Port: 81}, Scheduler: "sh", SchedFlags: []fsm.SchedulerFlag{"sticky"}})),
			fails(syscall.EAFNOSUPPORT, createService(director.Service{ServiceKey: director.ServiceKey{FWMark: 9}, Scheduler: "rr"})),
			fails(syscall.EINVAL, createDest(web, dest(director.DestinationKey{Port: 80}, fsm.DR, 1))),
			fails(syscall.EINVAL, createDest(web, dest(director.DestinationKey{Address: rs1.Address, Port: 83}, "gate", 1))),
		},
		want: everyKind,
	}, {
		name: "what the kernel accepts and ipvsadm would not",
		ops: []op{
			ok(createService(director.Service{ServiceKey: director.ServiceKey{Protocol: fsm.TCP, Address: web.Address, Port: 0}, Scheduler: "none"})),
			ok(createDest(web6, dest(rs1, fsm.TUN, 70000))),
			ok(updateService(director.Service{ServiceKey: dns, Scheduler: "wrr", SchedFlags: []fsm.SchedulerFlag{fsm.FlagSHPort}})),
		},
		want: `
TCP  192.0.2.10:0 none
TCP  192.0.2.10:80 wrr persistent 300
  -> 192.0.2.21:80  Route  1  0  0
  -> 192.0.2.22:80  Route  0  0  0
UDP  192.0.2.10:53 wrr (flag-2)
  -> 192.0.2.21:53  Masq  3  0  0  thresholds 10-100
TCP  [2001:db8::10]:443 sh (sh-fallback,sh-port) persistent 60 mask 64
  -> 192.0.2.21:80  Tunnel  70000  0  0
  -> [2001:db8::21]:443  Tunnel  2  0  0
FWM  7 mh (mh-fallback) persistent 30 mask 255.255.255.0
  -> 192.0.2.21:0  Route  1  0  0
FWM  7 IPv6 rr
`,
	}, {
		name: "update a service: not persistent any more gets the host mask",
		ops: []op{
			ok(updateService(director.Service{ServiceKey: web6, Scheduler: "wlc", Netmask: 64, Timeout: 60})),
			ok(removeDest(web6, rs1)),
			ok(removeService(director.ServiceKey{Protocol: fsm.TCP, Address: web.Address, Port: 0})),
		},
		want: `
TCP  192.0.2.10:80 wrr persistent 300
  -> 192.0.2.21:80  Route  1  0  0
  -> 192.0.2.22:80  Route  0  0  0
UDP  192.0.2.10:53 wrr (flag-2)
  -> 192.0.2.21:53  Masq  3  0  0  thresholds 10-100
TCP  [2001:db8::10]:443 wlc
  -> [2001:db8::21]:443  Tunnel  2  0  0
FWM  7 mh (mh-fallback) persistent 30 mask 255.255.255.0
  -> 192.0.2.21:0  Route  1  0  0
FWM  7 IPv6 rr
`,
	}, {
		name: "remove everything; a service takes its destinations along",
		ops: []op{
			ok(removeDest(web, rs2)),
			ok(removeService(web)),
			ok(removeService(dns)),
			ok(removeService(web6)),
			ok(removeService(director.ServiceKey{FWMark: 7, Family: fsm.IPv4, Protocol: fsm.UDP})),
			ok(removeService(director.ServiceKey{FWMark: 7, Address: netip.MustParseAddr("2001:db8::1")})),
			fails(syscall.ESRCH, removeService(web)),
		},
		want: "",
	}}

	f := ipvsfake.New()
	for _, st := range steps {
		for i, o := range st.ops {
			err := o.do(f)
			switch {
			case o.errno == 0 && err != nil:
				t.Fatalf("%s: op %d: %v", st.name, i, err)
			case o.errno != 0 && !errors.Is(err, o.errno):
				t.Fatalf("%s: op %d: got %v, want %v (%d)", st.name, i, err, o.errno, o.errno)
			}
		}
		want := strings.TrimPrefix(st.want, "\n")
		if diff := cmp.Diff(want, f.String()); diff != "" {
			t.Fatalf("%s: table (-want +got):\n%s", st.name, diff)
		}
		// The list API says the same as the text.
		if diff := cmp.Diff(want, render(t, f)); diff != "" {
			t.Fatalf("%s: Services and Destinations (-want +got):\n%s", st.name, diff)
		}
	}
}

// render prints the table from the director.IPVS list methods alone, in the fake's format, to
// check that they agree with String.
func render(t interface{ Fatal(...any) }, k director.IPVS) string {
	svcs, err := k.Services()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, s := range svcs {
		if s.FWMark != 0 {
			fmt.Fprintf(&b, "FWM  %d", s.FWMark)
			if s.Family == fsm.IPv6 {
				b.WriteString(" IPv6")
			}
		} else {
			fmt.Fprintf(&b, "%s  %s", strings.ToUpper(string(s.Protocol)), netip.AddrPortFrom(s.Address, s.Port))
		}
		fmt.Fprintf(&b, " %s", s.Scheduler)
		if len(s.SchedFlags) > 0 {
			var fl []string
			for _, f := range s.SchedFlags {
				fl = append(fl, string(f))
			}
			fmt.Fprintf(&b, " (%s)", strings.Join(fl, ","))
		}
		if s.Persistent {
			fmt.Fprintf(&b, " persistent %d", s.Timeout)
			switch {
			case s.Family == fsm.IPv4 && s.Netmask != 32:
				p, _ := netip.MustParseAddr("255.255.255.255").Prefix(s.Netmask)
				m := p.Addr().As4()
				fmt.Fprintf(&b, " mask %d.%d.%d.%d", m[0], m[1], m[2], m[3])
			case s.Family == fsm.IPv6 && s.Netmask != 128:
				fmt.Fprintf(&b, " mask %d", s.Netmask)
			}
		}
		b.WriteByte('\n')
		ds, err := k.Destinations(s.ServiceKey)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			fwd := map[fsm.Forwarding]string{fsm.DR: "Route", fsm.NAT: "Masq", fsm.TUN: "Tunnel"}[d.Forwarding]
			fmt.Fprintf(&b, "  -> %s  %s  %d  %d  %d", d.DestinationKey, fwd, d.Weight, d.ActiveConns, d.InactiveConns)
			if d.LowerThreshold != 0 || d.UpperThreshold != 0 {
				fmt.Fprintf(&b, "  thresholds %d-%d", d.LowerThreshold, d.UpperThreshold)
			}
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func TestErrorsAreWrappedLikeTheRealOnes(t *testing.T) {
	f := ipvsfake.New()
	if err := f.CreateService(director.Service{ServiceKey: web, Scheduler: "rr"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		err  error
		is   error
		want string
	}{
		{f.CreateService(director.Service{ServiceKey: web, Scheduler: "rr"}), os.ErrExist, "create IPVS service TCP 192.0.2.10:80: file exists"},
		{f.RemoveService(dns), syscall.ESRCH, "remove IPVS service UDP 192.0.2.10:53: no such process"},
		{f.UpdateDestination(web, dest(rs1, fsm.DR, 1)), os.ErrNotExist, "update IPVS destination 192.0.2.21:80 in TCP 192.0.2.10:80: no such file or directory"},
		{f.RemoveDestination(web, rs1), os.ErrNotExist, "remove IPVS destination 192.0.2.21:80 from TCP 192.0.2.10:80: no such file or directory"},
		{f.CreateDestination(dns, dest(rs1, fsm.DR, 1)), syscall.ESRCH, "create IPVS destination 192.0.2.21:80 in UDP 192.0.2.10:53: no such process"},
	}
	for _, tt := range tests {
		if !errors.Is(tt.err, tt.is) || tt.err.Error() != tt.want {
			t.Errorf("got %v, want %q (is %v)", tt.err, tt.want, tt.is)
		}
	}
	if _, err := f.Destinations(dns); err == nil || err.Error() != "list IPVS destinations of UDP 192.0.2.10:53: no such process" {
		t.Errorf("Destinations of a missing service: %v", err)
	}
}

func TestEmptyListsAreNotNil(t *testing.T) {
	f := ipvsfake.New()
	svcs, err := f.Services()
	if err != nil || svcs == nil || len(svcs) != 0 {
		t.Fatalf("Services() = %#v, %v", svcs, err)
	}
	f.CreateService(director.Service{ServiceKey: web, Scheduler: "rr"})
	ds, err := f.Destinations(web)
	if err != nil || ds == nil || len(ds) != 0 {
		t.Fatalf("Destinations() = %#v, %v", ds, err)
	}
}

func TestReadBack(t *testing.T) {
	f := ipvsfake.New()
	// What a writer passes: read-only fields set, no family, a fwmark key with a protocol.
	in := director.Service{ServiceKey: director.ServiceKey{Protocol: fsm.TCP, FWMark: 3, Address: netip.MustParseAddr("2001:db8::1")},
		Scheduler: "mh", SchedFlags: []fsm.SchedulerFlag{fsm.FlagMHPort, "flag-1"}, Timeout: 9, Netmask: 64, Stats: director.Stats{Connections: 5}}
	if err := f.CreateService(in); err != nil {
		t.Fatal(err)
	}
	if err := f.CreateDestination(in.ServiceKey, director.Destination{DestinationKey: rs61, Forwarding: fsm.NAT, Weight: 4, ActiveConns: 9, Stats: director.Stats{BytesIn: 1}}); err != nil {
		t.Fatal(err)
	}
	svcs, _ := f.Services()
	want := []director.Service{{ServiceKey: director.ServiceKey{Family: fsm.IPv6, FWMark: 3}, Scheduler: "mh",
		SchedFlags: []fsm.SchedulerFlag{fsm.FlagMHFallback, fsm.FlagMHPort}, Timeout: 9, Netmask: 128}}
	if diff := cmp.Diff(want, svcs, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("Services (-want +got):\n%s", diff)
	}
	ds, _ := f.Destinations(director.ServiceKey{Family: fsm.IPv6, FWMark: 3})
	if want := []director.Destination{{DestinationKey: rs61, Forwarding: fsm.NAT, Weight: 4}}; !cmp.Equal(want, ds, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })) {
		t.Errorf("Destinations = %+v, want %+v", ds, want)
	}
}

func TestCallsAndFaults(t *testing.T) {
	f := ipvsfake.New()
	svc := director.Service{ServiceKey: web, Scheduler: "wrr"}
	f.FailNext(ipvsfake.CreateService, syscall.ENOMEM)
	f.FailNext(ipvsfake.CreateService, syscall.EPERM)
	if err := f.CreateService(svc); !errors.Is(err, syscall.ENOMEM) || err.Error() != "create IPVS service TCP 192.0.2.10:80: cannot allocate memory" {
		t.Fatalf("first CreateService = %v, want the injected ENOMEM", err)
	}
	if err := f.CreateService(svc); !errors.Is(err, os.ErrPermission) {
		t.Fatalf("second CreateService = %v, want the injected EPERM", err)
	}
	if f.String() != "" {
		t.Fatalf("a failed call changed the table:\n%s", f)
	}
	if err := f.CreateService(svc); err != nil {
		t.Fatal(err)
	}
	f.CreateDestination(web, dest(rs1, fsm.DR, 1))
	f.Services()
	f.Destinations(web)
	want := map[ipvsfake.Op]int{ipvsfake.CreateService: 3, ipvsfake.CreateDestination: 1, ipvsfake.Services: 1, ipvsfake.Destinations: 1}
	if diff := cmp.Diff(want, f.CallCounts()); diff != "" {
		t.Errorf("CallCounts (-want +got):\n%s", diff)
	}
	if f.TotalCalls() != 6 || f.WriteCalls() != 4 || f.Calls(ipvsfake.CreateService) != 3 || f.Calls(ipvsfake.RemoveService) != 0 {
		t.Errorf("TotalCalls %d WriteCalls %d, want 6 and 4", f.TotalCalls(), f.WriteCalls())
	}
	f.ResetCalls()
	if f.TotalCalls() != 0 || len(f.CallCounts()) != 0 {
		t.Errorf("calls after ResetCalls: %v", f.CallCounts())
	}

	defer func() {
		if recover() == nil {
			t.Error("FailNext of a method IPVS lacks did not panic")
		}
	}()
	f.FailNext(ipvsfake.StartDaemon, syscall.EIO)
}

func TestDrainHooks(t *testing.T) {
	f := ipvsfake.New()
	f.CreateService(director.Service{ServiceKey: web, Scheduler: "wlc"})
	f.CreateDestination(web, dest(rs1, fsm.DR, 5))
	if err := f.SetConns(web, rs1, 12, 30); err != nil {
		t.Fatal(err)
	}
	// A weight change keeps the kernel's counts.
	if err := f.UpdateDestination(web, dest(rs1, fsm.DR, 0)); err != nil {
		t.Fatal(err)
	}
	if err := f.SetDestinationStats(web, rs1, director.Stats{Connections: 42}); err != nil {
		t.Fatal(err)
	}
	if err := f.SetStats(web, director.Stats{Connections: 43}); err != nil {
		t.Fatal(err)
	}
	f.UpdateService(director.Service{ServiceKey: web, Scheduler: "wrr"})
	want := "TCP  192.0.2.10:80 wrr\n  -> 192.0.2.21:80  Route  0  12  30\n"
	if got := f.String(); got != want {
		t.Errorf("table\n%s\nwant\n%s", got, want)
	}
	ds, _ := f.Destinations(web)
	svcs, _ := f.Services()
	if ds[0].ActiveConns != 12 || ds[0].InactiveConns != 30 || ds[0].Stats.Connections != 42 || svcs[0].Stats.Connections != 43 {
		t.Errorf("read back %+v and %+v", ds[0], svcs[0])
	}
	if err := f.SetConns(web, rs2, 1, 1); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("SetConns of a missing real = %v", err)
	}
	if err := f.SetConns(dns, rs1, 1, 1); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("SetConns in a missing service = %v", err)
	}
	if err := f.SetStats(dns, director.Stats{}); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("SetStats of a missing service = %v", err)
	}
}

func TestClose(t *testing.T) {
	f := ipvsfake.New()
	f.CreateService(director.Service{ServiceKey: web, Scheduler: "rr"})
	if f.Closed() {
		t.Fatal("closed before Close")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Services(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Services after Close = %v", err)
	}
	if !f.Closed() || f.String() == "" {
		t.Errorf("closed %v, table %q: the table outlives the socket", f.Closed(), f.String())
	}
}

func TestSyncDaemons(t *testing.T) {
	f := ipvsfake.New()
	s := f.SyncDaemons()
	if s != f.SyncDaemons() {
		t.Fatal("SyncDaemons returns a new value each time")
	}
	s.SetInterfaces("lo", "eth0")
	check := func(want string, errno syscall.Errno, err error) {
		t.Helper()
		if errno == 0 && err != nil || errno != 0 && !errors.Is(err, errno) {
			t.Fatalf("got %v, want %v", err, errno)
		}
		if got := s.String(); got != want {
			t.Fatalf("daemons\n%s\nwant\n%s", got, want)
		}
	}
	d, err := s.Daemons()
	if err != nil || d == nil || len(d) != 0 {
		t.Fatalf("Daemons() = %#v, %v", d, err)
	}
	check("", syscall.ENODEV, s.StartDaemon(director.SyncDaemon{State: director.SyncMaster, Interface: "eth9", SyncID: 1}))
	check("", syscall.ENODEV, s.StartDaemon(director.SyncDaemon{State: director.SyncMaster, SyncID: 1}))
	check("", syscall.EINVAL, s.StartDaemon(director.SyncDaemon{State: 3, Interface: "eth0"}))
	check("", syscall.EINVAL, s.StartDaemon(director.SyncDaemon{State: director.SyncMaster, Interface: "a-very-long-name0"}))
	check("", syscall.ESRCH, s.StopDaemon(director.SyncBackup))
	check("", syscall.EINVAL, s.StopDaemon(0))
	check("backup sync daemon (mcast=eth0, syncid=9)\n", 0, s.StartDaemon(director.SyncDaemon{State: director.SyncBackup, Interface: "eth0", SyncID: 9}))
	check("master sync daemon (mcast=lo, syncid=7)\nbackup sync daemon (mcast=eth0, syncid=9)\n", 0, s.StartDaemon(director.SyncDaemon{State: director.SyncMaster, Interface: "lo", SyncID: 7}))
	check("master sync daemon (mcast=lo, syncid=7)\nbackup sync daemon (mcast=eth0, syncid=9)\n", syscall.EEXIST, s.StartDaemon(director.SyncDaemon{State: director.SyncMaster, Interface: "eth0", SyncID: 7}))
	d, _ = s.Daemons()
	if want := []director.SyncDaemon{{State: director.SyncMaster, Interface: "lo", SyncID: 7}, {State: director.SyncBackup, Interface: "eth0", SyncID: 9}}; !cmp.Equal(want, d) {
		t.Errorf("Daemons() = %+v, want %+v", d, want)
	}

	// The kernel refuses a mixed-family destination while a daemon runs, and a daemon while a
	// mixed-family destination exists.
	f.CreateService(director.Service{ServiceKey: web, Scheduler: "rr"})
	if err := f.CreateDestination(web, dest(rs61, fsm.TUN, 1)); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("mixed-family destination with a daemon running = %v, want EINVAL", err)
	}
	check("backup sync daemon (mcast=eth0, syncid=9)\n", 0, s.StopDaemon(director.SyncMaster))
	check("", 0, s.StopDaemon(director.SyncBackup))
	if err := f.CreateDestination(web, dest(rs61, fsm.TUN, 1)); err != nil {
		t.Fatal(err)
	}
	check("", syscall.EINVAL, s.StartDaemon(director.SyncDaemon{State: director.SyncBackup, Interface: "lo"}))
	f.RemoveDestination(web, rs61)
	check("backup sync daemon (mcast=lo, syncid=0)\n", 0, s.StartDaemon(director.SyncDaemon{State: director.SyncBackup, Interface: "lo"}))

	if s.Calls(ipvsfake.StartDaemon) != 9 || s.Calls(ipvsfake.StopDaemon) != 4 || s.Calls(ipvsfake.Daemons) != 2 {
		t.Errorf("calls: start %d stop %d list %d", s.Calls(ipvsfake.StartDaemon), s.Calls(ipvsfake.StopDaemon), s.Calls(ipvsfake.Daemons))
	}
	s.FailNext(ipvsfake.StopDaemon, syscall.EIO)
	check("backup sync daemon (mcast=lo, syncid=0)\n", syscall.EIO, s.StopDaemon(director.SyncBackup))
	s.ResetCalls()
	if s.Calls(ipvsfake.StopDaemon) != 0 {
		t.Error("ResetCalls kept counts")
	}
	s.Close()
	if _, err := s.Daemons(); !errors.Is(err, os.ErrClosed) || !s.Closed() {
		t.Errorf("Daemons after Close = %v", err)
	}

	// Standalone daemons accept any interface name until told otherwise.
	s2 := ipvsfake.NewSyncDaemons()
	if err := s2.StartDaemon(director.SyncDaemon{State: director.SyncMaster, Interface: "whatever0"}); err != nil {
		t.Fatal(err)
	}
}

// drawTable draws a set of services, each with distinct destinations, all valid.
func drawTable(t *rapid.T) map[director.ServiceKey][]director.Destination {
	table := map[director.ServiceKey][]director.Destination{}
	n := rapid.IntRange(0, 6).Draw(t, "services")
	for i := range n {
		var k director.ServiceKey
		if rapid.Bool().Draw(t, "fwmark") {
			k = director.ServiceKey{Family: rapid.SampledFrom([]fsm.Family{fsm.IPv4, fsm.IPv6}).Draw(t, "family"), FWMark: rapid.Uint32Range(1, 5).Draw(t, "mark")}
		} else {
			a := netip.AddrFrom4([4]byte{192, 0, 2, byte(rapid.IntRange(1, 4).Draw(t, "vip"))})
			if rapid.Bool().Draw(t, "v6") {
				a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(rapid.IntRange(1, 4).Draw(t, "vip6"))})
			}
			k = director.ServiceKey{Family: familyOf(a), Protocol: rapid.SampledFrom(fsm.Protocols).Draw(t, "proto"), Address: a, Port: uint16(rapid.IntRange(0, 3).Draw(t, "port"))}
		}
		if _, dup := table[k]; dup {
			continue
		}
		table[k] = nil
		m := rapid.IntRange(0, 4).Draw(t, fmt.Sprintf("dests%d", i))
		seen := map[director.DestinationKey]bool{}
		for range m {
			a := netip.AddrFrom4([4]byte{198, 51, 100, byte(rapid.IntRange(1, 5).Draw(t, "rip"))})
			fwd := rapid.SampledFrom(fsm.Forwardings).Draw(t, "fwd")
			if k.Family == fsm.IPv6 {
				a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 1, 15: byte(rapid.IntRange(1, 5).Draw(t, "rip6"))})
			}
			dk := director.DestinationKey{Address: a, Port: uint16(rapid.IntRange(0, 2).Draw(t, "rport"))}
			if seen[dk] {
				continue
			}
			seen[dk] = true
			table[k] = append(table[k], director.Destination{DestinationKey: dk, Forwarding: fwd, Weight: rapid.IntRange(0, math.MaxInt32).Draw(t, "weight")})
		}
	}
	return table
}

func familyOf(a netip.Addr) fsm.Family {
	if a.Is4() {
		return fsm.IPv4
	}
	return fsm.IPv6
}

type write struct {
	svc  director.ServiceKey
	dest *director.Destination
}

// TestOrderDoesNotMatter builds the same table in two random orders (a destination after its
// service) and expects the same text; then tears it down in a random order to an empty table.
func TestOrderDoesNotMatter(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		table := drawTable(t)
		var writes []write
		for k, ds := range table {
			writes = append(writes, write{svc: k})
			for i := range ds {
				writes = append(writes, write{svc: k, dest: &ds[i]})
			}
		}
		attempts := 0
		build := func(label string) *ipvsfake.IPVS {
			f := ipvsfake.New()
			attempts = 0
			pending := rapid.Permutation(writes).Draw(t, label)
			for len(pending) > 0 {
				// Take the first write whose service exists (or is a service).
				for i, w := range pending {
					attempts++
					var err error
					if w.dest == nil {
						err = f.CreateService(director.Service{ServiceKey: w.svc, Scheduler: "wrr"})
					} else {
						err = f.CreateDestination(w.svc, *w.dest)
						if errors.Is(err, syscall.ESRCH) {
							continue
						}
					}
					if err != nil {
						t.Fatalf("%+v: %v", w, err)
					}
					pending = append(pending[:i], pending[i+1:]...)
					break
				}
			}
			return f
		}
		a := build("order1")
		if a.WriteCalls() != attempts {
			t.Fatalf("%d write calls for %d attempts", a.WriteCalls(), attempts)
		}
		b := build("order2")
		if a.String() != b.String() {
			t.Fatalf("two orders, two tables:\n%s\n---\n%s", a, b)
		}
		if got := render(t, a); got != a.String() {
			t.Fatalf("lists and text disagree:\n%s\n---\n%s", got, a)
		}
		for _, w := range rapid.Permutation(writes).Draw(t, "teardown") {
			var err error
			if w.dest == nil {
				err = a.RemoveService(w.svc)
			} else {
				err = a.RemoveDestination(w.svc, w.dest.DestinationKey)
			}
			// A destination may already be gone with its service.
			if err != nil && !(w.dest != nil && errors.Is(err, syscall.ESRCH)) {
				t.Fatalf("remove %+v: %v", w, err)
			}
		}
		if a.String() != "" {
			t.Fatalf("left after teardown:\n%s", a)
		}
	})
}

func TestConcurrentUse(t *testing.T) {
	f := ipvsfake.New()
	s := f.SyncDaemons()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			k := director.ServiceKey{Protocol: fsm.TCP, Address: netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}), Port: 80}
			for j := range 50 {
				f.CreateService(director.Service{ServiceKey: k, Scheduler: "rr"})
				f.CreateDestination(k, dest(rs1, fsm.DR, j))
				f.SetConns(k, rs1, uint32(j), 0)
				f.Services()
				f.Destinations(k)
				_ = f.String()
				s.Daemons()
				if j%2 == 1 {
					f.RemoveService(k)
				}
			}
		})
	}
	wg.Wait()
	if f.String() != "" || f.Calls(ipvsfake.CreateService) != 400 {
		t.Fatalf("after the goroutines: %d creates, table\n%s", f.Calls(ipvsfake.CreateService), f)
	}
}
