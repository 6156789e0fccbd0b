package director

import (
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/troop-lb/troop/fsm"
)

var (
	webVIP  = netip.MustParseAddrPort("192.0.2.100:80")
	webReal = netip.MustParseAddrPort("192.0.2.21:80")
	client  = netip.MustParseAddrPort("192.0.2.200:55000")
)

func TestParseConns(t *testing.T) {
	in := "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n" +
		"TCP C00002C8 D6D8 C0000264 0050 C0000215 0050 SYN_RECV         59\n" +
		"TCP 2001:0db8:0000:0000:0000:0000:0000:00c8 D6D8 2001:0db8:0000:0000:0000:0000:0000:0100 0050 2001:0db8:0000:0000:0000:0000:0000:0021 0050 ESTABLISHED     899\n" +
		"TCP C00002C8 0000 C0000264 0050 C0000215 0050 NONE            300\n"
	got, err := parseConns([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Conn{
		{Protocol: fsm.TCP, Client: client, Virtual: webVIP, Dest: webReal, State: "SYN_RECV", Expires: 59 * time.Second},
		{Protocol: fsm.TCP, Client: netip.MustParseAddrPort("[2001:db8::c8]:55000"), Virtual: netip.MustParseAddrPort("[2001:db8::100]:80"),
			Dest: netip.MustParseAddrPort("[2001:db8::21]:80"), State: "ESTABLISHED", Expires: 899 * time.Second},
		{Protocol: fsm.TCP, Client: netip.AddrPortFrom(client.Addr(), 0), Virtual: webVIP, Dest: webReal, State: "NONE", Expires: 300 * time.Second},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d conns: %+v", len(got), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("conn %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if _, err := parseConns([]byte("TCP C00002C8 D6D8\n")); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("a short line: %v", err)
	}
	if _, err := parseConns([]byte("TCP XYZ D6D8 C0000264 0050 C0000215 0050 SYN_RECV 59\n")); err == nil {
		t.Error("a bad address was accepted")
	}
}

// The wire format is the kernel's struct ip_vs_sync_mesg and ip_vs_sync_v4 (ip_vs_sync.c).
func TestEncodeSyncV4(t *testing.T) {
	fwd := map[connRoute]fsm.Forwarding{{fsm.TCP, webVIP, webReal}: fsm.DR}
	entries := syncEntries([]Conn{{Protocol: fsm.TCP, Client: client, Virtual: webVIP, Dest: webReal, State: "SYN_RECV", Expires: 59 * time.Second}}, fwd)
	msgs := encodeSync(7, entries)
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	want := "0007002c" + "01010000" + // reserved, syncid 7, size 44; 1 conn, version 1, spare
		"00060024" + "00000103" + // IPv4, TCP, version 0 size 36; flags DROUTE|INACTIVE
		"0003d6d8" + "00500050" + // SYN_RECV; cport 55000, vport 80, dport 80
		"00000000" + "0000003b" + // fwmark 0, timeout 59 s
		"c00002c8" + "c0000264" + "c0000215" // caddr, vaddr, daddr
	if got := hex.EncodeToString(msgs[0]); got != want {
		t.Errorf("message\n got %s\nwant %s", got, want)
	}
}

func TestSyncEntries(t *testing.T) {
	nat := netip.MustParseAddrPort("192.0.2.22:8080")
	v6 := netip.MustParseAddrPort("[2001:db8::100]:80")
	v6real := netip.MustParseAddrPort("[2001:db8::21]:80")
	fwd := map[connRoute]fsm.Forwarding{
		{fsm.TCP, webVIP, webReal}: fsm.DR,
		{fsm.TCP, webVIP, nat}:     fsm.NAT,
		{fsm.TCP, v6, v6real}:      fsm.TUN,
		{fsm.UDP, webVIP, webReal}: fsm.DR,
	}
	conns := []Conn{
		{Protocol: fsm.TCP, Client: client, Virtual: webVIP, Dest: webReal, State: "ESTABLISHED"},
		{Protocol: fsm.TCP, Client: client, Virtual: webVIP, Dest: nat, State: "FIN_WAIT"},
		{Protocol: fsm.TCP, Client: netip.MustParseAddrPort("[2001:db8::c8]:1"), Virtual: v6, Dest: v6real, State: "ESTABLISHED"},
		{Protocol: fsm.TCP, Client: netip.AddrPortFrom(client.Addr(), 0), Virtual: webVIP, Dest: webReal, State: "NONE"},
		{Protocol: fsm.UDP, Client: client, Virtual: webVIP, Dest: webReal, State: "UDP"},
		{Protocol: fsm.UDP, Client: netip.AddrPortFrom(client.Addr(), 0), Virtual: webVIP, Dest: webReal, State: "UDP"},
		{Protocol: fsm.TCP, Client: client, Virtual: webVIP, Dest: netip.MustParseAddrPort("192.0.2.99:80"), State: "ESTABLISHED"}, // not Troop's
		{Protocol: fsm.TCP, Client: client, Virtual: webVIP, Dest: webReal, State: "WEIRD"},
	}
	got := syncEntries(conns, fwd)
	want := []struct {
		flags uint32
		state uint16
	}{
		{connFlagDRoute, 1},
		{connFlagMasq | connFlagInactive, 4},
		{connFlagTunnel, 1},
		{connFlagDRoute | connFlagTemplate, 0},
		{connFlagDRoute, 0},
		{connFlagDRoute | connFlagTemplate, 0},
	}
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		if got[i].flags != w.flags || got[i].state != w.state {
			t.Errorf("entry %d (%+v): flags %#x state %d, want %#x %d", i, got[i].conn, got[i].flags, got[i].state, w.flags, w.state)
		}
	}
	// An IPv6 entry is 72 bytes, with the type byte saying so.
	msgs := encodeSync(1, got[2:3])
	if len(msgs[0]) != syncHeaderLen+syncConnV6Len || msgs[0][syncHeaderLen] != syncTypeInet6 {
		t.Errorf("IPv6 message: %x", msgs[0])
	}
}

func TestEncodeSyncSplits(t *testing.T) {
	fwd := map[connRoute]fsm.Forwarding{{fsm.TCP, webVIP, webReal}: fsm.DR}
	var conns []Conn
	for p := range 100 {
		conns = append(conns, Conn{Protocol: fsm.TCP, Client: netip.AddrPortFrom(client.Addr(), uint16(1000+p)), Virtual: webVIP, Dest: webReal, State: "ESTABLISHED"})
	}
	msgs := encodeSync(1, syncEntries(conns, fwd))
	total := 0
	for _, m := range msgs {
		if len(m) > syncMaxMessage || int(m[2])<<8|int(m[3]) != len(m) {
			t.Errorf("message of %d bytes says %d", len(m), int(m[2])<<8|int(m[3]))
		}
		total += int(m[4])
	}
	if total != 100 || len(msgs) != 3 {
		t.Errorf("%d conns in %d messages, want 100 in 3 (40 fit in %d bytes)", total, len(msgs), syncMaxMessage)
	}
}
