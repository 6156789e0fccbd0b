package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"reflect"
	"testing"

	"github.com/troop-lb/troop/fsm"
)

// The fuzz targets below feed every request body the API decodes (and the IDs in its paths)
// through the handlers' own decoding. Each must not panic and must either refuse the input with
// a 4xx *Error that says why, or return a value that re-encodes: json.Marshal succeeds, the
// strict decoder takes the encoding back, and encoding that gives the same bytes again.

// decodeRequest decodes body as the handlers do: decodeBody over an HTTP request.
func decodeRequest(body []byte, limit int64, v any, optional bool) error {
	r := httptest.NewRequest(http.MethodPut, "/", bytes.NewReader(body))
	return decodeBody(httptest.NewRecorder(), r, limit, v, optional)
}

// checkRefusal asserts that err is a client error (400, 409 for a duplicate, 413) with a message.
func checkRefusal(t *testing.T, input []byte, err error) {
	t.Helper()
	e := errorFor(err)
	if e.StatusCode < 400 || e.StatusCode > 499 || e.Message == "" {
		t.Fatalf("input %q: refused with %d %q (%T), want a 4xx with a message", input, e.StatusCode, e.Message, err)
	}
}

// checkReencodes asserts that v survives encoding and strict decoding into a new T unchanged;
// accept, if set, is the handler's further check, which the re-decoded value must pass too.
func checkReencodes[T any](t *testing.T, v *T, accept func(*T) error) {
	t.Helper()
	enc, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("accepted value %+v does not encode: %v", v, err)
	}
	var back T
	if err := decodeJSON(enc, &back); err != nil {
		t.Fatalf("the encoding %s of an accepted value does not decode: %v", enc, err)
	}
	if accept != nil {
		if err := accept(&back); err != nil {
			t.Fatalf("the encoding %s of an accepted value is refused: %v", enc, err)
		}
	}
	again, err := json.Marshal(&back)
	if err != nil || !bytes.Equal(enc, again) {
		t.Fatalf("re-encoding changed the value:\n%s\n%s (%v)", enc, again, err)
	}
}

// fuzzBody is the fuzz function of one body type: decode as the handler does, then accept
// (the handler's checks after decoding, nil for none).
func fuzzBody[T any](optional bool, accept func(*T) error) func(*testing.T, []byte) {
	return func(t *testing.T, body []byte) {
		var v T
		err := decodeRequest(body, smallBodyLimit, &v, optional)
		if err == nil && accept != nil {
			err = accept(&v)
		}
		if err != nil {
			checkRefusal(t, body, err)
			return
		}
		checkReencodes(t, &v, accept)
	}
}

func addSeeds(f *testing.F, seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	for _, s := range []string{"", " ", "null", "{}", "[]", "{", `{"x":1}`, "{} {}", "\"s\"", "1e999"} {
		f.Add([]byte(s))
	}
}

// FuzzDecodeService: the body of PUT /v1/services/{name}.
func FuzzDecodeService(f *testing.F) {
	addSeeds(f,
		`{"name":"web","vip":"192.0.2.6","port":80,"protocol":"tcp","scheduler":"wlc","forwarding":"dr","reals":[{"address":"192.0.2.21"},{"address":"192.0.2.22","weight":2}]}`,
		`{"fwmark":7,"family":"ipv6","persistence":{"timeout":"5m","netmask":64},"check":{"type":"http","path":"/","expect":"ok","interval":"2s","expect_status":["200-299"]},"fallback":{"address":"127.0.0.1","port":8080},"quiescent":true,"sched_flags":["sh-port"]}`,
		`{"vip":"2001:db8::6","port":65536}`, `{"check":{"timeout":12}}`, `{"reals":[{"address":"::ffff:192.0.2.1","admin":"draining"}]}`)
	f.Fuzz(fuzzBody[fsm.Service](false, nil))
}

// FuzzDecodeReal: the body of POST /v1/services/{name}/reals and PUT .../reals/{id}.
func FuzzDecodeReal(f *testing.F) {
	addSeeds(f, `{"address":"192.0.2.21","port":8080,"weight":3,"forwarding":"nat","upper_threshold":100,"lower_threshold":10,"admin":"disabled"}`,
		`{"address":"2001:db8::21%eth0"}`, `{"weight":-1}`, `{"address":""}`)
	f.Fuzz(fuzzBody[fsm.Real](true, nil))
}

// FuzzDecodeWeight: the body of PUT .../reals/{id}/weight.
func FuzzDecodeWeight(f *testing.F) {
	addSeeds(f, `{"weight":2}`, `{"weight":null}`, `{"weight":1.5}`, `{"weight":99999999999999999999}`, `{"Weight":0}`)
	f.Fuzz(fuzzBody[WeightRequest](false, func(r *WeightRequest) error {
		if r.Weight == nil {
			return badRequest("weight", "", "weight: is required")
		}
		return nil
	}))
}

func requireAdmin(r *AdminRequest) error {
	if r.Admin == "" {
		return badRequest("admin", "", "admin: is required (enabled, draining or disabled)")
	}
	return nil
}

// FuzzDecodeAdmin: the body of PUT .../reals/{id}/admin.
func FuzzDecodeAdmin(f *testing.F) {
	addSeeds(f, `{"admin":"draining"}`, `{"admin":"enabled"}`, `{"admin":""}`, `{"admin":7}`, `{"ADMIN":"disabled"}`)
	f.Fuzz(fuzzBody[AdminRequest](false, requireAdmin))
}

// FuzzDecodeHostAdmin: PUT /v1/hosts/{addr}/admin, its address and its body.
func FuzzDecodeHostAdmin(f *testing.F) {
	for _, tc := range []struct{ addr, body string }{
		{"192.0.2.21", `{"admin":"draining"}`}, {"2001:db8::21", `{"admin":"enabled"}`},
		{"::ffff:192.0.2.1", `{"admin":"disabled"}`}, {"192.0.2.21:80", `{}`}, {"", ""}, {"fe80::1%eth0", `{"admin":1}`},
	} {
		f.Add(tc.addr, []byte(tc.body))
	}
	body := fuzzBody[AdminRequest](false, requireAdmin)
	f.Fuzz(func(t *testing.T, addr string, b []byte) {
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return // the handler answers 400 before reading the body
		}
		if u := a.Unmap(); u.String() != "" {
			if back, err := netip.ParseAddr(u.String()); err != nil || back != u {
				t.Fatalf("host %q: %s does not parse back (%v)", addr, u, err)
			}
		}
		body(t, b)
	})
}

// FuzzParseRealID: the {id} of the real-server routes.
func FuzzParseRealID(f *testing.F) {
	for _, s := range []string{"192.0.2.21:80", "[2001:db8::21]:80", "192.0.2.21", "2001:db8::21", "::ffff:192.0.2.1", "[::ffff:192.0.2.1]:0", "x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		addr, port, err := parseRealID(id)
		if err != nil {
			checkRefusal(t, []byte(id), err)
			return
		}
		again, port2, err := parseRealID(fsm.RealID(addr, port))
		if err != nil || again != addr || port2 != port {
			t.Fatalf("id %q: %s does not parse back: %s %d %v", id, fsm.RealID(addr, port), again, port2, err)
		}
	})
}

// FuzzDecodeTransfer: the optional body of POST /v1/operator/raft/transfer-leadership.
func FuzzDecodeTransfer(f *testing.F) {
	addSeeds(f, `{"id":"d2"}`, `{"id":""}`, `{"id":2}`)
	f.Fuzz(fuzzBody[TransferRequest](true, nil))
}

func validTable(t *fsm.Table) error {
	fsm.NormalizeTable(t)
	return fsm.ValidateTable(t)
}

// FuzzDecodeTable: the body of POST /v1/table?plan and PUT /v1/table (decodeTable).
func FuzzDecodeTable(f *testing.F) {
	addSeeds(f,
		`{"services":[{"name":"web","vip":"192.0.2.6","port":80,"reals":[{"address":"192.0.2.21"},{"address":"192.0.2.22","weight":2}]}]}`,
		`{"services":[{"name":"m","fwmark":3,"family":"ipv4","reals":[{"address":"192.0.2.1","port":0}]}],"vip_groups":[{"name":"g","vips":["192.0.2.6"]}]}`,
		`{"services":[{"name":"a","vip":"192.0.2.6","port":80},{"name":"a","vip":"192.0.2.7","port":80}]}`)
	f.Fuzz(func(t *testing.T, body []byte) {
		var tb fsm.Table
		err := decodeRequest(body, largeBodyLimit, &tb, false)
		if err == nil {
			err = validTable(&tb)
		}
		if err != nil {
			checkRefusal(t, body, err)
			return
		}
		checkReencodes(t, &tb, validTable)
	})
}

// FuzzDecodeSnapshot: the body of PUT /v1/snapshot, read as restoreSnapshot reads it.
func FuzzDecodeSnapshot(f *testing.F) {
	addSeeds(f,
		`{"format":1,"index":12,"services":[{"name":"web","vip":"192.0.2.6","port":80,"reals":[{"address":"192.0.2.21"}]}],"health":{"web":{"192.0.2.21:80":{"state":"down","reason":"connection refused","since":"2026-01-02T03:04:05Z"}}}}`,
		`{"format":99,"index":1,"services":[]}`, `{"format":1,"index":"x"}`)
	if src, err := os.ReadFile("testdata/snapshot.json"); err == nil {
		f.Add(src)
	}
	decode := func(body []byte) (*fsm.Snapshot, error) {
		snap, err := fsm.ReadSnapshot(bytes.NewReader(body))
		if err != nil {
			return nil, jsonError(body, reflect.TypeFor[fsm.Snapshot](), err)
		}
		t := snap.Table
		fsm.NormalizeTable(&t)
		if err := fsm.ValidateTable(&t); err != nil {
			return nil, err
		}
		return snap, nil
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		snap, err := decode(body)
		if err != nil {
			checkRefusal(t, body, err)
			return
		}
		enc, err := json.Marshal(snap)
		if err != nil {
			t.Fatalf("accepted snapshot does not encode: %v", err)
		}
		back, err := decode(enc)
		if err != nil {
			t.Fatalf("the encoding %s of an accepted snapshot is refused: %v", enc, err)
		}
		if again, err := json.Marshal(back); err != nil || !bytes.Equal(enc, again) {
			t.Fatalf("re-encoding changed the snapshot:\n%s\n%s (%v)", enc, again, err)
		}
	})
}
