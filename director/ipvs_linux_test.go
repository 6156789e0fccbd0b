//go:build linux

package director_test

import (
	"errors"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/troop-lb/troop/director"
	"github.com/troop-lb/troop/director/ipvsfake"
	"github.com/troop-lb/troop/fsm"
)

// The tests of this file run one scenario against the kernel's IPVS, in a network namespace of
// their own, and against ipvsfake, with the same expectations: whatever passes on both is a
// behaviour the fake shares with the kernel. The kernel half needs root and a kernel with IPVS
// (not the developers' machine kind: it runs in the VM tier). Without them it skips, naming the
// reason, unless TROOP_REQUIRE_IPVS=1, which the VM tier sets to turn the skip into a failure.
// Both halves passed (six runs in a row) on Debian's 6.1.0-48 kernel under qemu TCG, from a
// busybox initramfs holding the CGO_ENABLED=0 test binary and the modules crc32c_generic,
// libcrc32c, nf_defrag_ipv4/6, nf_conntrack, ip_vs, ip_vs_rr, ip_vs_wrr, ip_vs_sh and ip_vs_mh.
//
// The file shares package director_test with other test files: its top-level names start with
// kt (kernel test) to stay out of their way.

const ktRequireIPVSEnv = "TROOP_REQUIRE_IPVS"

// ktSkipOrFail skips the test, or fails it when the environment demands a real IPVS.
func ktSkipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv(ktRequireIPVSEnv) == "1" {
		t.Fatalf(format+" ("+ktRequireIPVSEnv+"=1)", args...)
	}
	t.Skipf(format+" (set "+ktRequireIPVSEnv+"=1 to make this a failure)", args...)
}

// ktNetnsThread is an OS thread in a fresh network namespace, serving functions from a locked
// goroutine. The goroutine never unlocks its thread, so when it returns Go ends the thread, and
// the namespace goes with its last reference: the sockets opened in it, which the test closes
// first. The test's own goroutine never enters the namespace.
type ktNetnsThread struct {
	work chan func()
	done chan struct{}
}

// ktNewNetns creates the namespace and registers its destruction with t.Cleanup, so it goes even
// when the test fails. Register cleanups of what is opened inside it after calling ktNewNetns:
// they run first.
func ktNewNetns(t *testing.T) *ktNetnsThread {
	t.Helper()
	n := &ktNetnsThread{work: make(chan func()), done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		defer close(n.done)
		runtime.LockOSThread() // for good: see ktNetnsThread
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			started <- err
			return
		}
		started <- nil
		for fn := range n.work {
			fn()
		}
	}()
	if err := <-started; err != nil {
		<-n.done
		ktSkipOrFail(t, "cannot create a network namespace (needs root): unshare(CLONE_NEWNET): %v", err)
	}
	t.Cleanup(func() {
		close(n.work)
		<-n.done
	})
	return n
}

// do runs fn on the namespace's thread and waits for it. fn must not call t.FailNow.
func (n *ktNetnsThread) do(fn func()) {
	finished := make(chan struct{})
	n.work <- func() {
		defer close(finished)
		fn()
	}
	<-finished
}

// ktSetLinkUp brings an interface of the calling thread's namespace up.
func ktSetLinkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// ktKernelIPVS opens the real IPVS and sync-daemon control in a fresh namespace with lo up, or
// skips.
func ktKernelIPVS(t *testing.T) (director.IPVS, director.SyncDaemons) {
	t.Helper()
	ns := ktNewNetns(t)
	var (
		k              director.IPVS
		s              director.SyncDaemons
		errK, errS, up error
	)
	ns.do(func() {
		up = ktSetLinkUp("lo")
		k, errK = director.NewIPVS()
		if errK == nil {
			s, errS = director.NewSyncDaemons()
		}
	})
	if k != nil {
		t.Cleanup(func() { k.Close() })
	}
	if s != nil {
		t.Cleanup(func() {
			// Best effort if the test failed half-way; the namespace's end stops them anyway.
			s.StopDaemon(director.SyncMaster)
			s.StopDaemon(director.SyncBackup)
			s.Close()
		})
	}
	if errK != nil {
		ktSkipOrFail(t, "no IPVS in this kernel, or no permission: %v", errK)
	}
	if errS != nil {
		t.Fatalf("IPVS opened but its sync-daemon control did not: %v", errS)
	}
	if up != nil {
		t.Fatalf("bring lo up in the test namespace: %v", up)
	}
	return k, s
}

func TestIPVSKernel(t *testing.T) {
	k, _ := ktKernelIPVS(t)
	ktExerciseIPVS(t, k)
}

func TestIPVSFake(t *testing.T) {
	ktExerciseIPVS(t, ipvsfake.New())
}

func TestSyncDaemonsKernel(t *testing.T) {
	k, s := ktKernelIPVS(t)
	ktExerciseSyncDaemons(t, k, s)
}

func TestSyncDaemonsFake(t *testing.T) {
	f := ipvsfake.New()
	f.SyncDaemons().SetInterfaces("lo")
	ktExerciseSyncDaemons(t, f, f.SyncDaemons())
}

var ktAddrCmp = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func ktSortedServices(t *testing.T, k director.IPVS) []director.Service {
	t.Helper()
	svcs, err := k.Services()
	if err != nil {
		t.Fatalf("Services: %v", err)
	}
	slices.SortFunc(svcs, func(a, b director.Service) int { return ktCompareKeys(a.ServiceKey, b.ServiceKey) })
	return svcs
}

func ktCompareKeys(a, b director.ServiceKey) int {
	if a.FWMark != b.FWMark {
		return int(int64(a.FWMark) - int64(b.FWMark))
	}
	if a.Family != b.Family {
		if a.Family < b.Family {
			return -1
		}
		return 1
	}
	if a.Protocol != b.Protocol {
		if a.Protocol < b.Protocol {
			return -1
		}
		return 1
	}
	if c := a.Address.Compare(b.Address); c != 0 {
		return c
	}
	return int(a.Port) - int(b.Port)
}

func ktSortedDests(t *testing.T, k director.IPVS, key director.ServiceKey) []director.Destination {
	t.Helper()
	ds, err := k.Destinations(key)
	if err != nil {
		t.Fatalf("Destinations(%s): %v", key, err)
	}
	slices.SortFunc(ds, func(a, b director.Destination) int {
		if c := a.Address.Compare(b.Address); c != 0 {
			return c
		}
		return int(a.Port) - int(b.Port)
	})
	return ds
}

func ktWantErr(t *testing.T, what string, err error, errno syscall.Errno) {
	t.Helper()
	if !errors.Is(err, errno) {
		t.Errorf("%s: got %v, want %v (%s)", what, err, errno, unix.ErrnoName(errno))
	}
}

func ktMust(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

var (
	ktVip   = netip.MustParseAddr("192.0.2.10")
	ktVip6  = netip.MustParseAddr("2001:db8::10")
	ktTcp80 = director.ServiceKey{Family: fsm.IPv4, Protocol: fsm.TCP, Address: ktVip, Port: 80}
	ktUdp53 = director.ServiceKey{Family: fsm.IPv4, Protocol: fsm.UDP, Address: ktVip, Port: 53}
	ktSctp  = director.ServiceKey{Family: fsm.IPv4, Protocol: fsm.SCTP, Address: ktVip, Port: 3868}
	ktFwm7  = director.ServiceKey{Family: fsm.IPv4, FWMark: 7}
	ktTcp6  = director.ServiceKey{Family: fsm.IPv6, Protocol: fsm.TCP, Address: ktVip6, Port: 443}
	ktFwm8  = director.ServiceKey{Family: fsm.IPv6, FWMark: 8}
)

func ktRs(addr string, port uint16, fwd fsm.Forwarding, weight int) director.Destination {
	return director.Destination{DestinationKey: director.DestinationKey{Address: netip.MustParseAddr(addr), Port: port}, Forwarding: fwd, Weight: weight}
}

// ktExerciseIPVS creates services of every kind with destinations of every forwarding method,
// reads them back, checks the kernel's errnos, updates, and removes everything.
func ktExerciseIPVS(t *testing.T, k director.IPVS) {
	if svcs, err := k.Services(); err != nil || svcs == nil || len(svcs) != 0 {
		t.Fatalf("Services() of a fresh table = %#v, %v; want an empty list", svcs, err)
	}

	services := []director.Service{
		{ServiceKey: ktTcp80, Scheduler: "wrr", Persistent: true, Timeout: 300, Netmask: 24},
		{ServiceKey: ktUdp53, Scheduler: "rr"},
		{ServiceKey: ktSctp, Scheduler: "rr"},
		{ServiceKey: ktFwm7, Scheduler: "wrr"},
		{ServiceKey: ktTcp6, Scheduler: "rr", Persistent: true, Timeout: 60},
		{ServiceKey: ktFwm8, Scheduler: "rr"},
	}
	// Written as a writer may: no family on an address key.
	for _, s := range services {
		in := s
		if in.FWMark == 0 {
			in.Family = ""
		}
		ktMust(t, "CreateService "+s.String(), k.CreateService(in))
	}
	reals := map[director.ServiceKey][]director.Destination{
		ktTcp80: {
			ktRs("192.0.2.21", 80, fsm.DR, 1),
			{DestinationKey: director.DestinationKey{Address: netip.MustParseAddr("192.0.2.22"), Port: 8080}, Forwarding: fsm.NAT, Weight: 2, UpperThreshold: 100, LowerThreshold: 10},
			ktRs("192.0.2.23", 80, fsm.TUN, 3),
			// The other family is allowed when tunnelled (and no sync daemon runs).
			ktRs("2001:db8::24", 80, fsm.TUN, 1),
		},
		ktUdp53: {ktRs("192.0.2.21", 53, fsm.NAT, 1)},
		ktSctp:  {ktRs("192.0.2.21", 3868, fsm.DR, 1)},
		ktFwm7:  {ktRs("192.0.2.21", 0, fsm.DR, 1), ktRs("192.0.2.22", 0, fsm.DR, 65535)},
		ktTcp6: {
			ktRs("2001:db8::21", 443, fsm.DR, 1),
			ktRs("2001:db8::22", 443, fsm.TUN, 1),
			ktRs("2001:db8::23", 8443, fsm.NAT, 1),
		},
		ktFwm8: {ktRs("2001:db8::21", 0, fsm.DR, 1)},
	}
	for key, ds := range reals {
		for _, d := range ds {
			ktMust(t, "CreateDestination "+d.String()+" in "+key.String(), k.CreateDestination(key, d))
		}
	}

	// Read back: the netmask is the kernel's (host mask unless persistent with a prefix).
	want := slices.Clone(services)
	for i := range want {
		if !want[i].Persistent || want[i].Netmask == 0 {
			want[i].Netmask = 32
			if want[i].Family == fsm.IPv6 {
				want[i].Netmask = 128
			}
		}
	}
	slices.SortFunc(want, func(a, b director.Service) int { return ktCompareKeys(a.ServiceKey, b.ServiceKey) })
	if diff := cmp.Diff(want, ktSortedServices(t, k), ktAddrCmp); diff != "" {
		t.Fatalf("Services (-want +got):\n%s", diff)
	}
	for key, ds := range reals {
		w := slices.Clone(ds)
		slices.SortFunc(w, func(a, b director.Destination) int {
			if c := a.Address.Compare(b.Address); c != 0 {
				return c
			}
			return int(a.Port) - int(b.Port)
		})
		if diff := cmp.Diff(w, ktSortedDests(t, k, key), ktAddrCmp); diff != "" {
			t.Errorf("Destinations(%s) (-want +got):\n%s", key, diff)
		}
	}

	// The kernel's errnos.
	missing := director.ServiceKey{Protocol: fsm.TCP, Address: ktVip, Port: 81}
	r21 := reals[ktTcp80][0]
	absent := ktRs("192.0.2.99", 80, fsm.DR, 1)
	ktWantErr(t, "CreateService of an existing service", k.CreateService(services[0]), syscall.EEXIST)
	ktWantErr(t, "UpdateService of a missing service", k.UpdateService(director.Service{ServiceKey: missing, Scheduler: "rr"}), syscall.ESRCH)
	ktWantErr(t, "RemoveService of a missing service", k.RemoveService(missing), syscall.ESRCH)
	_, err := k.Destinations(missing)
	ktWantErr(t, "Destinations of a missing service", err, syscall.ESRCH)
	ktWantErr(t, "CreateDestination in a missing service", k.CreateDestination(missing, r21), syscall.ESRCH)
	ktWantErr(t, "RemoveDestination in a missing service", k.RemoveDestination(missing, r21.DestinationKey), syscall.ESRCH)
	ktWantErr(t, "CreateDestination of an existing destination", k.CreateDestination(ktTcp80, r21), syscall.EEXIST)
	ktWantErr(t, "UpdateDestination of a missing destination", k.UpdateDestination(ktTcp80, absent), syscall.ENOENT)
	ktWantErr(t, "RemoveDestination of a missing destination", k.RemoveDestination(ktTcp80, absent.DestinationKey), syscall.ENOENT)
	ktWantErr(t, "CreateService with an unknown scheduler", k.CreateService(director.Service{ServiceKey: missing, Scheduler: "nosuch"}), syscall.ENOENT)
	ktWantErr(t, "UpdateService to an unknown scheduler", k.UpdateService(director.Service{ServiceKey: ktUdp53, Scheduler: "nosuch"}), syscall.ENOENT)
	ktWantErr(t, "a lower threshold above the upper", k.CreateDestination(ktTcp80, director.Destination{DestinationKey: absent.DestinationKey, Forwarding: fsm.DR, UpperThreshold: 5, LowerThreshold: 6}), syscall.ERANGE)
	ktWantErr(t, "a lower threshold with no upper", k.UpdateDestination(ktTcp80, director.Destination{DestinationKey: r21.DestinationKey, Forwarding: fsm.DR, LowerThreshold: 1}), syscall.ERANGE)
	ktWantErr(t, "a negative weight", k.UpdateDestination(ktTcp80, director.Destination{DestinationKey: r21.DestinationKey, Forwarding: fsm.DR, Weight: -1}), syscall.ERANGE)
	ktWantErr(t, "a destination of the other family, routed", k.CreateDestination(ktTcp80, ktRs("2001:db8::25", 80, fsm.DR, 1)), syscall.EINVAL)
	ktWantErr(t, "a multicast destination", k.CreateDestination(ktTcp80, ktRs("224.0.0.9", 80, fsm.DR, 1)), syscall.EINVAL)
	if t.Failed() {
		t.FailNow()
	}
	// None of that changed anything.
	if diff := cmp.Diff(want, ktSortedServices(t, k), ktAddrCmp); diff != "" {
		t.Fatalf("Services after refused calls (-want +got):\n%s", diff)
	}

	// What the kernel accepts and ipvsadm refuses: port 0 (the catch-all service), the "none"
	// scheduler, a weight above 65535.
	catchAll := director.ServiceKey{Family: fsm.IPv4, Protocol: fsm.TCP, Address: ktVip, Port: 0}
	heavy := ktRs("192.0.2.21", 0, fsm.DR, 70000)
	ktMust(t, "CreateService on port 0", k.CreateService(director.Service{ServiceKey: catchAll, Scheduler: "none"}))
	ktMust(t, "CreateDestination of weight 70000", k.CreateDestination(catchAll, heavy))
	if ds := ktSortedDests(t, k, catchAll); !cmp.Equal(ds, []director.Destination{heavy}, ktAddrCmp) {
		t.Errorf("catch-all destinations = %+v", ds)
	}
	svcs := ktSortedServices(t, k)
	if i := slices.IndexFunc(svcs, func(s director.Service) bool { return s.ServiceKey == catchAll }); i < 0 || svcs[i].Scheduler != "none" {
		t.Errorf("catch-all service missing or changed: %+v", svcs)
	}
	ktMust(t, "RemoveService on port 0", k.RemoveService(catchAll))

	// Updates: not persistent any more (the host mask comes back), a drained real.
	ktMust(t, "UpdateService", k.UpdateService(director.Service{ServiceKey: ktTcp80, Scheduler: "rr", Netmask: 24}))
	ktMust(t, "UpdateDestination", k.UpdateDestination(ktTcp80, director.Destination{DestinationKey: r21.DestinationKey, Forwarding: fsm.NAT, Weight: 0, UpperThreshold: 7, LowerThreshold: 7}))
	svcs = ktSortedServices(t, k)
	if got := svcs[slices.IndexFunc(svcs, func(s director.Service) bool { return s.ServiceKey == ktTcp80 })]; !cmp.Equal(got, director.Service{ServiceKey: ktTcp80, Scheduler: "rr", Netmask: 32}, ktAddrCmp) {
		t.Errorf("updated service reads back as %+v", got)
	}
	ds := ktSortedDests(t, k, ktTcp80)
	if ds[0].DestinationKey != r21.DestinationKey || ds[0].Forwarding != fsm.NAT || ds[0].Weight != 0 || ds[0].UpperThreshold != 7 || ds[0].LowerThreshold != 7 {
		t.Errorf("updated destination reads back as %+v", ds[0])
	}

	// Remove everything: destinations one by one on one service, the rest with their services.
	for _, d := range reals[ktTcp6] {
		ktMust(t, "RemoveDestination "+d.String(), k.RemoveDestination(ktTcp6, d.DestinationKey))
	}
	if ds := ktSortedDests(t, k, ktTcp6); ds == nil || len(ds) != 0 {
		t.Errorf("Destinations of an emptied service = %#v, want an empty list", ds)
	}
	for _, s := range services {
		ktMust(t, "RemoveService "+s.String(), k.RemoveService(s.ServiceKey))
	}
	if svcs, err := k.Services(); err != nil || len(svcs) != 0 {
		t.Fatalf("after removing everything: %+v, %v", svcs, err)
	}

	t.Run("sh and mh flags", func(t *testing.T) {
		for _, sched := range []fsm.Scheduler{"sh", "mh"} {
			flags := []fsm.SchedulerFlag{fsm.FlagSHFallback, fsm.FlagSHPort}
			if sched == "mh" {
				flags = []fsm.SchedulerFlag{fsm.FlagMHFallback, fsm.FlagMHPort}
			}
			err := k.CreateService(director.Service{ServiceKey: ktTcp80, Scheduler: sched, SchedFlags: flags})
			if errors.Is(err, syscall.ENOENT) {
				t.Skipf("the kernel has no ip_vs_%s module: %v", sched, err)
			}
			ktMust(t, "CreateService", err)
			svcs := ktSortedServices(t, k)
			ktMust(t, "RemoveService", k.RemoveService(ktTcp80))
			want := []director.Service{{ServiceKey: ktTcp80, Scheduler: sched, SchedFlags: flags, Netmask: 32}}
			if diff := cmp.Diff(want, svcs, ktAddrCmp); diff != "" {
				t.Errorf("%s service (-want +got):\n%s", sched, diff)
			}
		}
	})
}

// ktExerciseSyncDaemons starts a master and a backup on lo, reads them back, checks the errnos and
// the kernel's refusal to mix sync daemons with mixed-family destinations, and stops them.
func ktExerciseSyncDaemons(t *testing.T, k director.IPVS, s director.SyncDaemons) {
	if ds, err := s.Daemons(); err != nil || ds == nil || len(ds) != 0 {
		t.Fatalf("Daemons() before any = %#v, %v; want an empty list", ds, err)
	}
	master := director.SyncDaemon{State: director.SyncMaster, Interface: "lo", SyncID: 7}
	backup := director.SyncDaemon{State: director.SyncBackup, Interface: "lo", SyncID: 9}
	ktMust(t, "StartDaemon master", s.StartDaemon(master))
	ktWantErr(t, "StartDaemon of a running master", s.StartDaemon(master), syscall.EEXIST)
	ktWantErr(t, "StartDaemon on a missing interface", s.StartDaemon(director.SyncDaemon{State: director.SyncBackup, Interface: "nosuch0"}), syscall.ENODEV)
	ktWantErr(t, "StartDaemon of an unknown role", s.StartDaemon(director.SyncDaemon{State: 3, Interface: "lo"}), syscall.EINVAL)
	ktMust(t, "StartDaemon backup", s.StartDaemon(backup))
	ds, err := s.Daemons()
	ktMust(t, "Daemons", err)
	if diff := cmp.Diff([]director.SyncDaemon{master, backup}, ds); diff != "" {
		t.Errorf("Daemons (-want +got):\n%s", diff)
	}

	// No mixed-family destination while a daemon runs...
	ktMust(t, "CreateService", k.CreateService(director.Service{ServiceKey: ktTcp80, Scheduler: "rr"}))
	defer k.RemoveService(ktTcp80)
	ktWantErr(t, "a mixed-family destination with a daemon running", k.CreateDestination(ktTcp80, ktRs("2001:db8::24", 80, fsm.TUN, 1)), syscall.EINVAL)

	ktMust(t, "StopDaemon master", s.StopDaemon(director.SyncMaster))
	ktWantErr(t, "StopDaemon of a stopped master", s.StopDaemon(director.SyncMaster), syscall.ESRCH)
	ktMust(t, "StopDaemon backup", s.StopDaemon(director.SyncBackup))
	if ds, err := s.Daemons(); err != nil || len(ds) != 0 {
		t.Errorf("Daemons() after stopping = %+v, %v", ds, err)
	}

	// ...and no daemon while one exists.
	ktMust(t, "CreateDestination", k.CreateDestination(ktTcp80, ktRs("2001:db8::24", 80, fsm.TUN, 1)))
	ktWantErr(t, "a daemon with a mixed-family destination", s.StartDaemon(master), syscall.EINVAL)
	ktMust(t, "RemoveService", k.RemoveService(ktTcp80))
	ktMust(t, "StartDaemon master again", s.StartDaemon(master))
	ktMust(t, "StopDaemon master again", s.StopDaemon(director.SyncMaster))
}
