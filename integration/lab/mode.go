package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// mode is where the pool runs.
type mode int

const (
	modeNetns mode = iota // the host's network namespaces
	modeVM                // namespaces inside a qemu guest with Debian's kernel
)

func (m mode) String() string {
	if m == modeVM {
		return "VM mode"
	}
	return "namespace mode"
}

// host is what decides the mode.
type host struct {
	root bool
	// ipvs is nil when the kernel has IPVS (after `modprobe ip_vs`), else why not.
	ipvs error
}

// errNoIPVS is the kernel lacking IPVS.
var errNoIPVS = errors.New("/proc/net/ip_vs is missing after `modprobe ip_vs`")

// probeHost loads IPVS if it can and reports what it found.
func probeHost() host {
	h := host{root: os.Geteuid() == 0}
	if h.root {
		exec.Command("modprobe", "ip_vs").Run() // built in, absent or loaded: the file tells
	}
	if _, err := os.Stat("/proc/net/ip_vs"); err != nil {
		h.ipvs = errNoIPVS
	}
	return h
}

// chooseMode picks namespace mode when the pool can run on this kernel (root and IPVS) and the
// VM otherwise, and says why. Inside the VM (guest) there is no further VM to fall back on.
func chooseMode(h host, guest bool) (mode, string, error) {
	switch {
	case guest && (!h.root || h.ipvs != nil):
		return 0, "", fmt.Errorf("inside the VM, yet IPVS is unusable (root %v): %v", h.root, h.ipvs)
	case guest:
		return modeNetns, "inside the lab VM", nil
	case !h.root:
		return modeVM, "not root: network namespaces need root, so the pool runs as root inside a VM", nil
	case h.ipvs != nil:
		return modeVM, "this kernel has no IPVS (" + h.ipvs.Error() + "); Debian's kernel under qemu has it", nil
	}
	return modeNetns, "root, and this kernel has IPVS", nil
}

// ensureIpvsadm installs ipvsadm when it is missing: the walkthrough reads the kernel's table
// with it, as an operator would.
func ensureIpvsadm(ctx context.Context, out io.Writer) error {
	if _, err := exec.LookPath("ipvsadm"); err == nil {
		return nil
	}
	fmt.Fprintln(out, "installing ipvsadm (apt-get install ipvsadm): the lab shows the kernel's table with it")
	for _, args := range [][]string{
		{"apt-get", "update", "-qq"},
		{"apt-get", "install", "-y", "-qq", "--no-install-recommends", "ipvsadm"},
	} {
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(b)))
		}
	}
	return nil
}
