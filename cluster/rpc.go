package cluster

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/troop-lb/troop/fsm"
)

// Troop's RPC between directors runs next to Raft on the same port. A connection carries
// requests and responses in turn, each one frame: a 4-byte big-endian length and that many bytes
// of JSON. A client sets the connection's deadline from its context and sends its remaining time
// in the request so that the server bounds its own work by it.

// RPC operations.
const (
	opApply              = "apply"               // commit an encoded command (leader only)
	opReadIndex          = "read_index"          // confirm leadership, return the commit index (leader only)
	opJoin               = "join"                // add the caller (leader only; see joinLeader)
	opRemovePeer         = "remove_peer"         // remove a server (leader only)
	opTransferLeadership = "transfer_leadership" // hand leadership over (leader only)
	opInfo               = "info"                // describe this node (any node; bootstrap_expect)
)

// rpcVersion is the version of the RPC this build speaks. Fields are only ever added (JSON
// ignores unknown ones, so N and N-1 understand each other); a request of a newer version or an
// unknown op is refused with fsm.ErrNewerVersion rather than half understood.
const rpcVersion = 1

// rpcRequest is one call.
type rpcRequest struct {
	// Version is the caller's rpcVersion; call sets it.
	Version int    `json:"v"`
	Op      string `json:"op"`
	// Command is an fsm-encoded command (apply).
	Command json.RawMessage `json:"command,omitempty"`
	// ID and Address name a server (join, remove_peer, transfer_leadership).
	ID      string `json:"id,omitempty"`
	Address string `json:"address,omitempty"`
	// Timeout is the caller's remaining time; the server stops waiting after it.
	Timeout time.Duration `json:"timeout,omitempty"`
}

// rpcResponse answers one rpcRequest.
type rpcResponse struct {
	Err *wireError `json:"err,omitempty"`
	// Leader is the responder's idea of the leader's address when Err is not_leader.
	Leader string      `json:"leader,omitempty"`
	Result *wireResult `json:"result,omitempty"`
	Index  uint64      `json:"index,omitempty"`
	Info   *nodeInfo   `json:"info,omitempty"`
}

// wireResult is an fsm.Result on the wire.
type wireResult struct {
	Index   uint64     `json:"index"`
	Changed []string   `json:"changed,omitempty"`
	Err     *wireError `json:"err,omitempty"`
}

// nodeInfo describes a node to servers that are bootstrapping.
type nodeInfo struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	// HasState is true once the node has any Raft state (it bootstrapped, joined, or restarted).
	HasState bool   `json:"has_state"`
	Leader   string `json:"leader,omitempty"`
	// Witness is true for a witness (Config.Witness); LastIndex is the node's last log index.
	// A witness that leads reads both to choose the director it hands leadership to.
	Witness   bool   `json:"witness,omitempty"`
	LastIndex uint64 `json:"last_index,omitempty"`
	// Protocol is the protocol the node speaks (Config.Protocol); 0 from an agent older than
	// protocol versioning, which speaks protocol 1.
	Protocol int `json:"protocol,omitempty"`
}

// wireError is an error on the wire. Kind names the sentinel the error matched on the sending
// side (errorKinds); the receiver rebuilds an error that errors.Is matches against the same
// sentinel and whose message is the sender's. An fsm.FieldError keeps its fields, so errors.As
// works too.
type wireError struct {
	Kind    string `json:"kind,omitempty"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
	Value   string `json:"value,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// errorKinds are the sentinels that survive the wire, most specific first.
var errorKinds = []struct {
	kind string
	err  error
}{
	{"invalid", fsm.ErrInvalid},
	{"not_found", fsm.ErrNotFound},
	{"conflict", fsm.ErrConflict},
	{"unknown_command", fsm.ErrUnknownCommand},
	{"newer_version", fsm.ErrNewerVersion},
	{"halted", fsm.ErrHalted},
	{"feature_unavailable", ErrFeatureUnavailable},
	{"unknown_outcome", ErrUnknownOutcome},
	{"no_leader", ErrNoLeader},
	{"unknown_peer", ErrUnknownPeer},
	{"not_leader", raft.ErrNotLeader},
	{"leadership_lost", raft.ErrLeadershipLost},
	{"transfer_in_progress", raft.ErrLeadershipTransferInProgress},
	{"enqueue_timeout", raft.ErrEnqueueTimeout},
	{"shutdown", raft.ErrRaftShutdown},
	{"deadline", context.DeadlineExceeded},
	{"canceled", context.Canceled},
}

func encodeError(err error) *wireError {
	if err == nil {
		return nil
	}
	w := &wireError{Message: err.Error()}
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			w.Kind = k.kind
			break
		}
	}
	var fe *fsm.FieldError
	if errors.As(err, &fe) {
		w.Field, w.Value, w.Reason = fe.Field, fe.Value, fe.Reason
	}
	return w
}

func decodeError(w *wireError) error {
	if w == nil {
		return nil
	}
	var kind error
	for _, k := range errorKinds {
		if k.kind == w.Kind {
			kind = k.err
			break
		}
	}
	if w.Field != "" && kind != nil {
		fe := &fsm.FieldError{Field: w.Field, Value: w.Value, Reason: w.Reason, Kind: kind}
		if fe.Error() == w.Message {
			return fe
		}
		kind = fe
	}
	return &remoteError{msg: w.Message, kind: kind}
}

// remoteError is an error returned by another node. kind is the sentinel (or the *fsm.FieldError)
// it matched there.
type remoteError struct {
	msg  string
	kind error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.kind }

func encodeResult(r fsm.Result) *wireResult {
	return &wireResult{Index: r.Index, Changed: r.Changed, Err: encodeError(r.Err)}
}

func (w *wireResult) decode() fsm.Result {
	if w == nil {
		return fsm.Result{}
	}
	return fsm.Result{Index: w.Index, Changed: w.Changed, Err: decodeError(w.Err)}
}

// maxFrame bounds one frame; an apply_table of a large pool is a few MB.
const maxFrame = 64 << 20

func writeFrame(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > maxFrame {
		return fmt.Errorf("frame of %d bytes exceeds the limit of %d", len(b), maxFrame)
	}
	buf := make([]byte, 4, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	_, err = w.Write(append(buf, b...))
	return err
}

func readFrame(r io.Reader, v any) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxFrame {
		return fmt.Errorf("frame of %d bytes exceeds the limit of %d", n, maxFrame)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return fmt.Errorf("read frame: %w", err)
	}
	return json.Unmarshal(b, v)
}

// Timeouts of the RPC layer.
const (
	// defaultRPCTimeout bounds a call whose context has no deadline.
	defaultRPCTimeout = 10 * time.Second
	// rpcIdleTimeout closes a server connection that sends no request for this long.
	rpcIdleTimeout = 60 * time.Second
)

// dialError means a call failed before its request was sent: retrying cannot apply anything twice.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// call sends one request to the node at addr and returns its response. A response carrying an
// error is returned along with that error, decoded.
func call(ctx context.Context, nw network, addr string, req *rpcRequest) (*rpcResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, defaultRPCTimeout)
	defer cancel()
	dl, _ := ctx.Deadline()
	req.Timeout = time.Until(dl)
	req.Version = rpcVersion
	conn, err := nw.DialRPC(ctx, addr)
	if err != nil {
		return nil, &dialError{fmt.Errorf("connect to %s: %w", addr, err)}
	}
	defer conn.Close()
	_ = conn.SetDeadline(dl)
	// Cancelling ctx aborts the I/O.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	// From here on the request may have reached the server and been carried out.
	if err := writeFrame(conn, req); err != nil {
		return nil, fmt.Errorf("send %s to %s: %w: %w", req.Op, addr, ErrUnknownOutcome, ioErr(ctx, err))
	}
	var resp rpcResponse
	if err := readFrame(bufio.NewReader(conn), &resp); err != nil {
		return nil, fmt.Errorf("%s at %s: read response: %w: %w", req.Op, addr, ErrUnknownOutcome, ioErr(ctx, err))
	}
	return &resp, decodeError(resp.Err)
}

// ioErr prefers the context's error when it caused the I/O failure.
func ioErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// rpcServer serves RPC connections with a handler until its context ends.
type rpcServer struct {
	l      net.Listener
	handle func(context.Context, *rpcRequest) *rpcResponse
	log    *slog.Logger

	wg    sync.WaitGroup
	mu    sync.Mutex // guards conns
	conns map[net.Conn]struct{}
}

func newRPCServer(l net.Listener, handle func(context.Context, *rpcRequest) *rpcResponse, log *slog.Logger) *rpcServer {
	return &rpcServer{l: l, handle: handle, log: log, conns: map[net.Conn]struct{}{}}
}

// serve accepts connections until ctx ends, then closes the listener and every connection and
// waits for their goroutines.
func (s *rpcServer) serve(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() {
		s.l.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.conns = nil
		s.mu.Unlock()
	})
	defer stop()
	for {
		c, err := s.l.Accept()
		if err != nil {
			break
		}
		s.mu.Lock()
		if s.conns == nil {
			s.mu.Unlock()
			c.Close()
			break
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serveConn(ctx, c)
	}
	<-ctx.Done()
	s.wg.Wait()
}

func (s *rpcServer) serveConn(ctx context.Context, c net.Conn) {
	defer s.wg.Done()
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	r := bufio.NewReader(c)
	for {
		_ = c.SetReadDeadline(time.Now().Add(rpcIdleTimeout))
		var req rpcRequest
		if err := readFrame(r, &req); err != nil {
			if !errors.Is(err, io.EOF) && ctx.Err() == nil {
				s.log.Debug("rpc connection closed", "op", "rpc", "remote", c.RemoteAddr().String(), "err", err)
			}
			return
		}
		timeout := req.Timeout
		if timeout <= 0 || timeout > defaultRPCTimeout {
			timeout = defaultRPCTimeout
		}
		hctx, cancel := context.WithTimeout(ctx, timeout)
		resp := s.handle(hctx, &req)
		cancel()
		_ = c.SetWriteDeadline(time.Now().Add(timeout))
		if err := writeFrame(c, resp); err != nil {
			return
		}
	}
}

// handleRPC serves one request from another node.
func (n *Node) handleRPC(ctx context.Context, req *rpcRequest) *rpcResponse {
	resp := &rpcResponse{}
	r := n.raft.Load()
	if r == nil {
		resp.Err = encodeError(ErrNotRunning)
		return resp
	}
	if req.Version > rpcVersion {
		resp.Err = encodeError(fmt.Errorf("rpc %s version %d, this node speaks up to %d: %w", req.Op, req.Version, rpcVersion, fsm.ErrNewerVersion))
		return resp
	}
	var err error
	switch req.Op {
	case opInfo:
		addr, _ := r.LeaderWithID()
		resp.Info = &nodeInfo{ID: n.cfg.NodeID, Address: n.net.Addr(), HasState: n.hasState || r.LastIndex() > 0, Leader: string(addr),
			Witness: n.cfg.Witness, LastIndex: r.LastIndex(), Protocol: n.cfg.Protocol}
	case opApply:
		var res fsm.Result
		res, err = n.applyLeader(ctx, r, req.Command)
		if err == nil {
			resp.Result = encodeResult(res)
		}
	case opReadIndex:
		resp.Index, err = n.readIndexLeader(ctx, r)
	case opJoin:
		err = n.joinLeader(r, req.ID, req.Address)
	case opRemovePeer:
		err = n.removeLeader(r, req.ID)
	case opTransferLeadership:
		err = n.transferLeader(r, req.ID)
	default:
		err = fmt.Errorf("unknown rpc %q (from a newer agent?): %w", req.Op, fsm.ErrNewerVersion)
	}
	if err != nil {
		resp.Err = encodeError(err)
		if errors.Is(err, raft.ErrNotLeader) {
			addr, _ := r.LeaderWithID()
			resp.Leader = string(addr)
		}
	}
	return resp
}
