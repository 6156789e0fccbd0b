package probe

import (
	"net"
	"os"
	"runtime"
	"testing"

	"golang.org/x/net/icmp"
	"golang.org/x/sys/unix"

	"github.com/troop-lb/troop/fsm"
)

// icmpUsable says whether this process may open the socket kind for the address family, and
// if not, why not.
func icmpUsable(mode icmpMode, v6 bool) error {
	network, laddr := mode.network(v6)
	c, err := icmp.ListenPacket(network, laddr)
	if err != nil {
		return err
	}
	return c.Close()
}

func hasIPv6Loopback() bool {
	c, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func TestICMPEcho(t *testing.T) {
	spec := testSpec("icmp", nil)
	for _, addr := range []string{"127.0.0.1", "::1"} {
		v6 := addr == "::1"
		if v6 && !hasIPv6Loopback() {
			t.Logf("%s: no IPv6 loopback here, skipped", addr)
			continue
		}
		target := testTarget(net.JoinHostPort(addr, "0"), spec)
		usable := 0
		for _, tc := range []struct {
			name  string
			mode  icmpMode
			setup string
		}{
			{"ping", icmpPing, "allowed for this group by sysctl net.ipv4.ping_group_range (TestICMPPingSocketInNetns allows them in a namespace of its own)"},
			{"raw", icmpRaw, "allowed for root or with CAP_NET_RAW"},
		} {
			t.Run(addr+" "+tc.name, func(t *testing.T) {
				if err := icmpUsable(tc.mode, v6); err != nil {
					t.Skipf("%s sockets are not usable here (%v): they are %s", tc.name, err, tc.setup)
				}
				usable++
				defer leakCheck(t)()
				c := newICMPChecker(spec, tc.mode)
				for range 3 {
					wantResult(t, checkOnce(t, c, target), true, "echo reply")
				}
			})
		}
		t.Run(addr+" either", func(t *testing.T) {
			if usable == 0 {
				t.Skip("neither ping sockets (sysctl net.ipv4.ping_group_range) nor raw sockets (root or CAP_NET_RAW) are usable here; CI runs as root")
			}
			defer leakCheck(t)()
			c := mustChecker(t, spec)
			results := make(chan Result, 10)
			for range 10 {
				go func() { results <- checkOnce(t, c, target) }()
			}
			for range 10 {
				wantResult(t, <-results, true, "echo reply")
			}
		})
	}
}

// onFreshThread runs fn on a goroutine locked to its own OS thread, which dies with it: fn may
// change the thread's credentials or namespace.
func onFreshThread(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		fn()
	}()
	<-done
}

func TestICMPNotPermitted(t *testing.T) {
	spec := testSpec("icmp", nil)
	target := testTarget("127.0.0.1:0", spec)
	var r Result
	var capErr error
	onFreshThread(func() {
		// Drop CAP_NET_RAW from this thread only.
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if capErr = unix.Capget(&hdr, &data[0]); capErr != nil {
			return
		}
		data[0].Effective &^= 1 << unix.CAP_NET_RAW
		if capErr = unix.Capset(&hdr, &data[0]); capErr != nil {
			return
		}
		r = newICMPChecker(spec, icmpRaw).Check(t.Context(), target)
	})
	if capErr != nil {
		t.Fatalf("dropping CAP_NET_RAW: %v", capErr)
	}
	wantResult(t, r, false, icmpNotPermitted)
}

// setLinkUp brings an interface of the calling thread's namespace up.
func setLinkUp(name string) error {
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

// TestICMPNoReply pings in a network namespace of its own, where the loopback is first down
// (no route) and then up but told to ignore echo requests (no reply).
func TestICMPNoReply(t *testing.T) {
	spec := testSpec("icmp", nil)
	c := mustChecker(t, spec)
	var (
		nsErr, setupErr       error
		down, silent, silent6 Result
		v6                    bool
	)
	defer leakCheck(t)()
	onFreshThread(func() {
		if nsErr = unix.Unshare(unix.CLONE_NEWNET); nsErr != nil {
			return
		}
		ctx := t.Context()
		down = c.Check(ctx, testTarget("127.0.0.1:0", spec))
		if setupErr = setLinkUp("lo"); setupErr != nil {
			return
		}
		// /proc/sys/net is the namespace of the thread that opens it.
		if setupErr = os.WriteFile("/proc/sys/net/ipv4/icmp_echo_ignore_all", []byte("1\n"), 0); setupErr != nil {
			return
		}
		silent = c.Check(ctx, testTarget("127.0.0.1:0", spec))
		if os.WriteFile("/proc/sys/net/ipv6/icmp/echo_ignore_all", []byte("1\n"), 0) == nil {
			v6 = true
			silent6 = c.Check(ctx, testTarget("[::1]:0", spec))
		}
	})
	if nsErr != nil {
		t.Skipf("namespace tier: cannot create a network namespace (needs root; CI runs it as root): unshare(CLONE_NEWNET): %v", nsErr)
	}
	if setupErr != nil {
		t.Fatalf("setting up the namespace: %v", setupErr)
	}
	wantResult(t, down, false, "network is unreachable")
	wantResult(t, silent, false, "no echo reply (timeout after 200ms)")
	if silent.Duration < testTimeout {
		t.Errorf("gave up after %v, before the timeout", silent.Duration)
	}
	if v6 {
		wantResult(t, silent6, false, "no echo reply (timeout after 200ms)")
	} else {
		t.Log("no net.ipv6.icmp.echo_ignore_all in this kernel: the IPv6 no-reply case was not run")
	}
}

// TestICMPPingSocketInNetns uses ping sockets where they are allowed: in a network namespace of
// its own, whose net.ipv4.ping_group_range it opens to every group (the host's stays as it is).
func TestICMPPingSocketInNetns(t *testing.T) {
	spec := testSpec("icmp", func(c *fsm.HealthCheck) {})
	c := newICMPChecker(spec, icmpPing)
	var (
		nsErr, setupErr error
		v4, v6          Result
	)
	defer leakCheck(t)()
	onFreshThread(func() {
		if nsErr = unix.Unshare(unix.CLONE_NEWNET); nsErr != nil {
			return
		}
		if setupErr = setLinkUp("lo"); setupErr != nil {
			return
		}
		if setupErr = os.WriteFile("/proc/sys/net/ipv4/ping_group_range", []byte("0 2147483647\n"), 0); setupErr != nil {
			return
		}
		v4 = c.Check(t.Context(), testTarget("127.0.0.1:0", spec))
		if hasIPv6Loopback() {
			v6 = c.Check(t.Context(), testTarget("[::1]:0", spec))
		}
	})
	if nsErr != nil {
		t.Skipf("namespace tier: cannot create a network namespace (needs root; CI runs it as root): unshare(CLONE_NEWNET): %v", nsErr)
	}
	if setupErr != nil {
		t.Fatalf("setting up the namespace: %v", setupErr)
	}
	wantResult(t, v4, true, "echo reply")
	if v6.Reason != "" {
		wantResult(t, v6, true, "echo reply")
	} else {
		t.Log("no IPv6 loopback in the namespace: the IPv6 ping socket was not tried")
	}
}
