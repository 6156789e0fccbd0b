# Troop's build. `make test` and `make lab` set up what they need on a fresh Debian machine.
SHELL    := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
BIN      := bin/troop
# Inputs each fuzz target tries during `make test`, roughly 10 s each here. A count, not a
# duration: Go's coordinator can fail a duration run with a bare "context deadline exceeded" when a
# starved worker misses the deadline (seen in CI); a count has no deadline to race. FUZZTIME=30s
# still works for a longer local run.
FUZZTIME ?=
FUZZ_DECODE ?= $(or $(FUZZTIME),60000x)
FUZZ_TABLE  ?= $(or $(FUZZTIME),20000x)
FUZZ_AGENT  ?= $(or $(FUZZTIME),60000x)
# The API's request decoders (api/fuzz_test.go), about 5 s each here; the snapshot decoder is the
# slowest per input.
FUZZ_API      ?= $(or $(FUZZTIME),30000x)
FUZZ_SNAPSHOT ?= $(or $(FUZZTIME),20000x)
API_FUZZ      := FuzzDecodeService FuzzDecodeReal FuzzDecodeWeight FuzzDecodeAdmin FuzzDecodeHostAdmin FuzzParseRealID FuzzDecodeTransfer FuzzDecodeTable

.PHONY: all build test unit fuzz integration lint bench lab deps clean

all: build

deps:
	@command -v $(GO) >/dev/null || { echo "Go is missing: install Go 1.26 at /usr/local/go"; exit 1; }
	@# The namespace tier drives iproute2's ip and nftables' nft (partitions on the test's own
	@# bridge); a fresh Debian machine may lack them.
	@if [ "$$(id -u)" = 0 ] && { ! command -v ip >/dev/null || ! command -v nft >/dev/null; }; then \
		echo "installing iproute2 and nftables for the namespace tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iproute2 nftables; fi
	@# The web console's browser test (integration/console_test.go) drives Debian's Chromium.
	@if [ "$$(id -u)" = 0 ] && ! command -v chromium >/dev/null; then \
		echo "installing chromium for the web console's browser test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; fi
	$(GO) mod download

build: deps
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/troop

lint: deps
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# The unit tier (no root), the loopback pool test and, as root, the namespace tier (tests that
# create network namespaces skip themselves without root, saying so) and the VM tier.
test: lint build unit fuzz
	@if [ "$$(id -u)" != 0 ]; then echo "make test: not root: the namespace tier (director and integration namespace tests) and the VM tier (make integration) were skipped; run as root for them"; \
	else $(MAKE) --no-print-directory integration; fi

unit: deps
	TROOP_BIN=$(CURDIR)/$(BIN) $(GO) test -race -count=1 -timeout 15m ./...

fuzz: deps
	$(GO) test ./fsm -run '^$$' -fuzz '^FuzzDecodeCommand$$' -fuzztime $(FUZZ_DECODE)
	$(GO) test ./cmd/troop/internal/config -run '^$$' -fuzz '^FuzzParseTable$$' -fuzztime $(FUZZ_TABLE)
	$(GO) test ./cmd/troop/internal/config -run '^$$' -fuzz '^FuzzParseAgent$$' -fuzztime $(FUZZ_AGENT)
	@for t in $(API_FUZZ); do echo "fuzz ./api $$t"; $(GO) test ./api -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZ_API) || exit 1; done
	$(GO) test ./api -run '^$$' -fuzz '^FuzzDecodeSnapshot$$' -fuzztime $(FUZZ_SNAPSHOT)

# The VM tier: Debian's stock kernel under qemu (TCG, no network device) with real IPVS runs the
# TestLVS* scenarios (integration/lvs_test.go). The first run installs qemu-system-x86, ipvsadm and
# kmod and downloads the kernel package and busybox-static into /var/cache/troop-vm.
integration: build
	TROOP_VM=1 TROOP_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 20m -run '^TestVM$$' -v ./integration

# Rewrites docs/benchmarks.md with this machine's numbers.
bench: build
	TROOP_BIN=$(CURDIR)/$(BIN) $(GO) run ./integration/bench -out docs/benchmarks.md

# A throwaway pool with real IPVS (integration/lab): three directors, two real servers and a sorry
# server in network namespaces (on the host when its kernel has IPVS and you are root, else in a
# qemu VM with Debian's kernel). It applies the seed's table, shows `ipvsadm -Ln` and requests
# alternating, stops a real server, kills the leader and measures the outage, prints a report and
# removes it all. KEEP=1 (namespace mode only) leaves the pool running and says how to reach it.
# cgo off: the VM mode runs this very build inside the guest.
lab: build
	CGO_ENABLED=0 $(GO) run ./integration/lab -troop $(BIN) $(if $(filter 1 yes true,$(KEEP)),-keep)

clean:
	rm -rf bin
