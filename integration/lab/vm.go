package main

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/troop-lb/troop/integration/vm"
)

const (
	troopPkg = "github.com/troop-lb/troop/cmd/troop"
	labPkg   = "github.com/troop-lb/troop/integration/lab"
)

// runVM boots Debian's kernel under qemu with this program and troop, runs the walkthrough in
// the guest and streams its console to out.
func runVM(ctx context.Context, troop string, keep bool, cache string, out io.Writer) error {
	if keep {
		fmt.Fprintln(out, "KEEP=1 is not available in VM mode: the pool lives inside a qemu guest that has no network "+
			"device (nothing outside could reach it) and powers off when the walkthrough ends. "+
			"On a host whose kernel has IPVS, as root, KEEP=1 leaves the pool running. Going on without it.")
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	work, err := os.MkdirTemp("", "troop-lab-vm-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	self, err := staticSelf(ctx, work)
	if err != nil {
		return err
	}
	if troop == "" {
		if troop, err = buildStatic(ctx, work, "troop", troopPkg); err != nil {
			return err
		}
	} else if err := checkStatic(troop); err != nil {
		return err
	}
	start := time.Now()
	assets, err := vm.Prepare(ctx, cache, out)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "booting Debian's kernel %s under qemu (TCG: emulated CPU, slower than the host) with the lab inside\n\n",
		assets.KernelVersion)
	job := vm.Job{
		Script: "exec /bin/troop-lab -guest -troop /bin/troop\n",
		Files:  map[string]string{"/bin/troop-lab": self, "/bin/troop": troop},
	}
	console := &consoleFilter{w: out}
	exit, err := assets.Run(ctx, job, work, console)
	console.Flush()
	if errors.Is(err, context.Canceled) {
		return errors.New("interrupted: qemu was stopped, and the pool with it")
	}
	if err != nil {
		return err
	}
	if exit != 0 {
		return fmt.Errorf("the walkthrough failed inside the VM (exit %d); its output is above", exit)
	}
	fmt.Fprintf(out, "\nmake lab: the VM ran the walkthrough and powered off; %s in all\n", time.Since(start).Round(time.Second))
	return nil
}

// staticSelf returns this program as a static binary the guest can run: the running executable
// if it is one (`CGO_ENABLED=0 go run`, as `make lab` does), else a fresh static build.
func staticSelf(ctx context.Context, dir string) (string, error) {
	self, err := os.Executable()
	if err == nil && checkStatic(self) == nil {
		return self, nil
	}
	return buildStatic(ctx, dir, "troop-lab", labPkg)
}

// buildStatic builds pkg for the guest into dir/name.
func buildStatic(ctx context.Context, dir, name, pkg string) (string, error) {
	bin := filepath.Join(dir, name)
	return bin, vm.GoStatic(ctx, "build", "-o", bin, pkg)
}

// checkStatic fails unless path is an ELF executable without a program interpreter, so one that
// runs in the guest's initramfs (busybox, no C library).
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked: the VM has no C library; build it with CGO_ENABLED=0 (`make build` does)", path)
		}
	}
	return nil
}

// consoleFilter passes the guest's console through, line by line, minus the harness's marker
// lines ("troop-vm: up VERSION" becomes a note that the guest booted; the exit status is
// reported by runVM).
type consoleFilter struct {
	w    io.Writer
	part []byte
}

func (c *consoleFilter) Write(b []byte) (int, error) {
	c.part = append(c.part, b...)
	for {
		i := bytes.IndexByte(c.part, '\n')
		if i < 0 {
			return len(b), nil
		}
		line := string(c.part[:i])
		c.part = c.part[i+1:]
		if err := c.line(line); err != nil {
			return len(b), err
		}
	}
}

// Flush writes a last line that has no newline.
func (c *consoleFilter) Flush() {
	if len(c.part) > 0 {
		c.line(string(c.part))
		c.part = nil
	}
}

func (c *consoleFilter) line(line string) error {
	switch {
	case strings.HasPrefix(line, "troop-vm: exit "):
		return nil
	case strings.HasPrefix(line, "troop-vm: up "):
		line = "vm: guest up, kernel " + strings.TrimPrefix(line, "troop-vm: up ")
	}
	_, err := fmt.Fprintln(c.w, line)
	return err
}
