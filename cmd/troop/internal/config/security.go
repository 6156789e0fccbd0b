package config

import (
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/troop-lb/troop/fsm"
)

// ACL is the `acl { ... }` block: access control on the API (api.ACL).
type ACL struct {
	// Enabled turns ACLs on; without it every request is served as without the block.
	Enabled bool
	// Anonymous is what a request without a token may do: "none" (the default: reads need a
	// token too) or "read".
	Anonymous string
	// BootstrapTokenFile holds the bootstrap token: admin scope, never stored in the table, the
	// same file on every director (read at start, surrounding space trimmed).
	BootstrapTokenFile string
}

// Anonymous values.
const (
	AnonymousNone = "none"
	AnonymousRead = "read"
)

// TLS is a `tls { ... }` block. In `api` it takes cert_file and key_file (the API and the
// console over HTTPS); in `raft` also ca_file (mutual TLS between directors, certificates
// verified against that CA both ways).
type TLS struct {
	// Enabled is true when the block is present.
	Enabled  bool
	CAFile   string
	CertFile string
	KeyFile  string
}

func (d *decoder) acl(b *hclsyntax.Block, a *ACL) {
	d.body(b.Body, "acl", schema{attrs: map[string]setter{
		"enabled":              boolean(&a.Enabled),
		"anonymous":            text(&a.Anonymous),
		"bootstrap_token_file": text(&a.BootstrapTokenFile),
	}})
}

// tls decodes a tls block inside path ("api" or "raft"); withCA says whether ca_file is a key.
func (d *decoder) tls(b *hclsyntax.Block, path string, t *TLS, withCA bool) {
	t.Enabled = true
	attrs := map[string]setter{
		"cert_file": text(&t.CertFile),
		"key_file":  text(&t.KeyFile),
	}
	if withCA {
		attrs["ca_file"] = text(&t.CAFile)
	}
	d.body(b.Body, path+" tls", schema{attrs: attrs})
}

func (a ACL) problems() []*fsm.FieldError {
	var ps []*fsm.FieldError
	switch a.Anonymous {
	case "", AnonymousNone, AnonymousRead:
	default:
		ps = append(ps, invalid("acl anonymous", a.Anonymous, `must be "none" or "read"`))
	}
	return ps
}

func (t TLS) problems(path string, withCA bool) []*fsm.FieldError {
	if !t.Enabled {
		return nil
	}
	var ps []*fsm.FieldError
	need := func(field, v, why string) {
		if v == "" {
			ps = append(ps, invalid(path+" tls "+field, "", "is required: %s", why))
		}
	}
	if withCA {
		need("ca_file", t.CAFile, "the CA every director's certificate is checked against (`troop tls ca create`)")
	}
	need("cert_file", t.CertFile, "this director's certificate, PEM (`troop tls cert create`)")
	need("key_file", t.KeyFile, "the certificate's private key, PEM")
	return ps
}
