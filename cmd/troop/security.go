package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/troop-lb/troop/api"
	"github.com/troop-lb/troop/cluster"
	"github.com/troop-lb/troop/cmd/troop/internal/config"
	"github.com/troop-lb/troop/fsm"
)

// HTTP server limits. WriteTimeout bounds every answer but a followed event stream
// (streamingExempt); a snapshot of a large table is well under it on any LAN.
const (
	apiReadHeaderTimeout = 10 * time.Second
	apiReadTimeout       = 2 * time.Minute
	apiWriteTimeout      = 2 * time.Minute
	apiIdleTimeout       = 2 * time.Minute
	apiMaxHeaderBytes    = 64 << 10
)

// streamingExempt clears the write deadline of `GET /v1/events?follow` (troop events -f), which
// streams for as long as the client stays; every other request keeps the server's WriteTimeout.
func streamingExempt(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/v1/events" && r.URL.Query().Has("follow") {
			// Only a ResponseWriter that cannot (a test recorder) returns an error.
			_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
		}
		h.ServeHTTP(w, r)
	})
}

// apiACL turns the acl block into the API's access control (nil when disabled). The bootstrap
// token is read from its file once, at start.
func apiACL(c config.ACL) (*api.ACL, error) {
	if !c.Enabled {
		return nil, nil
	}
	acl := &api.ACL{}
	if c.Anonymous == config.AnonymousRead {
		acl.Anonymous = fsm.ScopeRead
	}
	if c.BootstrapTokenFile != "" {
		b, err := os.ReadFile(c.BootstrapTokenFile)
		if err != nil {
			return nil, fmt.Errorf("acl bootstrap_token_file: %w", err)
		}
		acl.BootstrapSecret = strings.TrimSpace(string(b))
		if len(acl.BootstrapSecret) < 16 {
			return nil, fmt.Errorf("acl bootstrap_token_file %s: the token is %d characters; want at least 16 (`troop keygen` makes one)", c.BootstrapTokenFile, len(acl.BootstrapSecret))
		}
	}
	return acl, nil
}

// apiTLS loads the API's certificate (nil without an api tls block).
func apiTLS(c config.TLS) (*tls.Config, error) {
	if !c.Enabled {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("api tls: %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}

// raftTLS loads the mutual TLS of Raft and the directors' RPC (nil without a raft tls block).
func raftTLS(c config.TLS) (*tls.Config, error) {
	if !c.Enabled {
		return nil, nil
	}
	var pems [3][]byte
	for i, f := range []string{c.CAFile, c.CertFile, c.KeyFile} {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("raft tls: %w", err)
		}
		pems[i] = b
	}
	cfg, err := cluster.MutualTLS(pems[0], pems[1], pems[2])
	if err != nil {
		return nil, fmt.Errorf("raft tls (%s, %s, %s): %w", c.CAFile, c.CertFile, c.KeyFile, err)
	}
	return cfg, nil
}

// cliHTTPClient is the CLI's HTTP client: the default one, or one that verifies the agent's
// certificate against caFile (-ca-file, TROOP_CACERT).
func cliHTTPClient(caFile string) (*http.Client, error) {
	if caFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New(caFile + ": no PEM certificate found")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	return &http.Client{Transport: tr}, nil
}
