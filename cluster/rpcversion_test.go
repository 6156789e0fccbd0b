package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/troop-lb/troop/fsm"
)

// A request from a newer RPC version, or of an op this build does not know, is refused with
// ErrNewerVersion and carried out not at all.
func TestRPCRefusesNewerVersionsAndUnknownOps(t *testing.T) {
	checkGoroutines(t)
	c := newTestCluster(t, 1, clusterOpts{})
	leader := c.leader(5 * time.Second)
	r := leader.raft.Load()
	cmd, err := fsm.EncodeCommand(upsert(1))
	if err != nil {
		t.Fatal(err)
	}
	before := r.LastIndex()
	for _, req := range []*rpcRequest{
		{Version: rpcVersion + 1, Op: opApply, Command: cmd},
		{Version: rpcVersion, Op: "apply_v2", Command: cmd},
	} {
		resp := leader.handleRPC(context.Background(), req)
		if err := decodeError(resp.Err); !errors.Is(err, fsm.ErrNewerVersion) {
			t.Errorf("%+v: %v, want ErrNewerVersion", req, err)
		}
	}
	if r.LastIndex() != before {
		t.Fatalf("a refused request appended entries: last index %d → %d", before, r.LastIndex())
	}
	// The current version is served.
	if resp := leader.handleRPC(context.Background(), &rpcRequest{Version: rpcVersion, Op: opApply, Command: cmd}); resp.Err != nil {
		t.Fatalf("current version: %v", decodeError(resp.Err))
	}
}
