package main

import (
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

func TestParseFailoverOutputDefaultsToTroopAndOrdersRows(t *testing.T) {
	out := []byte(`vm| troop-vm: up 6.1.0-56-amd64
vm| troop-bench: {"bench":"failover","system":"keepalived","kind":"crash","profile":"default (advert_int 1, VRRPv2)","outage_ms":[3400,3500],"requests":10,"failed":2,"slowest_ms":3000}
vm| troop-bench: {"bench":"failover","kind":"crash","profile":"default (300/300/150 ms)","outage_ms":[700,600],"requests":10,"failed":0,"slowest_ms":1000}
vm| troop-bench: {"bench":"failover","system":"troop","kind":"graceful","profile":"fast (100/100/50 ms)","outage_ms":[10],"requests":5,"failed":0,"slowest_ms":200}
`)
	results, kernel := parseFailoverOutput(out)
	if kernel != "6.1.0-56-amd64" || len(results) != 3 {
		t.Fatalf("kernel %q, %d results", kernel, len(results))
	}
	if results[0].System != "troop" || results[0].Kind != "crash" || results[1].Kind != "graceful" || results[2].System != "keepalived" {
		t.Errorf("rows: %+v", results)
	}
	tr, ka := findResult(results, "troop", "crash", "default"), findResult(results, "keepalived", "crash", "default")
	if tr == nil || ka == nil || median(tr.OutageMS) != 600 || median(ka.OutageMS) != 3400 {
		t.Errorf("troop %+v keepalived %+v", tr, ka)
	}
	failed := failedGuestTests([]byte("vm| --- FAIL: TestLVSGracefulStop (89.54s)\nvm|     --- FAIL: TestLVSGracefulStop/fast (48.02s)\n        --- FAIL: TestLVSGracefulStop/fast (48.02s)\n    --- FAIL: TestVM/TestLVSGracefulStop (0.00s)\n"))
	if len(failed) != 1 || failed[0] != "TestLVSGracefulStop/fast" {
		t.Errorf("failed guest tests: %v", failed)
	}
	path := filepath.Join(t.TempDir(), "failover.png")
	if err := failoverChart(path, results); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil || img.Bounds().Dy() < 3*40 {
		t.Fatalf("chart: %v, %v", err, img)
	}
}
