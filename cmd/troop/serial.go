package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
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

// watchPeers publishes a "peer" event each time a serial peer's verdict, Raft contact or link
// state changes (the first evaluation included), until ctx ends. links reports them
// (cluster.Node's SerialStatus).
func watchPeers(ctx context.Context, links func() []cluster.SerialStatus, events *api.Events) {
	watchChanges(ctx, peerWatchInterval, "peer", events, func() map[string]string {
		out := map[string]string{}
		for _, st := range links() {
			out[st.Peer] = fmt.Sprintf("%s (raft contact %s, serial link %s)", st.Verdict, st.RaftContact, st.State)
		}
		return out
	})
}

// watchChanges publishes an event of kind "ID: text" each time the text describing an ID
// changes (the first one included), polling describe every interval until ctx ends; Events
// logs each.
func watchChanges(ctx context.Context, interval time.Duration, kind string, events *api.Events, describe func() map[string]string) {
	last := map[string]string{}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		now := describe()
		for _, id := range slices.Sorted(maps.Keys(now)) {
			if text, seen := last[id]; !seen || text != now[id] {
				events.Publish(api.Event{Kind: kind, Message: id + ": " + now[id]})
			}
		}
		last = now
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
