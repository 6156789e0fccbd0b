package config

import (
	"reflect"
	"testing"
)

func TestParseAgentSecurity(t *testing.T) {
	src := head + `api {
  address = "192.0.2.11:9700"
  tls {
    cert_file = "/etc/troop/d1.pem"
    key_file  = "/etc/troop/d1-key.pem"
  }
}
raft {
  address = "192.0.2.11:9701"
  tls {
    ca_file   = "/etc/troop/ca.pem"
    cert_file = "/etc/troop/d1.pem"
    key_file  = "/etc/troop/d1-key.pem"
  }
}
acl {
  enabled              = true
  anonymous            = "read"
  bootstrap_token_file = "/etc/troop/bootstrap.token"
}
`
	a, err := ParseAgent("agent.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if want := (ACL{Enabled: true, Anonymous: "read", BootstrapTokenFile: "/etc/troop/bootstrap.token"}); a.ACL != want {
		t.Errorf("acl %+v, want %+v", a.ACL, want)
	}
	if want := (TLS{Enabled: true, CertFile: "/etc/troop/d1.pem", KeyFile: "/etc/troop/d1-key.pem"}); a.API.TLS != want {
		t.Errorf("api tls %+v, want %+v", a.API.TLS, want)
	}
	if want := (TLS{Enabled: true, CAFile: "/etc/troop/ca.pem", CertFile: "/etc/troop/d1.pem", KeyFile: "/etc/troop/d1-key.pem"}); a.Raft.TLS != want {
		t.Errorf("raft tls %+v, want %+v", a.Raft.TLS, want)
	}
	// Without the blocks nothing is on.
	a, err = ParseAgent("agent.hcl", []byte(head))
	if err != nil {
		t.Fatal(err)
	}
	if a.ACL != (ACL{}) || a.API.TLS.Enabled || a.Raft.TLS.Enabled {
		t.Errorf("defaults: acl %+v api tls %+v raft tls %+v", a.ACL, a.API.TLS, a.Raft.TLS)
	}
}

func TestParseAgentSecurityErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		want []string
	}{
		{
			name: "anonymous",
			src:  head + "acl {\n  enabled = true\n  anonymous = \"write\"\n}\n",
			want: []string{`agent.hcl:5:3: acl anonymous: "write": must be "none" or "read"`},
		},
		{
			name: "unknown acl key",
			src:  head + "acl {\n  token = \"x\"\n}\n",
			want: []string{`agent.hcl:4:3: acl: unknown key "token"`},
		},
		{
			name: "enabled not a bool",
			src:  head + "acl {\n  enabled = \"yes\"\n}\n",
			want: []string{`agent.hcl:4:3: acl enabled: "yes": must be true or false`},
		},
		{
			name: "twice",
			src:  head + "acl {\n}\nacl {\n}\n",
			want: []string{`agent.hcl:5:1: acl: is defined twice, first at agent.hcl:3:1`},
		},
		{
			name: "api tls without key",
			src:  head + "api {\n  tls {\n    cert_file = \"d1.pem\"\n  }\n}\n",
			want: []string{"agent.hcl:4:3: api tls key_file: is required: the certificate's private key, PEM"},
		},
		{
			name: "api tls takes no ca",
			src:  head + "api {\n  tls {\n    ca_file = \"ca.pem\"\n    cert_file = \"d1.pem\"\n    key_file = \"k.pem\"\n  }\n}\n",
			want: []string{`agent.hcl:5:5: api tls: unknown key "ca_file"`},
		},
		{
			name: "raft tls without ca",
			src:  head + "raft {\n  tls {\n    cert_file = \"d1.pem\"\n    key_file = \"k.pem\"\n  }\n}\n",
			want: []string{"agent.hcl:4:3: raft tls ca_file: is required: the CA every director's certificate is checked against (`troop tls ca create`)"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAgent("agent.hcl", []byte(tc.src))
			if !reflect.DeepEqual(got, Agent{}) {
				t.Errorf("bad input returned a config: %+v", got)
			}
			checkDiagnostics(t, err, tc.want...)
		})
	}
}
