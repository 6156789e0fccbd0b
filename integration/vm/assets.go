// Package vm boots Debian's stock kernel under qemu (TCG, no network device) with an initramfs
// holding busybox, iproute2, ipvsadm, the kernel's IPVS modules and the project's static binaries,
// runs one job in it and hands back what the serial console printed. It is the VM tier's
// harness: the host kernel here has no IPVS, Debian's kernel has it as modules.
package vm

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Assets are the host files a guest is built from.
type Assets struct {
	KernelVersion string
	Kernel        string   // the vmlinuz image
	Modules       []string // .ko files in load order
	Busybox       string   // a static busybox
	// Programs maps guest paths to host files: iproute2's ip, ipvsadm and the shared libraries
	// they need, at the same paths as on the host.
	Programs map[string]string
}

// guestModules are the modules the scenarios need that Debian builds as modules: IPVS with
// every scheduler, veth and bridge for the topology, ipip for LVS-TUN, nf_tables for the
// directors' takeover guard.
var guestModules = []string{
	"crc32c_generic", // libcrc32c's dependency crc32c-intel may not load under TCG
	"ip_vs_rr", "ip_vs_wrr", "ip_vs_lc", "ip_vs_wlc", "ip_vs_lblc", "ip_vs_lblcr", "ip_vs_dh",
	"ip_vs_sh", "ip_vs_sed", "ip_vs_nq", "ip_vs_fo", "ip_vs_ovf", "ip_vs_mh",
	"veth", "bridge", "ipip", "nf_tables",
}

// skippedModules are dependencies left out on purpose (crc32c_generic stands in).
var skippedModules = map[string]bool{"crc32c-intel": true, "crc32c_intel": true}

// Prepare installs what the harness needs on the host when it is missing (qemu, iproute2,
// ipvsadm, kmod; needs root), downloads Debian's current kernel image and busybox-static into
// cacheDir unless they are there already, and returns the assets. It says what it does on log.
func Prepare(ctx context.Context, cacheDir string, log io.Writer) (*Assets, error) {
	for _, need := range []struct{ cmd, pkg string }{
		{"qemu-system-x86_64", "qemu-system-x86"}, {"ip", "iproute2"}, {"ipvsadm", "ipvsadm"},
		{"depmod", "kmod"}, {"dpkg-deb", "dpkg"},
	} {
		if err := ensureCommand(ctx, need.cmd, need.pkg, log); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("vm cache: %w", err)
	}
	image, err := kernelPackage(ctx, log)
	if err != nil {
		return nil, err
	}
	version := strings.TrimPrefix(image, "linux-image-")
	a := &Assets{KernelVersion: version, Programs: map[string]string{}}

	kernelRoot := filepath.Join(cacheDir, image)
	if err := unpackOnce(ctx, cacheDir, image, kernelRoot, log); err != nil {
		return nil, err
	}
	a.Kernel = filepath.Join(kernelRoot, "boot", "vmlinuz-"+version)
	if a.Modules, err = moduleOrder(ctx, kernelRoot, version); err != nil {
		return nil, err
	}

	busyboxRoot := filepath.Join(cacheDir, "busybox-static")
	if err := unpackOnce(ctx, cacheDir, "busybox-static", busyboxRoot, log); err != nil {
		return nil, err
	}
	a.Busybox = filepath.Join(busyboxRoot, "bin", "busybox")

	for _, prog := range []string{"ip", "ipvsadm"} {
		if err := a.addProgram(ctx, prog); err != nil {
			return nil, err
		}
	}
	// keepalived, for the side-by-side failover benchmark: Debian's package, not the host's.
	if err := a.addPackageProgram(ctx, cacheDir, "keepalived", "/usr/sbin/keepalived", log); err != nil {
		return nil, err
	}
	return a, nil
}

// addPackageProgram downloads and unpacks Debian's pkg into cacheDir and adds its program bin
// (a guest path, the same inside the package) with the shared libraries it needs: the host's
// where the host has them, else from the library packages pkg depends on (recursively), which
// are downloaded and unpacked beside it and keep their paths in the guest.
func (a *Assets) addPackageProgram(ctx context.Context, cacheDir, pkg, bin string, log io.Writer) error {
	root := filepath.Join(cacheDir, pkg)
	if err := unpackOnce(ctx, cacheDir, pkg, root, log); err != nil {
		return err
	}
	prog := filepath.Join(root, bin)
	libs, missing, err := lddWith(ctx, prog, nil)
	if err != nil {
		return err
	}
	onHost := map[string]bool{}
	for _, lib := range libs {
		onHost[filepath.Base(lib)] = true
		a.Programs[lib] = lib
	}
	var roots []string
	if len(missing) > 0 {
		deps, err := missingLibraryPackages(ctx, pkg)
		if err != nil {
			return err
		}
		for _, dep := range deps {
			depRoot := filepath.Join(cacheDir, dep)
			if err := unpackOnce(ctx, cacheDir, dep, depRoot, log); err != nil {
				return err
			}
			roots = append(roots, depRoot)
		}
		var dirs []string
		for _, r := range roots {
			for _, d := range []string{"lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib", "usr/lib"} {
				dirs = append(dirs, filepath.Join(r, d))
			}
		}
		if libs, missing, err = lddWith(ctx, prog, []string{"LD_LIBRARY_PATH=" + strings.Join(dirs, ":")}); err != nil {
			return err
		}
		if len(missing) > 0 {
			return fmt.Errorf("%s: no package among %v provides %v", bin, deps, missing)
		}
	}
	a.Programs[bin] = prog
	for _, lib := range libs {
		guest := lib
		for _, r := range roots {
			if rest, ok := strings.CutPrefix(lib, r+"/"); ok {
				guest = "/" + rest
			}
		}
		if guest != lib && onHost[filepath.Base(lib)] {
			continue // the host's own copy (from the first pass) wins over an alternative's
		}
		a.Programs[guest] = lib
	}
	return nil
}

// lddWith lists the absolute paths ldd resolves for prog (libraries and the loader) and the
// sonames it finds nowhere.
func lddWith(ctx context.Context, prog string, env []string) (libs, missing []string, err error) {
	cmd := exec.CommandContext(ctx, "ldd", prog)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		return nil, nil, fmt.Errorf("ldd %s: %w", prog, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if strings.Contains(line, "not found") && len(f) > 0 {
			missing = append(missing, f[0])
			continue
		}
		for _, w := range f {
			if strings.HasPrefix(w, "/") {
				libs = append(libs, w)
			}
		}
	}
	return libs, missing, nil
}

// missingLibraryPackages lists the library packages (lib*) pkg depends on, recursively, that
// the host has not installed.
func missingLibraryPackages(ctx context.Context, pkg string) ([]string, error) {
	var out bytes.Buffer
	if err := run(ctx, "", &out, "apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
		"--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", pkg); err != nil {
		return nil, err
	}
	var missing []string
	for _, line := range strings.Split(out.String(), "\n") {
		name := strings.TrimSpace(line)
		if !strings.HasPrefix(name, "lib") || strings.ContainsAny(name, " :<>") || slices.Contains(missing, name) {
			continue // a dependency line ("Depends: x"), a virtual package, or seen
		}
		st, _ := exec.CommandContext(ctx, "dpkg-query", "-W", "-f", "${Status}", name).Output()
		if !strings.Contains(string(st), "install ok installed") {
			missing = append(missing, name)
		}
	}
	return missing, nil
}

// ensureCommand installs pkg with apt-get when cmd is not on PATH.
func ensureCommand(ctx context.Context, cmd, pkg string, log io.Writer) error {
	if _, err := exec.LookPath(cmd); err == nil {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%s is missing: install Debian's %s (as root: apt-get install %s)", cmd, pkg, pkg)
	}
	fmt.Fprintf(log, "vm: installing %s (for %s)\n", pkg, cmd)
	install := func() error {
		return run(ctx, "", nil, "apt-get", "install", "-y", "-qq", "--no-install-recommends", pkg)
	}
	if install() != nil {
		if err := aptUpdate(ctx, log); err != nil {
			return err
		}
		if err := install(); err != nil {
			return fmt.Errorf("install %s: %w", pkg, err)
		}
	}
	return nil
}

func aptUpdate(ctx context.Context, log io.Writer) error {
	fmt.Fprintln(log, "vm: apt-get update")
	if err := run(ctx, "", nil, "apt-get", "update", "-qq"); err != nil {
		return fmt.Errorf("apt-get update: %w", err)
	}
	return nil
}

// kernelPackage names the image package Debian's linux-image-amd64 currently points at.
func kernelPackage(ctx context.Context, log io.Writer) (string, error) {
	re := regexp.MustCompile(`Depends: (linux-image-[0-9][^\s]*-amd64)`)
	for attempt := 0; attempt < 2; attempt++ {
		var out bytes.Buffer
		if err := run(ctx, "", &out, "apt-cache", "depends", "linux-image-amd64"); err == nil {
			if m := re.FindStringSubmatch(out.String()); m != nil {
				return m[1], nil
			}
		}
		if attempt == 0 {
			if err := aptUpdate(ctx, log); err != nil {
				return "", err
			}
		}
	}
	return "", fmt.Errorf("apt-cache depends linux-image-amd64 names no kernel image package")
}

// unpackOnce downloads pkg's .deb into cacheDir (unless one is there) and unpacks it into root
// (unless that was done before).
func unpackOnce(ctx context.Context, cacheDir, pkg, root string, log io.Writer) error {
	done := filepath.Join(root, ".unpacked")
	if _, err := os.Stat(done); err == nil {
		return nil
	}
	debs, _ := filepath.Glob(filepath.Join(cacheDir, pkg+"_*.deb"))
	if len(debs) == 0 {
		fmt.Fprintf(log, "vm: downloading %s into %s\n", pkg, cacheDir)
		if err := run(ctx, cacheDir, nil, "apt-get", "download", "-qq", pkg); err != nil {
			if err := aptUpdate(ctx, log); err != nil {
				return err
			}
			if err := run(ctx, cacheDir, nil, "apt-get", "download", "-qq", pkg); err != nil {
				return fmt.Errorf("download %s: %w", pkg, err)
			}
		}
		if debs, _ = filepath.Glob(filepath.Join(cacheDir, pkg+"_*.deb")); len(debs) == 0 {
			return fmt.Errorf("download %s: no .deb in %s", pkg, cacheDir)
		}
	}
	if err := os.RemoveAll(root); err != nil {
		return err
	}
	if err := run(ctx, "", nil, "dpkg-deb", "-x", debs[len(debs)-1], root); err != nil {
		return fmt.Errorf("unpack %s: %w", debs[len(debs)-1], err)
	}
	return os.WriteFile(done, nil, 0o644)
}

// moduleOrder lists the .ko files of guestModules and their dependencies, each once, in an
// order insmod accepts.
func moduleOrder(ctx context.Context, root, version string) ([]string, error) {
	if err := run(ctx, "", nil, "depmod", "-b", root, version); err != nil {
		return nil, fmt.Errorf("depmod: %w", err)
	}
	var order []string
	for _, m := range guestModules {
		var out bytes.Buffer
		if err := run(ctx, "", &out, "modprobe", "-d", root, "-S", version, "--show-depends", m); err != nil {
			return nil, fmt.Errorf("kernel %s has no module %s: %w", version, m, err)
		}
		sc := bufio.NewScanner(&out)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 2 || f[0] != "insmod" {
				continue // "builtin NAME": nothing to load
			}
			name := strings.TrimSuffix(filepath.Base(f[1]), ".ko")
			if !skippedModules[name] && !slices.Contains(order, f[1]) {
				order = append(order, f[1])
			}
		}
	}
	return order, nil
}

// addProgram adds the host's prog and the shared libraries ldd names for it.
func (a *Assets) addProgram(ctx context.Context, prog string) error {
	path, err := exec.LookPath(prog)
	if err != nil {
		return err
	}
	path, err = filepath.EvalSymlinks(path)
	if err != nil {
		return err
	}
	a.Programs["/usr/sbin/"+prog] = path
	var out bytes.Buffer
	if err := run(ctx, "", &out, "ldd", path); err != nil {
		return fmt.Errorf("ldd %s: %w", path, err)
	}
	for _, line := range strings.Split(out.String(), "\n") {
		for _, f := range strings.Fields(line) {
			if strings.HasPrefix(f, "/") {
				a.Programs[f] = f // libraries and the loader keep their paths
			}
		}
	}
	return nil
}

// run runs a command; its output goes to out (or is kept for the error).
func run(ctx context.Context, dir string, out io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	var errBuf bytes.Buffer
	cmd.Stderr = &errBuf
	if out != nil {
		cmd.Stdout = out
	} else {
		cmd.Stdout = &errBuf
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errBuf.String()))
	}
	return nil
}

// GoStatic runs `go args...` (a build, or `test -c`) with cgo off, so that what it builds runs in
// the guest, which has no C library.
func GoStatic(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}
