package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/troop-lb/troop/api"
)

// sdNotify sends state to systemd's notification socket (sd_notify(3)); without NOTIFY_SOCKET
// (not started by systemd with Type=notify) it does nothing.
func sdNotify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // an abstract socket
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// readyPollInterval is how often the agent checks its readiness until it first is ready.
const readyPollInterval = 100 * time.Millisecond

// notifyWhenReady tells systemd READY=1 the first time the agent is ready (the moment
// GET /v1/agent/ready first answers 200), then returns; or returns when ctx ends.
func notifyWhenReady(ctx context.Context, ready func() api.Readiness, notify func(string) error) error {
	tick := time.NewTicker(readyPollInterval)
	defer tick.Stop()
	for {
		if ready().Ready {
			return notify("READY=1\nSTATUS=ready: member of the pool, log applied, IPVS matches the table")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
