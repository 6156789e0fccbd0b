package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troop-lb/troop/api"
	"github.com/troop-lb/troop/cmd/troop/internal/config"
)

func runTroop(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestKeygen(t *testing.T) {
	seen := map[string]bool{}
	for range 2 {
		code, out, errOut := runTroop(t, nil, "keygen")
		if code != exitOK {
			t.Fatalf("keygen: exit %d: %s", code, errOut)
		}
		key := strings.TrimSpace(out)
		raw, err := base64.StdEncoding.DecodeString(key)
		if err != nil || len(raw) != 32 {
			t.Fatalf("keygen printed %q: want base64 of 32 bytes (%v)", out, err)
		}
		if _, err := config.DecodeGossipKey(key); err != nil {
			t.Errorf("the gossip block refuses the key: %v", err)
		}
		if seen[key] {
			t.Error("keygen printed the same key twice")
		}
		seen[key] = true
	}
}

func readCert(t *testing.T, file string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Fatalf("%s: not a PEM certificate", file)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// makePKI writes a CA and certificates for names (valid for 127.0.0.1) into a new directory.
func makePKI(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	if code, _, errOut := runTroop(t, nil, "tls", "ca", "create", "-dir", dir); code != exitOK {
		t.Fatalf("tls ca create: exit %d: %s", code, errOut)
	}
	for _, n := range names {
		if code, _, errOut := runTroop(t, nil, "tls", "cert", "create", "-dir", dir, "-name", n, "-ip", "127.0.0.1"); code != exitOK {
			t.Fatalf("tls cert create %s: exit %d: %s", n, code, errOut)
		}
	}
	return dir
}

func TestTLSCreate(t *testing.T) {
	dir := makePKI(t)
	code, out, errOut := runTroop(t, nil, "tls", "cert", "create", "-dir", dir, "-name", "d1", "-ip", "192.0.2.11", "-dns", "d1.example.net", "-dns", "d1")
	if code != exitOK {
		t.Fatalf("tls cert create: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, filepath.Join(dir, "d1.pem")) {
		t.Errorf("output %q does not name d1.pem", out)
	}
	ca, cert := readCert(t, filepath.Join(dir, "ca.pem")), readCert(t, filepath.Join(dir, "d1.pem"))
	if !ca.IsCA || ca.PublicKeyAlgorithm != x509.ECDSA || ca.PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P256() {
		t.Errorf("CA: IsCA %v, key %v", ca.IsCA, ca.PublicKeyAlgorithm)
	}
	if life := ca.NotAfter.Sub(ca.NotBefore); life < 5*365*24*time.Hour || life > 5*366*24*time.Hour {
		t.Errorf("CA valid for %v, want 5 years", life)
	}
	if cert.Subject.CommonName != "d1" || len(cert.IPAddresses) != 1 || !cert.IPAddresses[0].Equal(net.ParseIP("192.0.2.11")) ||
		strings.Join(cert.DNSNames, ",") != "d1.example.net,d1" {
		t.Errorf("certificate: CN %q, IPs %v, DNS %v", cert.Subject.CommonName, cert.IPAddresses, cert.DNSNames)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "d1.example.net", KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("verify for usage %v: %v", usage, err)
		}
	}
	for _, f := range []string{"ca-key.pem", "d1-key.pem"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v; want 0600", f, st.Mode(), err)
		}
	}
	// The files are what the raft tls block loads.
	if _, err := raftTLS(config.TLS{Enabled: true, CAFile: filepath.Join(dir, "ca.pem"), CertFile: filepath.Join(dir, "d1.pem"), KeyFile: filepath.Join(dir, "d1-key.pem")}); err != nil {
		t.Errorf("raft tls with the new files: %v", err)
	}
	// Nothing is overwritten; mistakes are usage errors.
	if code, _, errOut := runTroop(t, nil, "tls", "ca", "create", "-dir", dir); code != exitError || !strings.Contains(errOut, "exists") {
		t.Errorf("second ca create: exit %d, %q", code, errOut)
	}
	if code, _, _ := runTroop(t, nil, "tls", "cert", "create", "-dir", dir, "-name", "d2", "-ip", "nope"); code != exitUsage {
		t.Errorf("bad -ip: exit %d, want %d", code, exitUsage)
	}
	if code, _, _ := runTroop(t, nil, "tls", "cert", "create", "-dir", dir, "-name", "d2"); code != exitUsage {
		t.Errorf("no -ip nor -dns: exit %d, want %d", code, exitUsage)
	}
	if code, _, errOut := runTroop(t, nil, "tls", "cert", "create", "-dir", t.TempDir(), "-name", "d2", "-ip", "192.0.2.12"); code != exitError || !strings.Contains(errOut, "troop tls ca create") {
		t.Errorf("cert without a CA: exit %d, %q", code, errOut)
	}
}

// lockedBuffer is an agent's log output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startAgent runs `troop agent args...` in this process until the test ends and waits for its
// API at base (a client configured for it) to answer.
func startAgent(t *testing.T, client *api.Client, args ...string) *lockedBuffer {
	t.Helper()
	logs := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- runAgent(ctx, args, io.Discard, logs) }()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != exitOK {
			t.Errorf("agent exit %d: %s", code, logs.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		r, err := client.Ready(ctx)
		cancel()
		if err == nil && r.Ready {
			return logs
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent not ready: %v\n%s", err, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAgentACL runs `troop agent -dev -bootstrap-token-file` and drives it with the CLI: no
// token and a read token are refused every write, an operator token drains, the bootstrap
// (admin) token makes tokens, and no secret shows in a listing, a snapshot or the agent's log.
func TestAgentACL(t *testing.T) {
	dir := t.TempDir()
	boot := "bootstrap-token-0123456789abcdef"
	bootFile := filepath.Join(dir, "bootstrap.token")
	os.WriteFile(bootFile, []byte("  "+boot+"\n"), 0o600)
	addr := freePort(t)
	base := "http://" + addr
	logs := startAgent(t, api.NewClient(base, nil), "-dev", "-api-address", addr, "-bootstrap-token-file", bootFile, "-log-level", "debug")
	t.Setenv("TROOP_ADDR", base)
	t.Setenv("TROOP_TOKEN", "")

	tokenOf := func(name, scope string) api.NewToken {
		t.Helper()
		code, out, errOut := runTroop(t, nil, "acl", "token", "create", "-name", name, "-scope", scope, "-json", "-token", boot)
		var nt api.NewToken
		if code != exitOK || json.Unmarshal([]byte(out), &nt) != nil || nt.Secret == "" {
			t.Fatalf("acl token create %s: exit %d %s %s", name, code, out, errOut)
		}
		return nt
	}
	read, ops := tokenOf("reader", "read"), tokenOf("ops", "operator")
	if code, _, errOut := runTroop(t, nil, "service", "add", "web", "-vip", "192.0.2.10", "-port", "80", "-real", "192.0.2.21", "-token", ops.Secret); code != exitOK {
		t.Fatalf("service add with an operator token: %s", errOut)
	}
	index := func() uint64 {
		t.Helper()
		_, meta, err := api.NewClient(base, nil).WithToken(boot).Table(context.Background(), api.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return meta.Index
	}
	before := index()
	writes := [][]string{
		{"service", "rm", "web"},
		{"real", "drain", "web", "192.0.2.21"},
		{"real", "weight", "web", "192.0.2.21", "3"},
		{"host", "drain", "192.0.2.21"},
		{"operator", "raft", "transfer-leader"},
		{"acl", "token", "create", "-name", "x", "-scope", "admin"},
	}
	for _, w := range writes {
		for _, tok := range []string{"", read.Secret} {
			code, _, errOut := runTroop(t, map[string]string{"TROOP_TOKEN": tok}, w...)
			if code != exitError || !strings.Contains(errOut, "ACL token") {
				t.Errorf("troop %s with token %q: exit %d, %q; want a refusal naming the ACL token", strings.Join(w, " "), tok, code, errOut)
			}
		}
	}
	// Reads need a token too (anonymous none), from the flag or TROOP_TOKEN.
	if code, _, errOut := runTroop(t, map[string]string{"TROOP_TOKEN": ""}, "service", "list"); code != exitError || !strings.Contains(errOut, "needs an ACL token") {
		t.Errorf("anonymous service list: exit %d, %q", code, errOut)
	}
	if got := index(); got != before {
		t.Errorf("index %d after refused writes, want %d", got, before)
	}
	if code, out, errOut := runTroop(t, map[string]string{"TROOP_TOKEN": ops.Secret}, "real", "drain", "web", "192.0.2.21"); code != exitOK {
		t.Fatalf("drain with an operator token: exit %d %s %s", code, out, errOut)
	}
	if code, out, _ := runTroop(t, map[string]string{"TROOP_TOKEN": read.Secret}, "service", "show", "web"); code != exitOK || !strings.Contains(out, "draining") {
		t.Errorf("service show with a read token: exit %d %s", code, out)
	}

	_, list, _ := runTroop(t, map[string]string{"TROOP_TOKEN": boot}, "acl", "token", "list")
	if !strings.Contains(list, read.Accessor) || !strings.Contains(list, "ops") {
		t.Errorf("token list:\n%s", list)
	}
	snap := filepath.Join(dir, "pool.snap")
	if code, _, errOut := runTroop(t, map[string]string{"TROOP_TOKEN": boot}, "snapshot", "save", snap); code != exitOK {
		t.Fatalf("snapshot save: %s", errOut)
	}
	snapText, _ := os.ReadFile(snap)
	for _, s := range []string{boot, read.Secret, ops.Secret} {
		for what, text := range map[string]string{"token list": list, "snapshot": string(snapText), "agent log": logs.String()} {
			if strings.Contains(text, s) {
				t.Errorf("%s contains a secret", what)
			}
		}
	}
	if code, _, _ := runTroop(t, map[string]string{"TROOP_TOKEN": boot}, "acl", "token", "delete", read.Accessor); code != exitOK {
		t.Error("acl token delete failed")
	}
	if code, _, errOut := runTroop(t, map[string]string{"TROOP_TOKEN": read.Secret}, "service", "list"); code != exitError || !strings.Contains(errOut, "not found") {
		t.Errorf("deleted token: exit %d %q", code, errOut)
	}
}

// An api tls block serves HTTPS; the CLI verifies it with -ca-file (or TROOP_CACERT) and
// refuses it without.
func TestAgentAPITLS(t *testing.T) {
	pki := makePKI(t, "d1")
	apiAddr, raftAddr := freePort(t), freePort(t)
	cfg := filepath.Join(t.TempDir(), "d1.hcl")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`node_id = "d1"
data_dir = %q
api {
  address = %q
  tls {
    cert_file = %q
    key_file  = %q
  }
}
raft {
  address = %q
  peer "d1" { address = %q }
  tls {
    ca_file   = %q
    cert_file = %q
    key_file  = %q
  }
}
director { enabled = false }
`, t.TempDir(), apiAddr, filepath.Join(pki, "d1.pem"), filepath.Join(pki, "d1-key.pem"), raftAddr, raftAddr,
		filepath.Join(pki, "ca.pem"), filepath.Join(pki, "d1.pem"), filepath.Join(pki, "d1-key.pem"))), 0o644)
	hc, err := cliHTTPClient(filepath.Join(pki, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	base := "https://" + apiAddr
	startAgent(t, api.NewClient(base, hc), "-config", cfg)
	if code, out, errOut := runTroop(t, nil, "status", "-address", base, "-ca-file", filepath.Join(pki, "ca.pem")); code != exitOK || !strings.Contains(out, "d1") {
		t.Errorf("status over https with -ca-file: exit %d %s %s", code, out, errOut)
	}
	if code, _, errOut := runTroop(t, map[string]string{"TROOP_CACERT": filepath.Join(pki, "ca.pem")}, "service", "list", "-address", base); code != exitOK {
		t.Errorf("service list with TROOP_CACERT: %s", errOut)
	}
	if code, _, errOut := runTroop(t, map[string]string{"TROOP_CACERT": ""}, "status", "-address", base); code != exitError || !strings.Contains(errOut, "certificate") {
		t.Errorf("status over https without the CA: exit %d %q; want a certificate error", code, errOut)
	}
	// Plain HTTP to the TLS port gets no API answer.
	if resp, err := http.Get("http://" + apiAddr + "/v1/status"); err == nil {
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP answered 200 on the TLS port")
		}
		resp.Body.Close()
	}
}

// A followed event stream outlives the server's WriteTimeout; any other answer does not.
func TestStreamingExempt(t *testing.T) {
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		io.WriteString(w, "late\n")
	})
	srv := httptest.NewUnstartedServer(streamingExempt(slow))
	srv.Config.WriteTimeout = 100 * time.Millisecond
	srv.Start()
	defer srv.Close()
	get := func(path string) (string, error) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if body, err := get("/v1/events?follow"); err != nil || body != "late\n" {
		t.Errorf("followed events: %q, %v; want the late line", body, err)
	}
	if body, err := get("/v1/events"); err == nil && body == "late\n" {
		t.Error("an unfollowed request outlived the write timeout")
	}
}
