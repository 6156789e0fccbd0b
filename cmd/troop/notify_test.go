package main

import (
	"context"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/troop-lb/troop/api"
)

func TestSdNotify(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if err := sdNotify("READY=1"); err != nil {
		t.Fatalf("without systemd: %v", err)
	}
	sock := filepath.Join(t.TempDir(), "notify")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Setenv("NOTIFY_SOCKET", sock)

	var ready atomic.Bool
	done := make(chan error, 1)
	go func() {
		done <- notifyWhenReady(context.Background(), func() api.Readiness { return api.Readiness{Ready: ready.Load()} }, sdNotify)
	}()
	time.Sleep(3 * readyPollInterval)
	l.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	buf := make([]byte, 256)
	if n, err := l.Read(buf); err == nil {
		t.Fatalf("notified %q before ready", buf[:n])
	}
	ready.Store(true)
	l.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := l.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(buf[:n]); got[:8] != "READY=1\n" {
		t.Errorf("notified %q", got)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
