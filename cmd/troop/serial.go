package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/troop-lb/troop/api"
	"github.com/troop-lb/troop/cluster"
	"github.com/troop-lb/troop/cmd/troop/internal/config"
)

// serialConfigs turns the agent file's serial blocks into cluster's, reading key files.
func serialConfigs(links []config.Serial) ([]cluster.SerialConfig, error) {
	var out []cluster.SerialConfig
	for _, s := range links {
		key := []byte(s.Key)
		if s.KeyFile != "" {
			b, err := os.ReadFile(s.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("serial %q key_file: %w", s.Peer, err)
			}
			if key = bytes.TrimRight(b, "\r\n"); len(key) < config.MinSerialKey {
				return nil, fmt.Errorf("serial %q key_file %s: the key must be at least %d bytes", s.Peer, s.KeyFile, config.MinSerialKey)
			}
		}
		out = append(out, cluster.SerialConfig{
			Device: s.Device, Baud: s.Baud, Peer: s.Peer,
			Keepalive: s.Keepalive, Deadtime: s.Deadtime, Key: key,
		})
	}
	return out, nil
}

// peerWatchInterval is how often the agent re-evaluates its serial peers' verdicts for events.
const peerWatchInterval = 100 * time.Millisecond

// watchPeers publishes a "peer" event each time a serial peer's verdict or link state changes
// (the first evaluation included), until ctx ends; Events logs each. links reports them
// (cluster.Node's SerialStatus).
func watchPeers(ctx context.Context, links func() []cluster.SerialStatus, events *api.Events) {
	last := map[string]cluster.SerialStatus{}
	tick := time.NewTicker(peerWatchInterval)
	defer tick.Stop()
	for {
		for _, st := range links() {
			prev, seen := last[st.Peer]
			if seen && prev.Verdict == st.Verdict && prev.State == st.State {
				continue
			}
			last[st.Peer] = st
			msg := fmt.Sprintf("%s: %s (raft contact %s, serial link %s)", st.Peer, st.Verdict, st.RaftContact, st.State)
			events.Publish(api.Event{Kind: "peer", Message: msg})
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// writeSerial lists the serial heartbeat links in `troop status`.
func writeSerial(w io.Writer, links []cluster.SerialStatus, now time.Time) {
	if len(links) == 0 {
		return
	}
	fmt.Fprintln(w, "\nSerial heartbeat:")
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  Peer\tVerdict\tRaft\tLink\tDevice\tLast frame\tPeer term/leader\tSent\tReceived\tDropped (corrupt/bad MAC/replayed/foreign)")
	for _, s := range links {
		lastFrame := "never"
		if !s.LastFrame.IsZero() {
			lastFrame = now.Sub(s.LastFrame).Round(time.Millisecond).String() + " ago"
		}
		peerView := "-"
		if s.PeerTerm != 0 || s.PeerLeader != "" {
			peerView = strconv.FormatUint(s.PeerTerm, 10) + "/" + orDefault(s.PeerLeader, "(none)")
		}
		line := fmt.Sprintf("  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d/%d/%d/%d", s.Peer, s.Verdict, s.RaftContact, s.State, s.Device,
			lastFrame, peerView, s.Sent, s.Received, s.Corrupt, s.BadMAC, s.Replayed, s.Foreign)
		if s.Error != "" {
			line += "\t! " + s.Error
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
}
