package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestChooseMode(t *testing.T) {
	noIPVS := errors.New("no /proc/net/ip_vs")
	for _, c := range []struct {
		name    string
		h       host
		guest   bool
		want    mode
		wantErr bool
	}{
		{"root with IPVS runs on the host", host{root: true}, false, modeNetns, false},
		{"root without IPVS boots the VM", host{root: true, ipvs: noIPVS}, false, modeVM, false},
		{"not root boots the VM even with IPVS", host{root: false}, false, modeVM, false},
		{"not root, no IPVS boots the VM", host{ipvs: noIPVS}, false, modeVM, false},
		{"the guest runs the pool itself", host{root: true}, true, modeNetns, false},
		// A guest that found no IPVS must not try to boot a VM of its own.
		{"a guest without IPVS fails", host{root: true, ipvs: noIPVS}, true, 0, true},
		{"a guest without root fails", host{}, true, 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, why, err := chooseMode(c.h, c.guest)
			if (err != nil) != c.wantErr {
				t.Fatalf("chooseMode(%+v, guest %v) error %v, want error %v", c.h, c.guest, err, c.wantErr)
			}
			if err == nil && (m != c.want || why == "") {
				t.Errorf("chooseMode(%+v, guest %v) = %v (%q), want %v with a reason", c.h, c.guest, m, why, c.want)
			}
		})
	}
}

func TestConsoleFilter(t *testing.T) {
	var b strings.Builder
	c := &consoleFilter{w: &b}
	// Writes arrive in pieces that do not follow lines.
	for _, piece := range []string{"troop-vm: up 6.1", ".0-48-amd64\n[  0.0s] == Start", "ing\ntroop-vm: exit 0\n", "tail"} {
		fmt.Fprint(c, piece)
	}
	c.Flush()
	want := "vm: guest up, kernel 6.1.0-48-amd64\n[  0.0s] == Starting\ntail\n"
	if b.String() != want {
		t.Errorf("console:\n%q\nwant\n%q", b.String(), want)
	}
}

func TestIndent(t *testing.T) {
	var b strings.Builder
	in := &indent{w: &b, prefix: "   | "}
	fmt.Fprint(in, "TCP  192.0.2.100:80 rr\n\n  -> 192.0")
	fmt.Fprint(in, ".2.21:80\n")
	want := "   | TCP  192.0.2.100:80 rr\n   |\n   |   -> 192.0.2.21:80\n"
	if b.String() != want {
		t.Errorf("indented:\n%q\nwant\n%q", b.String(), want)
	}
}

func TestAlternates(t *testing.T) {
	for _, c := range []struct {
		got  []string
		want bool
	}{
		{[]string{"r2", "r1", "r2", "r1"}, true},
		{[]string{"r1", "r2"}, true},
		{[]string{"r1", "r1", "r2"}, false},
		{[]string{"r1", "✗", "r1"}, false},
		{[]string{"r1"}, false},
		{[]string{"r2", "r2"}, false},
	} {
		if got := alternates(c.got, "r1", "r2"); got != c.want {
			t.Errorf("alternates(%v) = %v, want %v", c.got, got, c.want)
		}
	}
}
