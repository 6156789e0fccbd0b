package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/troop-lb/troop/fsm"
)

func TestConfigValidate(t *testing.T) {
	valid := func() Config {
		c := DefaultConfig()
		c.NodeID = "n1"
		c.DataDir = "/var/lib/troop"
		c.BindAddr = "192.0.2.1:7946"
		c.BootstrapExpect = 3
		c.Join = []string{"192.0.2.2:7946", "192.0.2.3:7946"}
		return c
	}
	if err := (func() *Config { c := valid(); return &c })().Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	if c := DevConfig(); c.Validate() != nil {
		t.Fatalf("dev config: %v", c.Validate())
	}
	tests := []struct {
		name  string
		edit  func(*Config)
		field string
		value string
	}{
		{"no node id", func(c *Config) { c.NodeID = "" }, "NodeID", ""},
		{"padded node id", func(c *Config) { c.NodeID = " n1" }, "NodeID", " n1"},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "DataDir", ""},
		{"bind not host:port", func(c *Config) { c.BindAddr = "192.0.2.1" }, "BindAddr", "192.0.2.1"},
		{"bind bad port", func(c *Config) { c.BindAddr = "192.0.2.1:http" }, "BindAddr", "192.0.2.1:http"},
		{"wildcard bind needs advertise", func(c *Config) { c.BindAddr = "0.0.0.0:7946" }, "AdvertiseAddr", ""},
		{"advertise unspecified", func(c *Config) { c.AdvertiseAddr = "[::]:7946" }, "AdvertiseAddr", "[::]:7946"},
		{"advertise port 0", func(c *Config) { c.AdvertiseAddr = "192.0.2.1:0" }, "AdvertiseAddr", "192.0.2.1:0"},
		{"no bootstrap source", func(c *Config) { c.BootstrapExpect, c.Join = 0, nil }, "Peers", ""},
		{"expect without join", func(c *Config) { c.Join = nil }, "Join", ""},
		{"negative expect", func(c *Config) { c.BootstrapExpect = -1 }, "BootstrapExpect", "-1"},
		{"bad join", func(c *Config) { c.Join = []string{"192.0.2.2"} }, "Join[0]", "192.0.2.2"},
		{"peers and expect", func(c *Config) { c.Peers = []PeerConfig{{"n1", "192.0.2.1:7946"}} }, "BootstrapExpect", "3"},
		{"peers without self", func(c *Config) {
			c.BootstrapExpect = 0
			c.Peers = []PeerConfig{{"n2", "192.0.2.2:7946"}}
		}, "Peers", "n1"},
		{"duplicate peer id", func(c *Config) {
			c.BootstrapExpect = 0
			c.Peers = []PeerConfig{{"n1", "192.0.2.1:7946"}, {"n1", "192.0.2.2:7946"}}
		}, "Peers[1].ID", "n1"},
		{"duplicate peer address", func(c *Config) {
			c.BootstrapExpect = 0
			c.Peers = []PeerConfig{{"n1", "192.0.2.1:7946"}, {"n2", "192.0.2.1:7946"}}
		}, "Peers[1].Address", "192.0.2.1:7946"},
		{"heartbeat too low", func(c *Config) { c.HeartbeatTimeout = time.Millisecond }, "HeartbeatTimeout", "1ms"},
		{"lease above heartbeat", func(c *Config) { c.LeaderLeaseTimeout = 400 * time.Millisecond }, "LeaderLeaseTimeout", "400ms"},
		{"election below heartbeat", func(c *Config) { c.ElectionTimeout = 200 * time.Millisecond }, "ElectionTimeout", "200ms"},
		{"commit above heartbeat", func(c *Config) { c.CommitTimeout = time.Second }, "CommitTimeout", "1s"},
		{"commit too low", func(c *Config) { c.CommitTimeout = 0 }, "CommitTimeout", "0s"},
		{"snapshot threshold zero", func(c *Config) { c.SnapshotThreshold = 0 }, "SnapshotThreshold", "0"},
		{"snapshot interval too low", func(c *Config) { c.SnapshotInterval = time.Millisecond }, "SnapshotInterval", "1ms"},
		{"dev with join", func(c *Config) { c.Dev = true }, "BootstrapExpect", "3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.edit(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("accepted")
			}
			var found bool
			for _, e := range unjoin(err) {
				var ce *ConfigError
				if errors.As(e, &ce) && ce.Field == tt.field && ce.Value == tt.value {
					found = true
					if !strings.Contains(e.Error(), tt.field) || !strings.Contains(e.Error(), fmt.Sprintf("%q", tt.value)) {
						t.Errorf("message %q does not name the field and value", e)
					}
				}
			}
			if !found {
				t.Fatalf("error %q does not reject %s = %q", err, tt.field, tt.value)
			}
		})
	}
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// TestWireErrors checks that every error kind survives the wire: errors.Is matches the same
// sentinel, the message is the sender's, and an fsm.FieldError keeps its fields.
func TestWireErrors(t *testing.T) {
	roundTrip := func(err error) error {
		t.Helper()
		b, jerr := json.Marshal(encodeError(err))
		if jerr != nil {
			t.Fatal(jerr)
		}
		var w *wireError
		if jerr := json.Unmarshal(b, &w); jerr != nil {
			t.Fatal(jerr)
		}
		return decodeError(w)
	}
	for _, k := range errorKinds {
		sent := fmt.Errorf("apply upsert_service at n1: %w", k.err)
		got := roundTrip(sent)
		if !errors.Is(got, k.err) || got.Error() != sent.Error() {
			t.Errorf("%s: got %q (errors.Is %v), sent %q", k.kind, got, errors.Is(got, k.err), sent)
		}
		for _, other := range errorKinds {
			if other.err != k.err && errors.Is(got, other.err) && !errors.Is(sent, other.err) {
				t.Errorf("%s: decoded error also matches %s", k.kind, other.kind)
			}
		}
	}
	fe := &fsm.FieldError{Field: `service "web" port`, Value: "0", Reason: "must be 1–65535", Kind: fsm.ErrInvalid}
	for _, sent := range []error{fe, fmt.Errorf("prepare: %w", fe)} {
		got := roundTrip(sent)
		var gfe *fsm.FieldError
		if !errors.As(got, &gfe) || *gfe != *fe || got.Error() != sent.Error() || !errors.Is(got, fsm.ErrInvalid) {
			t.Errorf("field error %q came back as %q (%#v)", sent, got, gfe)
		}
	}
	plain := errors.New("disk on fire")
	got := roundTrip(plain)
	if got.Error() != plain.Error() {
		t.Errorf("plain error came back as %q", got)
	}
	for _, k := range errorKinds {
		if errors.Is(got, k.err) {
			t.Errorf("plain error matches %s", k.kind)
		}
	}
	if roundTrip(nil) != nil {
		t.Error("nil error came back non-nil")
	}

	res := fsm.Result{Index: 7, Changed: []string{"web"}, Err: fmt.Errorf("x: %w", fsm.ErrConflict)}
	back := encodeResult(res).decode()
	if back.Index != 7 || len(back.Changed) != 1 || !errors.Is(back.Err, fsm.ErrConflict) || back.Err.Error() != res.Err.Error() {
		t.Errorf("result came back as %+v", back)
	}
}

func TestRetryPolicy(t *testing.T) {
	remote := func(err error) error { return decodeError(encodeError(err)) }
	tests := []struct {
		name             string
		err              error
		apply, idempotnt bool
	}{
		{"no leader", ErrNoLeader, true, true},
		{"not leader (remote)", remote(raft.ErrNotLeader), true, true},
		{"dial failed", &dialError{errors.New("refused")}, true, true},
		{"enqueue timeout", raft.ErrEnqueueTimeout, true, true},
		{"transfer in progress", remote(raft.ErrLeadershipTransferInProgress), true, true},
		{"unknown outcome", fmt.Errorf("%w: %w", ErrUnknownOutcome, raft.ErrLeadershipLost), false, true},
		{"broken connection after send", fmt.Errorf("read: %w: %w", ErrUnknownOutcome, io.EOF), false, true},
		// A bare shutdown is a stopping leader's refusal before appending; after, it is unknown.
		{"remote leader stopping", remote(errStopping), true, true},
		{"remote shutdown after append", remote(fmt.Errorf("%w: %w", ErrUnknownOutcome, raft.ErrRaftShutdown)), false, true},
		{"local shutdown", raft.ErrRaftShutdown, false, false},
		{"bad input", remote(&fsm.FieldError{Field: "f", Reason: "r", Kind: fsm.ErrInvalid}), false, false},
		{"unknown peer", remote(ErrUnknownPeer), false, false},
		{"deadline", fmt.Errorf("%w: %w", ErrUnknownOutcome, context.DeadlineExceeded), false, false},
		{"remote refusal", remote(errors.New("server x is not a voter")), false, false},
	}
	for _, tt := range tests {
		if got := retryable(tt.err, false); got != tt.apply {
			t.Errorf("%s: retryable for apply = %v, want %v", tt.name, got, tt.apply)
		}
		if got := retryable(tt.err, true); got != tt.idempotnt {
			t.Errorf("%s: retryable when idempotent = %v, want %v", tt.name, got, tt.idempotnt)
		}
	}
}

func TestFrames(t *testing.T) {
	var buf bytes.Buffer
	in := &rpcRequest{Op: opApply, Command: json.RawMessage(`{"v":1}`), Timeout: time.Second}
	if err := writeFrame(&buf, in); err != nil {
		t.Fatal(err)
	}
	var out rpcRequest
	if err := readFrame(&buf, &out); err != nil || out.Op != in.Op || string(out.Command) != `{"v":1}` || out.Timeout != time.Second {
		t.Fatalf("round trip: %+v, %v", out, err)
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], maxFrame+1)
	if err := readFrame(bytes.NewReader(hdr[:]), &out); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("oversized frame: %v", err)
	}
	binary.BigEndian.PutUint32(hdr[:], 10)
	if err := readFrame(bytes.NewReader(append(hdr[:], "abc"...)), &out); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated frame: %v", err)
	}
}

func TestMuxRoutesByFirstByte(t *testing.T) {
	checkGoroutines(t)
	layer, err := listenTCP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := newMux(layer, layer.Addr(), testLogger(t))
	m.start()
	defer m.Close()
	addr := layer.Addr().String()
	ctx := ctxTimeout(t, 5*time.Second)

	for _, tc := range []struct {
		kind byte
		l    net.Listener
	}{{muxRaft, m.raft}, {muxRPC, m.rpc}} {
		c, err := m.dial(ctx, addr, tc.kind)
		if err != nil {
			t.Fatal(err)
		}
		s, err := tc.l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 4)
		if _, err := io.ReadFull(s, got); err != nil || string(got) != "ping" {
			t.Fatalf("kind %d: server read %q, %v", tc.kind, got, err)
		}
		c.Close()
		s.Close()
	}
	if m.raft.Addr().String() != addr {
		t.Errorf("raft listener address %s, want %s", m.raft.Addr(), addr)
	}

	// An unknown first byte is dropped.
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.Write([]byte{9, 'x'})
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := raw.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection with an unknown type stayed open")
	}

	// Close ends Accept and closes connections the mux made.
	c, err := m.dial(ctx, addr, muxRPC)
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.rpc.Accept()
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if _, err := m.rpc.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("accept after close: %v", err)
	}
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.Read(make([]byte, 1)); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("accepted connection still open after Close: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("dialed connection still open after Close")
	}
	if _, err := m.dial(ctx, addr, muxRPC); err == nil {
		t.Fatal("dial after Close succeeded")
	}
}

func TestHclogAdapter(t *testing.T) {
	var buf bytes.Buffer
	l := newHclog(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})), "raft")
	l.Debug("debug line")
	l.Trace("trace line")
	if buf.Len() != 0 || l.IsDebug() || !l.IsInfo() || l.GetLevel() != hclog.Info {
		t.Fatalf("raft debug output at info: %q (IsDebug %v, level %s)", buf.String(), l.IsDebug(), l.GetLevel())
	}
	l.Named("snapshot").With("id", "1-2").Warn("snapshot failed", "error", errors.New("disk full"), "servers", hclog.Fmt("%d servers", 3))
	out := buf.String()
	for _, want := range []string{"level=WARN", `msg="snapshot failed"`, "logger=raft.snapshot", "id=1-2", `err="disk full"`, `servers="3 servers"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log line %q lacks %s", out, want)
		}
	}
	if strings.Contains(out, "BADKEY") || strings.Contains(out, " error=") {
		t.Errorf("log line %q mangles its keys", out)
	}
}

func TestLeadershipFeedCoalesces(t *testing.T) {
	var f leadershipFeed
	ctx, cancel := context.WithCancel(context.Background())
	a := f.watch(ctx)
	b := f.watch(context.Background())
	if l := <-a; l.IsLeader {
		t.Fatalf("first value %+v", l)
	}
	// A reader that does not keep up sees only the newest value, and the sender never blocks.
	for term := uint64(1); term <= 5; term++ {
		f.publish(Leadership{IsLeader: term%2 == 1, Term: term})
	}
	if l := <-a; l.Term != 5 || !l.IsLeader {
		t.Fatalf("after 5 publishes a reader got %+v, want term 5", l)
	}
	select {
	case l := <-a:
		t.Fatalf("second value %+v queued", l)
	default:
	}
	// Equal values are not repeated.
	f.publish(Leadership{IsLeader: true, Term: 5})
	select {
	case l := <-a:
		t.Fatalf("repeated value %+v", l)
	default:
	}
	cancel()
	if err := poll(ctxTimeout(t, time.Second), time.Millisecond, func() bool {
		select {
		case _, ok := <-a:
			return !ok
		default:
			return false
		}
	}); err != nil {
		t.Fatal("channel not closed after its context ended")
	}
	f.close()
	var last Leadership
	for l := range b {
		last = l
	}
	if last.IsLeader || last.Term != 5 {
		t.Fatalf("last value before close %+v, want not leader in term 5", last)
	}
	if _, ok := <-f.watch(context.Background()); ok {
		t.Fatal("watch after close returned an open channel")
	}
}

// memSink is a raft.SnapshotSink into memory.
type memSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Close() error  { s.closed = true; return nil }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }

// TestSnapshotIsFrozen checks that a snapshot persists the state it was taken at while later
// entries are applied, and that restoring it brings the applied index along.
func TestSnapshotIsFrozen(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	a := newRaftFSM(fsm.New(log))
	apply := func(index uint64, c fsm.Command) {
		t.Helper()
		b, err := fsm.EncodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		if res := a.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: b}).(fsm.Result); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	apply(3, upsert(1))
	apply(5, upsert(2))
	snap, err := a.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	apply(6, upsert(3))
	apply(7, fsm.DeleteService("web1"))
	var sink memSink
	if err := snap.Persist(&sink); err != nil || !sink.closed || sink.cancelled {
		t.Fatalf("persist: %v (closed %v, cancelled %v)", err, sink.closed, sink.cancelled)
	}
	snap.Release()
	if a.applied.Load() != 7 {
		t.Fatalf("applied %d, want 7", a.applied.Load())
	}

	b := newRaftFSM(fsm.New(log))
	if err := b.Restore(io.NopCloser(&sink)); err != nil {
		t.Fatal(err)
	}
	st := b.fsm.View()
	if got := st.ServiceNames(); !slices.Equal(got, names(1, 2)) || st.Index() != 5 || b.applied.Load() != 5 || b.restores.Load() != 1 {
		t.Fatalf("restored %v at index %d (applied %d, restores %d), want web1, web2 at 5", got, st.Index(), b.applied.Load(), b.restores.Load())
	}
	if err := b.Restore(io.NopCloser(strings.NewReader("{garbage"))); err == nil {
		t.Fatal("restored garbage")
	}
}
