package director

import "net/netip"

// hostRealServer is the real-server helper for this host (the calling thread's network
// namespace): netlink addresses, /proc/sys, lo.
func hostRealServer() RealServer {
	return RealServer{Addresses: NewNetlinkAddresses(nil), SysctlRoot: "/proc/sys", Loopback: "lo"}
}

// RealServerSetup makes this host an LVS-DR real server for vips (RealServer.Setup on lo and
// /proc/sys of the calling thread's network namespace).
func RealServerSetup(vips []netip.Addr, dryRun bool) ([]string, error) {
	return hostRealServer().Setup(vips, dryRun)
}

// RealServerTeardown undoes RealServerSetup for vips (RealServer.Teardown).
func RealServerTeardown(vips []netip.Addr, dryRun, restoreARP bool) ([]string, error) {
	return hostRealServer().Teardown(vips, dryRun, restoreARP)
}
