//go:build !linux

package director

import (
	"errors"
	"net/netip"
)

var errRealServerLinux = errors.New("real-server setup needs Linux (LVS direct routing is Linux's)")

// RealServerSetup makes this host an LVS-DR real server; on Linux only.
func RealServerSetup(vips []netip.Addr, dryRun bool) ([]string, error) {
	return nil, errRealServerLinux
}

// RealServerTeardown undoes RealServerSetup; on Linux only.
func RealServerTeardown(vips []netip.Addr, dryRun, restoreARP bool) ([]string, error) {
	return nil, errRealServerLinux
}
