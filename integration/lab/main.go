// Command lab is `make lab`: it builds a throwaway Troop pool with real IPVS and walks through
// the seed's two scenarios live, then prints a short report and removes the pool.
//
// The pool is integration/lvs's: a bridge, three directors running `troop agent`, real servers
// r1 and r2 and a sorry server prepared with `troop realserver setup`, and a client, each in a
// network namespace. On a host whose kernel has IPVS (as root) the namespaces are the host's;
// otherwise lab boots Debian's kernel under qemu (integration/vm) and runs itself inside it with
// -guest, streaming the guest's console.
//
// Usage: go run ./integration/lab -troop bin/troop [-keep]
//
//	go run ./integration/lab -down tpNNNN   # remove a pool left running by -keep
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
)

func main() {
	troop := flag.String("troop", "", "the troop `binary`, built with CGO_ENABLED=0 (empty: build ./cmd/troop)")
	keep := flag.Bool("keep", false, "leave the pool running afterwards (namespace mode only)")
	guest := flag.Bool("guest", false, "run the walkthrough here, inside the lab's VM (the VM mode passes it)")
	cache := flag.String("vm-cache", defaultCache(), "`dir` for the VM's kernel and busybox packages")
	down := flag.String("down", "", "remove the pool `prefix` (tpNNNN) that -keep left running, and exit")
	serve := flag.String("serve", "", "serve `node`'s test page on port 80 (a kept pool's real servers)")
	flag.Parse()
	if *serve != "" {
		exit(serveForever(*serve))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *down != "" {
		exit(removePool(ctx, *down, os.Stdout))
	}
	exit(run(ctx, *troop, *keep, *guest, *cache))
}

func exit(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// defaultCache is where vm.Prepare keeps Debian's packages: the VM tier's cache as root.
func defaultCache() string {
	if os.Geteuid() == 0 {
		return "/var/cache/troop-vm"
	}
	return filepath.Join(os.TempDir(), "troop-vm-cache")
}

func run(ctx context.Context, troop string, keep, guest bool, cache string) error {
	if troop != "" {
		abs, err := filepath.Abs(troop)
		if err != nil {
			return err
		}
		troop = abs
	}
	m, why, err := chooseMode(probeHost(), guest)
	if err != nil {
		return err
	}
	fmt.Printf("make lab: %s (%s)\n", m, why)
	if m == modeVM {
		return runVM(ctx, troop, keep, cache, os.Stdout)
	}
	if err := ensureIpvsadm(ctx, os.Stdout); err != nil {
		return err
	}
	if troop == "" {
		dir, err := os.MkdirTemp("", "troop-lab-build-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if troop, err = buildStatic(ctx, dir, "troop", troopPkg); err != nil {
			return err
		}
	}
	where := "host network namespaces"
	if guest {
		where = "network namespaces inside the VM (qemu TCG)"
	}
	return walkthrough(ctx, walkConfig{troop: troop, keep: keep && !guest, where: where}, os.Stdout)
}
