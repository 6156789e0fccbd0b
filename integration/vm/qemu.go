package vm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Job is what one boot runs: Script is a shell script run by /init once the modules are loaded,
// and Files are extra guest paths mapped to host files (the project's binaries).
type Job struct {
	Script string
	Files  map[string]string
	// Env is set for the script (KEY=value).
	Env []string
	// Memory in MiB and CPUs of the guest; 0 picks 2048 and 2.
	Memory, CPUs int
}

// Guest markers on the console: the script's start and its exit status.
const (
	markerUp   = "troop-vm: up"
	markerExit = "troop-vm: exit "
)

// initScript is the guest's /init: a root file system in RAM with /proc, /sys, /dev, /run and a
// writable /tmp, busybox's applets, the modules in order, then the job; it powers off after.
// Debian's busybox shell runs its own applets before PATH: scripts call iproute2 as /usr/sbin/ip.
const initScript = `#!/bin/sh
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /var /dev/pts /dev/shm
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
ln -s /run /var/run
while read -r m; do insmod "$m" || echo "troop-vm: insmod $m failed"; done < /etc/troop-vm/modules
/usr/sbin/ip link set lo up
echo "` + markerUp + ` $(uname -r)"
cd /tmp
set -a; . /etc/troop-vm/env; set +a
sh /etc/troop-vm/job
echo "` + markerExit + `$?"
poweroff -f
`

// Image assembles the guest's initramfs for job.
func (a *Assets) Image(job Job) (*Image, error) {
	im := NewImage()
	if err := im.AddFile("/bin/busybox", a.Busybox); err != nil {
		return nil, err
	}
	im.AddSymlink("/bin/sh", "busybox")
	for _, d := range []string{"/proc", "/sys", "/dev", "/tmp", "/run"} {
		im.AddDir(d)
	}
	im.AddData("/init", []byte(initScript), 0o755)
	var order strings.Builder
	for i, m := range a.Modules {
		dst := fmt.Sprintf("/lib/troop-vm/%03d-%s", i, filepath.Base(m))
		if err := im.AddFile(dst, m); err != nil {
			return nil, err
		}
		fmt.Fprintln(&order, dst)
	}
	im.AddData("/etc/troop-vm/modules", []byte(order.String()), 0o644)
	for dst, src := range a.Programs {
		if err := im.AddFile(dst, src); err != nil {
			return nil, err
		}
	}
	for dst, src := range job.Files {
		if err := im.AddFile(dst, src); err != nil {
			return nil, err
		}
	}
	var env strings.Builder
	for _, kv := range job.Env {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&env, "%s=%s\n", k, strconv.Quote(v))
	}
	im.AddData("/etc/troop-vm/env", []byte(env.String()), 0o644)
	im.AddData("/etc/troop-vm/job", []byte(job.Script), 0o755)
	// Go's resolver and os/user look here; an empty pair keeps them quiet.
	im.AddData("/etc/hosts", []byte("127.0.0.1 localhost\n::1 localhost\n"), 0o644)
	im.AddData("/etc/passwd", []byte("root:x:0:0:root:/tmp:/bin/sh\n"), 0o644)
	return im, nil
}

// ErrNoExit means the guest stopped (or was stopped) before its job reported an exit status.
var ErrNoExit = errors.New("vm: the guest ended without reporting the job's exit status")

// Run boots the kernel with job under qemu's TCG, without any network device, copying the
// serial console to console. It returns the job's exit status; ctx bounds the whole boot.
func (a *Assets) Run(ctx context.Context, job Job, workDir string, console io.Writer) (int, error) {
	im, err := a.Image(job)
	if err != nil {
		return -1, err
	}
	initrd := filepath.Join(workDir, "initrd.gz")
	f, err := os.Create(initrd)
	if err != nil {
		return -1, err
	}
	err = im.Write(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return -1, err
	}
	mem, cpus := job.Memory, job.CPUs
	if mem == 0 {
		mem = 2048
	}
	if cpus == 0 {
		cpus = 2
	}
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-accel", "tcg", "-cpu", "max", "-smp", strconv.Itoa(cpus), "-m", strconv.Itoa(mem),
		"-nic", "none", "-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot",
		"-kernel", a.Kernel, "-initrd", initrd,
		"-append", "console=ttyS0 loglevel=3 panic=-1 rdinit=/init")
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		return -1, err
	}
	cmd.Stderr = console
	if err := cmd.Start(); err != nil {
		return -1, fmt.Errorf("start qemu: %w", err)
	}
	exit := -1
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		fmt.Fprintln(console, line)
		if rest, ok := strings.CutPrefix(line, markerExit); ok {
			if n, err := strconv.Atoi(strings.TrimSpace(rest)); err == nil {
				exit = n
			}
		}
	}
	werr := cmd.Wait()
	if ctx.Err() != nil {
		return -1, fmt.Errorf("vm: %w", ctx.Err())
	}
	if exit < 0 {
		if werr != nil {
			return -1, fmt.Errorf("%w (qemu: %v)", ErrNoExit, werr)
		}
		return -1, ErrNoExit
	}
	return exit, nil
}
