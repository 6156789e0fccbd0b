package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
)

// MutualTLS builds Config.TLS from PEM: the pool's CA, this director's certificate (chain) and
// its key. Both ends of every connection present a certificate and check the other's against
// the CA; a dialer also checks that the certificate names the address it dialed (an IP or DNS
// SAN), as `troop tls cert create -ip/-dns` writes it. Only TLS 1.3 is spoken.
func MutualTLS(caPEM, certPEM, keyPEM []byte) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("CA: no PEM certificate found")
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("certificate and key: %w", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}, nil
}

// tlsLayer is the mutual-TLS streamLayer: the whole connection, the multiplexer's first byte
// included, runs over TLS. Accept returns the server side of a connection whose handshake the
// mux completes (bounded by muxHandshakeTimeout) in its per-connection goroutine, so a slow or
// hostile client cannot stall the accept loop; Dial returns a connection that completed it.
type tlsLayer struct {
	*tcpLayer
	cfg *tls.Config
}

func newTLSLayer(t *tcpLayer, cfg *tls.Config) *tlsLayer {
	return &tlsLayer{tcpLayer: t, cfg: cfg}
}

func (t *tlsLayer) Accept() (net.Conn, error) {
	c, err := t.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return tls.Server(c, t.cfg), nil
}

func (t *tlsLayer) Dial(ctx context.Context, addr string) (net.Conn, error) {
	d := tls.Dialer{NetDialer: &t.dialer, Config: t.cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("TLS to %s: %w", addr, err)
	}
	return c, nil
}

// handshake completes the TLS handshake of an accepted connection (a no-op without TLS).
func handshake(c net.Conn) error {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), muxHandshakeTimeout)
	defer cancel()
	return tc.HandshakeContext(ctx)
}
