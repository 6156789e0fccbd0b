//go:build linux

package director

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/genetlink/genltest"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nlenc"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"
	"pgregory.net/rapid"
)

// These tests check the sync-daemon commands' wire encoding below newSyncDaemons, on a genltest
// connection: exact request bytes, the decoding of replies encoded as the kernel encodes them
// (ip_vs_genl_fill_daemon), and random start/stop sequences against a small model of the
// kernel's daemon table.

const testFamilyID = 0x24

var testFamily = genetlink.Family{ID: testFamilyID, Version: ipvsGenlVersion, Name: ipvsGenlName}

func testSyncDaemons(t testing.TB, fn genltest.Func) *kernelSyncDaemons {
	t.Helper()
	k, err := newSyncDaemons(genltest.Dial(genltest.ServeFamily(testFamily, fn)), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

func u32(v uint32) []byte { return nlenc.Uint32Bytes(v) }

func TestNewSyncDaemonsNoFamily(t *testing.T) {
	// A kernel without IPVS: the controller answers ENOENT for the family.
	c := genltest.Dial(func(greq genetlink.Message, nreq netlink.Message) ([]genetlink.Message, error) {
		if nreq.Header.Type == unix.GENL_ID_CTRL {
			return nil, genltest.Error(int(unix.ENOENT))
		}
		return nil, fmt.Errorf("unexpected request %+v", nreq.Header)
	})
	_, err := newSyncDaemons(c, time.Second)
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("newSyncDaemons = %v, want ENOENT", err)
	}
	if want := `open IPVS sync daemon control: generic netlink family "IPVS" not found (is the ip_vs module loaded?): netlink receive: no such file or directory`; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

func TestStartDaemonRequest(t *testing.T) {
	tests := []struct {
		in   SyncDaemon
		want []netlink.Attribute
	}{{
		in: SyncDaemon{State: SyncMaster, Interface: "eth0", SyncID: 7},
		want: []netlink.Attribute{
			{Type: ipvsDaemonAttrState, Data: u32(1)},
			{Type: ipvsDaemonAttrMcastIfn, Data: []byte("eth0\x00")},
			{Type: ipvsDaemonAttrSyncID, Data: u32(7)},
		},
	}, {
		in: SyncDaemon{State: SyncBackup, Interface: "lo", SyncID: 0},
		want: []netlink.Attribute{
			{Type: ipvsDaemonAttrState, Data: u32(2)},
			{Type: ipvsDaemonAttrMcastIfn, Data: []byte("lo\x00")},
			{Type: ipvsDaemonAttrSyncID, Data: u32(0)},
		},
	}, {
		in: SyncDaemon{State: SyncMaster, Interface: "bond0.100", SyncID: 200},
		want: []netlink.Attribute{
			{Type: ipvsDaemonAttrState, Data: u32(1)},
			{Type: ipvsDaemonAttrMcastIfn, Data: []byte("bond0.100\x00")},
			{Type: ipvsDaemonAttrSyncID, Data: u32(200)},
		},
	}}
	for _, tt := range tests {
		var calls int
		k := testSyncDaemons(t, genltest.CheckRequest(testFamilyID, ipvsCmdNewDaemon, netlink.Request|netlink.Acknowledge,
			func(greq genetlink.Message, _ netlink.Message) ([]genetlink.Message, error) {
				calls++
				want := genetlink.Message{
					Header: genetlink.Header{Command: ipvsCmdNewDaemon, Version: ipvsGenlVersion},
					Data: nltest.MustMarshalAttributes([]netlink.Attribute{
						{Type: ipvsCmdAttrDaemon | netlink.Nested, Data: nltest.MustMarshalAttributes(tt.want)},
					}),
				}
				if diff := cmp.Diff(want, greq); diff != "" {
					t.Errorf("NEW_DAEMON for %+v (-want +got):\n%s", tt.in, diff)
				}
				return []genetlink.Message{{}}, nil
			}))
		if err := k.StartDaemon(tt.in); err != nil {
			t.Fatal(err)
		}
		if calls != 1 {
			t.Errorf("%d requests, want 1", calls)
		}
	}
}

func TestStopDaemonRequest(t *testing.T) {
	k := testSyncDaemons(t, genltest.CheckRequest(testFamilyID, ipvsCmdDelDaemon, netlink.Request|netlink.Acknowledge,
		func(greq genetlink.Message, _ netlink.Message) ([]genetlink.Message, error) {
			want := genetlink.Message{
				Header: genetlink.Header{Command: ipvsCmdDelDaemon, Version: ipvsGenlVersion},
				Data: nltest.MustMarshalAttributes([]netlink.Attribute{
					{Type: ipvsCmdAttrDaemon | netlink.Nested, Data: nltest.MustMarshalAttributes([]netlink.Attribute{
						{Type: ipvsDaemonAttrState, Data: u32(2)},
					})},
				}),
			}
			if diff := cmp.Diff(want, greq); diff != "" {
				t.Errorf("DEL_DAEMON (-want +got):\n%s", diff)
			}
			return []genetlink.Message{{}}, nil
		}))
	if err := k.StopDaemon(SyncBackup); err != nil {
		t.Fatal(err)
	}
}

// kernelDaemonReply encodes one GET_DAEMON reply as ip_vs_genl_fill_daemon does: a nest without
// NLA_F_NESTED holding every attribute the kernel sends.
func kernelDaemonReply(d SyncDaemon) genetlink.Message {
	inner := []netlink.Attribute{
		{Type: ipvsDaemonAttrState, Data: u32(uint32(d.State))},
		{Type: ipvsDaemonAttrMcastIfn, Data: append([]byte(d.Interface), 0)},
		{Type: ipvsDaemonAttrSyncID, Data: u32(uint32(d.SyncID))},
		{Type: ipvsDaemonAttrSyncMaxln, Data: nlenc.Uint16Bytes(1472)},
		{Type: 7, Data: nlenc.Uint16Bytes(8848)}, // IPVS_DAEMON_ATTR_MCAST_PORT
		{Type: 8, Data: []byte{1}},               // IPVS_DAEMON_ATTR_MCAST_TTL
		{Type: 5, Data: netip.MustParseAddr("224.0.0.81").AsSlice()},
	}
	return genetlink.Message{
		Header: genetlink.Header{Command: ipvsCmdNewDaemon, Version: ipvsGenlVersion},
		Data:   nltest.MustMarshalAttributes([]netlink.Attribute{{Type: ipvsCmdAttrDaemon, Data: nltest.MustMarshalAttributes(inner)}}),
	}
}

func TestDaemons(t *testing.T) {
	running := []SyncDaemon{{State: SyncMaster, Interface: "eth0", SyncID: 7}, {State: SyncBackup, Interface: "bond0.12", SyncID: 0}}
	for n := range len(running) + 1 {
		k := testSyncDaemons(t, genltest.CheckRequest(testFamilyID, ipvsCmdGetDaemon, netlink.Request|netlink.Dump,
			func(greq genetlink.Message, _ netlink.Message) ([]genetlink.Message, error) {
				if len(greq.Data) != 0 {
					t.Errorf("GET_DAEMON carries data %x", greq.Data)
				}
				var out []genetlink.Message
				for _, d := range running[:n] {
					out = append(out, kernelDaemonReply(d))
				}
				if len(out) == 0 {
					return nil, io.EOF // an empty dump
				}
				return out, nil
			}))
		got, err := k.Daemons()
		if err != nil {
			t.Fatal(err)
		}
		if want := running[:n]; !slices.Equal(got, want) || got == nil {
			t.Errorf("Daemons() = %#v, want %#v", got, want)
		}
	}
}

func TestDaemonsBadReply(t *testing.T) {
	k := testSyncDaemons(t, func(genetlink.Message, netlink.Message) ([]genetlink.Message, error) {
		return []genetlink.Message{{Data: nltest.MustMarshalAttributes([]netlink.Attribute{{Type: 1, Data: u32(1)}})}}, nil
	})
	if _, err := k.Daemons(); err == nil {
		t.Error("a reply without a daemon attribute was accepted")
	}
}

func TestSyncDaemonsErrors(t *testing.T) {
	tests := []struct {
		errno syscall.Errno
		is    error
		call  func(SyncDaemons) error
		want  string
	}{
		{unix.EEXIST, os.ErrExist, func(s SyncDaemons) error { return s.StartDaemon(SyncDaemon{SyncMaster, "eth0", 7}) },
			`start IPVS sync daemon master on "eth0" (syncid 7): netlink receive: file exists`},
		{unix.ENODEV, unix.ENODEV, func(s SyncDaemons) error { return s.StartDaemon(SyncDaemon{SyncBackup, "nope0", 1}) },
			`start IPVS sync daemon backup on "nope0" (syncid 1): netlink receive: no such device`},
		{unix.EINVAL, unix.EINVAL, func(s SyncDaemons) error { return s.StartDaemon(SyncDaemon{3, "eth0", 1}) },
			`start IPVS sync daemon state-3 on "eth0" (syncid 1): netlink receive: invalid argument`},
		{unix.ESRCH, unix.ESRCH, func(s SyncDaemons) error { return s.StopDaemon(SyncMaster) },
			`stop IPVS sync daemon master: netlink receive: no such process`},
		{unix.EPERM, os.ErrPermission, func(s SyncDaemons) error { return s.StopDaemon(SyncBackup) },
			`stop IPVS sync daemon backup: netlink receive: operation not permitted`},
	}
	for _, tt := range tests {
		k := testSyncDaemons(t, func(genetlink.Message, netlink.Message) ([]genetlink.Message, error) {
			return nil, genltest.Error(int(tt.errno))
		})
		err := tt.call(k)
		if !errors.Is(err, tt.errno) || !errors.Is(err, tt.is) {
			t.Errorf("%s: %v is not %v", tt.want, err, tt.errno)
		}
		if err == nil || err.Error() != tt.want {
			t.Errorf("error %q, want %q", err, tt.want)
		}
	}
}

func TestSyncDaemonsClose(t *testing.T) {
	k := testSyncDaemons(t, func(genetlink.Message, netlink.Message) ([]genetlink.Message, error) { return nil, nil })
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	if err := k.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestSyncDaemonsNoAnswer covers the kernel answering nothing to a command (DEL_DAEMON of a daemon
// whose thread had not run yet): the command times out, then GET_DAEMON decides.
func TestSyncDaemonsNoAnswer(t *testing.T) {
	master := SyncDaemon{State: SyncMaster, Interface: "lo", SyncID: 7}
	tests := []struct {
		name    string
		running []SyncDaemon // what GET_DAEMON shows after the timeout
		call    func(SyncDaemons) error
		ok      bool
	}{
		{"stopped after all", nil, func(s SyncDaemons) error { return s.StopDaemon(SyncMaster) }, true},
		{"other role still runs", []SyncDaemon{{State: SyncBackup, Interface: "lo"}}, func(s SyncDaemons) error { return s.StopDaemon(SyncMaster) }, true},
		{"still running", []SyncDaemon{master}, func(s SyncDaemons) error { return s.StopDaemon(SyncMaster) }, false},
		{"started after all", []SyncDaemon{master}, func(s SyncDaemons) error { return s.StartDaemon(master) }, true},
		{"started otherwise", []SyncDaemon{{State: SyncMaster, Interface: "eth0", SyncID: 7}}, func(s SyncDaemons) error { return s.StartDaemon(master) }, false},
		{"not started", nil, func(s SyncDaemons) error { return s.StartDaemon(master) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cmds []uint8
			k := testSyncDaemons(t, func(greq genetlink.Message, _ netlink.Message) ([]genetlink.Message, error) {
				cmds = append(cmds, greq.Header.Command)
				if greq.Header.Command != ipvsCmdGetDaemon {
					return nil, os.ErrDeadlineExceeded // what a read deadline gives
				}
				var out []genetlink.Message
				for _, d := range tt.running {
					out = append(out, kernelDaemonReply(d))
				}
				if len(out) == 0 {
					return nil, io.EOF
				}
				return out, nil
			})
			err := tt.call(k)
			if tt.ok && err != nil {
				t.Fatalf("got %v, want success", err)
			}
			if !tt.ok && !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("got %v, want the deadline error", err)
			}
			if len(cmds) != 2 || cmds[1] != ipvsCmdGetDaemon {
				t.Errorf("commands %v, want the command then GET_DAEMON", cmds)
			}
		})
	}
}

// daemonKernel is a model of the kernel's daemon table behind the IPVS family, speaking the wire
// format: it decodes requests with its own code (not the package's) and answers as the kernel
// does, errnos included.
type daemonKernel struct {
	mu      sync.Mutex
	ifaces  []string
	running map[uint32]SyncDaemon
}

func (k *daemonKernel) serve(greq genetlink.Message, nreq netlink.Message) ([]genetlink.Message, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch greq.Header.Command {
	case ipvsCmdGetDaemon:
		var out []genetlink.Message
		for _, s := range []uint32{1, 2} {
			if d, ok := k.running[s]; ok {
				out = append(out, kernelDaemonReply(d))
			}
		}
		if len(out) == 0 {
			return nil, io.EOF
		}
		return out, nil
	case ipvsCmdNewDaemon, ipvsCmdDelDaemon:
	default:
		return nil, genltest.Error(int(unix.EOPNOTSUPP))
	}
	if nreq.Header.Flags != netlink.Request|netlink.Acknowledge {
		return nil, fmt.Errorf("flags %v", nreq.Header.Flags)
	}
	attrs, err := netlink.UnmarshalAttributes(greq.Data)
	if err != nil || len(attrs) != 1 || attrs[0].Type&^netlink.Nested != ipvsCmdAttrDaemon {
		return nil, genltest.Error(int(unix.EINVAL))
	}
	inner, err := netlink.UnmarshalAttributes(attrs[0].Data)
	if err != nil {
		return nil, genltest.Error(int(unix.EINVAL))
	}
	got := map[uint16][]byte{}
	for _, a := range inner {
		got[a.Type] = a.Data
	}
	state, ok := got[ipvsDaemonAttrState]
	if !ok || len(state) != 4 {
		return nil, genltest.Error(int(unix.EINVAL))
	}
	s := nlenc.Uint32(state)
	if greq.Header.Command == ipvsCmdDelDaemon {
		if s != 1 && s != 2 {
			return nil, genltest.Error(int(unix.EINVAL))
		}
		if _, ok := k.running[s]; !ok {
			return nil, genltest.Error(int(unix.ESRCH))
		}
		delete(k.running, s)
		return []genetlink.Message{{}}, nil
	}
	ifn, okI := got[ipvsDaemonAttrMcastIfn]
	id, okS := got[ipvsDaemonAttrSyncID]
	if !okI || !okS || len(id) != 4 || len(ifn) == 0 || ifn[len(ifn)-1] != 0 || len(ifn) > 16 {
		return nil, genltest.Error(int(unix.EINVAL))
	}
	name := string(ifn[:len(ifn)-1])
	if !slices.Contains(k.ifaces, name) {
		return nil, genltest.Error(int(unix.ENODEV))
	}
	if s != 1 && s != 2 {
		return nil, genltest.Error(int(unix.EINVAL))
	}
	if _, ok := k.running[s]; ok {
		return nil, genltest.Error(int(unix.EEXIST))
	}
	k.running[s] = SyncDaemon{State: SyncState(s), Interface: name, SyncID: uint8(nlenc.Uint32(id))}
	return []genetlink.Message{{}}, nil
}

func drawSyncDaemon(t *rapid.T, ifaces []string) SyncDaemon {
	return SyncDaemon{
		State:     SyncState(rapid.Uint32Range(0, 3).Draw(t, "state")),
		Interface: rapid.OneOf(rapid.SampledFrom(ifaces), rapid.StringMatching(`[a-z][a-z0-9.]{0,14}`)).Draw(t, "iface"),
		SyncID:    rapid.Uint8().Draw(t, "syncid"),
	}
}

// TestSyncDaemonsRapid runs random start/stop/list sequences against daemonKernel and checks
// every answer against what the kernel would answer.
func TestSyncDaemonsRapid(t *testing.T) {
	ifaces := []string{"lo", "eth0", "bond0.100", "br-lan"}
	rapid.Check(t, func(t *rapid.T) {
		kern := &daemonKernel{ifaces: ifaces, running: map[uint32]SyncDaemon{}}
		k, err := newSyncDaemons(genltest.Dial(genltest.ServeFamily(testFamily, kern.serve)), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer k.Close()
		model := map[SyncState]SyncDaemon{}
		t.Repeat(map[string]func(*rapid.T){
			"start": func(t *rapid.T) {
				d := drawSyncDaemon(t, ifaces)
				err := k.StartDaemon(d)
				var want error
				switch {
				case !slices.Contains(ifaces, d.Interface):
					want = unix.ENODEV
				case d.State != SyncMaster && d.State != SyncBackup:
					want = unix.EINVAL
				case model[d.State] != (SyncDaemon{}):
					want = unix.EEXIST
				default:
					model[d.State] = d
				}
				if !errors.Is(err, want) || (want == nil) != (err == nil) {
					t.Fatalf("StartDaemon(%+v) = %v, want %v", d, err, want)
				}
			},
			"stop": func(t *rapid.T) {
				s := SyncState(rapid.Uint32Range(0, 3).Draw(t, "state"))
				err := k.StopDaemon(s)
				var want error
				switch {
				case s != SyncMaster && s != SyncBackup:
					want = unix.EINVAL
				case model[s] == (SyncDaemon{}):
					want = unix.ESRCH
				default:
					delete(model, s)
				}
				if !errors.Is(err, want) || (want == nil) != (err == nil) {
					t.Fatalf("StopDaemon(%d) = %v, want %v", s, err, want)
				}
			},
			"": func(t *rapid.T) {
				got, err := k.Daemons()
				if err != nil {
					t.Fatal(err)
				}
				want := []SyncDaemon{}
				for _, s := range []SyncState{SyncMaster, SyncBackup} {
					if d, ok := model[s]; ok {
						want = append(want, d)
					}
				}
				if !slices.Equal(got, want) {
					t.Fatalf("Daemons() = %+v, want %+v", got, want)
				}
			},
		})
	})
}

// TestSyncDaemonCodecRapid round-trips random daemons through the request encoder and the reply
// decoder, with the kernel's own re-encoding in between.
func TestSyncDaemonCodecRapid(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		d := SyncDaemon{
			State:     SyncState(rapid.Uint32().Draw(t, "state")),
			Interface: rapid.StringMatching(`[^\x00]{0,15}`).Draw(t, "iface"),
			SyncID:    rapid.Uint8().Draw(t, "syncid"),
		}
		b, err := encodeStartDaemon(d)
		if err != nil {
			t.Fatal(err)
		}
		attrs, err := netlink.UnmarshalAttributes(b)
		if err != nil || len(attrs) != 1 || attrs[0].Type != ipvsCmdAttrDaemon|netlink.Nested {
			t.Fatalf("NEW_DAEMON attributes %+v, %v", attrs, err)
		}
		ad, err := netlink.NewAttributeDecoder(attrs[0].Data)
		if err != nil {
			t.Fatal(err)
		}
		var back SyncDaemon
		for ad.Next() {
			switch ad.Type() {
			case ipvsDaemonAttrState:
				back.State = SyncState(ad.Uint32())
			case ipvsDaemonAttrMcastIfn:
				back.Interface = ad.String()
			case ipvsDaemonAttrSyncID:
				back.SyncID = uint8(ad.Uint32())
			}
		}
		if err := ad.Err(); err != nil || back != d {
			t.Fatalf("NEW_DAEMON decodes to %+v (%v), want %+v", back, err, d)
		}
		got, err := decodeDaemonMessage(kernelDaemonReply(d).Data)
		if err != nil || got != d {
			t.Fatalf("reply decodes to %+v (%v), want %+v", got, err, d)
		}
	})
}
