package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Local verbs: they make keys and certificates on this machine and talk to no agent.
var pkiVerbs = []verb{
	{name: "keygen", maxArgs: 0, flags: noFlags(keygen),
		synopsis: "Print a new key: base64 of 32 random bytes (a gossip key, or a bootstrap token) (local)"},
	{name: "tls ca create", maxArgs: 0, flags: tlsCACreateFlags,
		synopsis: "Write a new CA to -dir: ca.pem and ca-key.pem (ECDSA P-256, 5 years) (local)"},
	{name: "tls cert create", maxArgs: 0, flags: tlsCertCreateFlags,
		synopsis: "Write NAME.pem and NAME-key.pem to -dir, signed by its CA, for server and client use (local)"},
}

// caValidity and certValidity are how long `troop tls` certificates last.
const (
	caValidity   = 5 * 365 * 24 * time.Hour
	certValidity = 5 * 365 * 24 * time.Hour
)

func keygen(_ context.Context, c *call) error {
	_, err := fmt.Fprintln(c.stdout, newKey())
	return err
}

// newKey is `troop keygen`'s key: base64 of 32 random bytes, a gossip key or a bootstrap token.
func newKey() string {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return base64.StdEncoding.EncodeToString(key)
}

func tlsCACreateFlags(fs *flag.FlagSet) action {
	dir := fs.String("dir", ".", "write ca.pem and ca-key.pem into this `directory`")
	name := fs.String("common-name", "Troop CA", "the CA's common `name`")
	return func(_ context.Context, c *call) error {
		if err := createCA(*dir, *name, time.Now()); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "Wrote %s and %s\n", filepath.Join(*dir, "ca.pem"), filepath.Join(*dir, "ca-key.pem"))
		return nil
	}
}

func tlsCertCreateFlags(fs *flag.FlagSet) action {
	dir := fs.String("dir", ".", "the `directory` holding ca.pem and ca-key.pem, where NAME.pem and NAME-key.pem are written")
	name := fs.String("name", "", "the certificate's `name` (the director's node ID): its common name and file names")
	var ips, dnss stringList
	fs.Var(&ips, "ip", "an IP `address` the certificate is valid for (repeatable): the director's Raft and API addresses")
	fs.Var(&dnss, "dns", "a DNS `name` the certificate is valid for (repeatable)")
	return func(_ context.Context, c *call) error {
		if *name == "" || strings.ContainsAny(*name, `/\`) {
			return usageErrorf("-name is required: the director's node ID, without slashes")
		}
		req := certRequest{name: *name, dns: dnss}
		for _, s := range ips {
			ip := net.ParseIP(s)
			if ip == nil {
				return usageErrorf("-ip %q: not an IP address", s)
			}
			req.ips = append(req.ips, ip)
		}
		if len(req.ips) == 0 && len(req.dns) == 0 {
			return usageErrorf("give at least one -ip or -dns: the addresses other directors and clients reach this one at")
		}
		if err := createCert(*dir, req, time.Now()); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "Wrote %s and %s\n", filepath.Join(*dir, *name+".pem"), filepath.Join(*dir, *name+"-key.pem"))
		return nil
	}
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

// createCA writes a self-signed ECDSA P-256 CA certificate and its key into dir. It refuses to
// overwrite an existing CA.
func createCA(dir, name string, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Troop"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(caValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		SubjectKeyId:          keyID(&key.PublicKey),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("create CA certificate: %w", err)
	}
	return writePair(dir, "ca", der, key)
}

type certRequest struct {
	name string
	ips  []net.IP
	dns  []string
}

// createCert writes NAME.pem and NAME-key.pem into dir, signed by the CA in dir, for both
// server and client authentication (the same certificate serves Raft's mutual TLS both ways
// and the API).
func createCert(dir string, req certRequest, now time.Time) error {
	ca, caKey, err := loadCA(dir)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: req.name, Organization: []string{"Troop"}},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(certValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  req.ips,
		DNSNames:     req.dns,
	}
	if tmpl.NotAfter.After(ca.NotAfter) {
		// A certificate outliving its CA would fail verification anyway.
		tmpl.NotAfter = ca.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("create certificate %s: %w", req.name, err)
	}
	return writePair(dir, req.name, der, key)
}

func loadCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return nil, nil, fmt.Errorf("read the CA (troop tls ca create -dir %s): %w", dir, err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "ca-key.pem"))
	if err != nil {
		return nil, nil, fmt.Errorf("read the CA key: %w", err)
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, fmt.Errorf("%s: ca.pem or ca-key.pem is not PEM", dir)
	}
	ca, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parse ca.pem: %w", err)
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parse ca-key.pem: %w", err)
	}
	if !ca.IsCA {
		return nil, nil, errors.New("ca.pem is not a CA certificate")
	}
	return ca, key, nil
}

// writePair writes NAME.pem (0644) and NAME-key.pem (0600), refusing to replace either.
func writePair(dir, name string, der []byte, key *ecdsa.PrivateKey) error {
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	certFile, keyFile := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	for _, f := range []string{certFile, keyFile} {
		if _, err := os.Stat(f); err == nil {
			return fmt.Errorf("%s exists: not replaced", f)
		}
	}
	if err := writeNew(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	return writeNew(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func writeNew(file string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func randomSerial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n.Add(n, big.NewInt(1))
}

func keyID(pub *ecdsa.PublicKey) []byte {
	b, _ := x509.MarshalPKIXPublicKey(pub)
	sum := sha256.Sum256(b)
	return sum[:20]
}
