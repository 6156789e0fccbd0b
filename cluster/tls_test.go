package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/troop-lb/troop/fsm"
)

// testCA is a CA for tests: certificates for 127.0.0.1, good for server and client auth.
type testCA struct {
	cert  *x509.Certificate
	key   *ecdsa.PrivateKey
	certP []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, certP: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// tlsConfig returns MutualTLS for a new certificate of this CA, trusting trust.
func (ca *testCA) tlsConfig(t *testing.T, name string, trust *testCA) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	cfg, err := MutualTLS(trust.certP, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestTLSPool runs three directors over mutual TLS on loopback TCP; a fourth whose certificate
// another CA signed cannot join, and neither can a plain TCP client talk to them.
func TestTLSPool(t *testing.T) {
	checkGoroutines(t)
	ca, rogue := newTestCA(t, "pool CA"), newTestCA(t, "rogue CA")
	c1 := tcpConfig(t, "n1", t.TempDir(), "127.0.0.1:0")
	c1.BootstrapExpect = 1
	c1.TLS = ca.tlsConfig(t, "n1", ca)
	n1, err := New(c1, fsm.New(c1.Logger))
	if err != nil {
		t.Fatal(err)
	}
	runNode(t, n1)
	nodes := []*Node{n1}
	for _, id := range []string{"n2", "n3"} {
		c := tcpConfig(t, id, t.TempDir(), "127.0.0.1:0")
		c.Join = []string{n1.Addr()}
		c.TLS = ca.tlsConfig(t, id, ca)
		n, err := New(c, fsm.New(c.Logger))
		if err != nil {
			t.Fatal(err)
		}
		runNode(t, n)
		nodes = append(nodes, n)
	}
	leader := waitPool(t, nodes, 3)
	ctx := ctxTimeout(t, 20*time.Second)
	var follower *Node
	for _, n := range nodes {
		if n != leader {
			follower = n
		}
	}
	// A write forwarded over the RPC port and replicated over Raft, both TLS.
	if _, err := follower.Apply(ctx, upsert(1)); err != nil {
		t.Fatal(err)
	}

	// A fourth director with a certificate from another CA (trusting the pool's CA, so only
	// the pool's refusal of its certificate stops it) asks every member to let it in.
	c4 := tcpConfig(t, "n4", t.TempDir(), "127.0.0.1:0")
	for _, n := range nodes {
		c4.Join = append(c4.Join, n.Addr())
	}
	c4.TLS = rogue.tlsConfig(t, "n4", ca)
	// It presents its certificate even though the pool asks for one from its own CA.
	c4.TLS.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &c4.TLS.Certificates[0], nil
	}
	n4, err := New(c4, fsm.New(c4.Logger))
	if err != nil {
		t.Fatal(err)
	}
	runNode(t, n4)
	// A plain TCP client announcing a Raft connection gets nothing back.
	plain, err := net.DialTimeout("tcp", leader.Addr(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	plain.Write([]byte{muxRaft, 0, 0, 0, 0})
	plain.SetReadDeadline(time.Now().Add(2 * time.Second))
	if b, err := plain.Read(make([]byte, 64)); err == nil && b > 0 {
		// The server's TLS alert is all it may send.
		t.Logf("plain client read %d bytes (a TLS alert)", b)
	}

	time.Sleep(3 * time.Second)
	st := leader.Status()
	var ids []string
	for _, p := range st.Peers {
		ids = append(ids, p.ID)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"n1", "n2", "n3"}) {
		t.Errorf("configuration %v after the rogue director tried to join, want n1 n2 n3", ids)
	}
	if s := n4.Status(); s.LeaderID != "" || s.CommitIndex != 0 {
		t.Errorf("rogue director sees leader %q at index %d, want none", s.LeaderID, s.CommitIndex)
	}
	if n4.View().Len() != 0 {
		t.Error("rogue director received the table")
	}
	// The pool still works.
	if _, err := follower.Apply(ctx, upsert(2)); err != nil {
		t.Fatal(err)
	}
}
