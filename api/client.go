package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/troop-lb/troop/cluster"
	"github.com/troop-lb/troop/fsm"
)

// Client calls the API of one Troop agent, one method per route. A non-2xx answer is returned
// as an *Error carrying the server's status and message; transport failures are returned as the
// http.Client reports them (a *url.Error naming the method and URL). Methods are safe for
// concurrent use.
type Client struct {
	base  string
	hc    *http.Client
	actor string
	token string
}

// NewClient returns a client of the agent at addr: a base URL ("http://127.0.0.1:9700") or a bare
// host:port, taken as http. A nil httpClient means http.DefaultClient; deadlines come from the
// contexts passed to each method.
func NewClient(addr string, httpClient *http.Client) *Client {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	if httpClient == nil {
		httpClient = http.DefaultClient
	}
	return &Client{base: strings.TrimRight(addr, "/"), hc: httpClient}
}

// WithActor returns a copy of the client that names actor as the author of its writes
// (HeaderActor); the server otherwise records the client's address.
func (c *Client) WithActor(actor string) *Client {
	cc := *c
	cc.actor = actor
	return &cc
}

// WithToken returns a copy of the client that sends the ACL token secret with every request
// ("Authorization: Bearer"); an empty secret sends none.
func (c *Client) WithToken(secret string) *Client {
	cc := *c
	cc.token = secret
	return &cc
}

// ReadOptions control a read.
type ReadOptions struct {
	// Consistent asks for a leader-verified read instead of the serving node's local state.
	Consistent bool
}

// ReadMeta describes the state a read was served from, from the response headers.
type ReadMeta struct {
	// Index is the Raft index of the state.
	Index uint64
	// Consistency is ConsistencyLocal or ConsistencyLeaderVerified.
	Consistency string
}

// Services lists every service with its real servers' health, in name order.
func (c *Client) Services(ctx context.Context, opts ReadOptions) ([]ServiceStatus, ReadMeta, error) {
	var out ServiceList
	meta, err := c.read(ctx, "/v1/services", opts, &out)
	return out.Services, meta, err
}

// Service returns one service with its real servers' health.
func (c *Client) Service(ctx context.Context, name string, opts ReadOptions) (ServiceStatus, ReadMeta, error) {
	var out ServiceStatus
	meta, err := c.read(ctx, urlPath("services", name), opts, &out)
	return out, meta, err
}

// PutService creates or replaces the service svc.Name. Without real servers in svc, the
// service's existing real servers are kept.
func (c *Client) PutService(ctx context.Context, svc fsm.Service) (WriteResult, error) {
	return c.write(ctx, http.MethodPut, urlPath("services", svc.Name), svc)
}

// DeleteService removes a service and its real servers.
func (c *Client) DeleteService(ctx context.Context, name string) (WriteResult, error) {
	return c.write(ctx, http.MethodDelete, urlPath("services", name), nil)
}

// AddReal adds or replaces a real server of a service; its port defaults to the service's.
func (c *Client) AddReal(ctx context.Context, service string, r fsm.Real) (WriteResult, error) {
	return c.write(ctx, http.MethodPost, urlPath("services", service, "reals"), r)
}

// PutReal adds or replaces the real server id ("192.0.2.21:80", "[2001:db8::21]:80", or a bare
// address for the service's port); r's address and port may be left out.
func (c *Client) PutReal(ctx context.Context, service, id string, r fsm.Real) (WriteResult, error) {
	return c.write(ctx, http.MethodPut, urlPath("services", service, "reals", id), r)
}

// DeleteReal removes a real server.
func (c *Client) DeleteReal(ctx context.Context, service, id string) (WriteResult, error) {
	return c.write(ctx, http.MethodDelete, urlPath("services", service, "reals", id), nil)
}

// SetWeight changes a real server's weight (0–65535).
func (c *Client) SetWeight(ctx context.Context, service, id string, weight int) (WriteResult, error) {
	return c.write(ctx, http.MethodPut, urlPath("services", service, "reals", id, "weight"), WeightRequest{Weight: &weight})
}

// SetAdmin enables, drains or disables a real server.
func (c *Client) SetAdmin(ctx context.Context, service, id string, admin fsm.AdminState) (WriteResult, error) {
	return c.write(ctx, http.MethodPut, urlPath("services", service, "reals", id, "admin"), AdminRequest{Admin: admin})
}

// SetHostAdmin enables, drains or disables every real server at addr, whatever its port, in
// every service, as one write. It fails with cluster.ErrFeatureUnavailable until every server
// of the pool speaks protocol 2.
func (c *Client) SetHostAdmin(ctx context.Context, addr netip.Addr, admin fsm.AdminState) (HostAdminResult, error) {
	var out HostAdminResult
	_, err := c.do(ctx, http.MethodPut, urlPath("hosts", addr.String(), "admin"), nil, AdminRequest{Admin: admin}, &out)
	return out, err
}

// Table returns the whole declarative table.
func (c *Client) Table(ctx context.Context, opts ReadOptions) (fsm.Table, ReadMeta, error) {
	var out fsm.Table
	meta, err := c.read(ctx, "/v1/table", opts, &out)
	return out, meta, err
}

// PlanTable returns what ApplyTable(t) would change, without changing anything. The server
// validates t as ApplyTable would.
func (c *Client) PlanTable(ctx context.Context, t fsm.Table, opts ReadOptions) (TableDiff, error) {
	flags := []string{"plan"}
	if opts.Consistent {
		flags = append(flags, "consistent")
	}
	var out TableDiff
	_, err := c.do(ctx, http.MethodPost, "/v1/table", flags, t, &out)
	return out, err
}

// ApplyTable replaces the whole table in one Raft entry and returns the diff it applied.
func (c *Client) ApplyTable(ctx context.Context, t fsm.Table) (TableDiff, error) {
	var out TableDiff
	_, err := c.do(ctx, http.MethodPut, "/v1/table", nil, t, &out)
	return out, err
}

// Status returns the serving node's Raft view and table size.
func (c *Client) Status(ctx context.Context, opts ReadOptions) (Status, ReadMeta, error) {
	var out Status
	meta, err := c.read(ctx, "/v1/status", opts, &out)
	return out, meta, err
}

// Members lists the directors the serving node knows of (gossip, Raft, serial link).
func (c *Client) Members(ctx context.Context) ([]cluster.Member, error) {
	var out MemberList
	_, err := c.read(ctx, "/v1/members", ReadOptions{}, &out)
	return out.Members, err
}

// Peers lists the servers of the Raft configuration.
func (c *Client) Peers(ctx context.Context, opts ReadOptions) ([]cluster.Peer, ReadMeta, error) {
	var out PeerList
	meta, err := c.read(ctx, "/v1/operator/raft/peers", opts, &out)
	return out.Peers, meta, err
}

// RemovePeer removes a server from the Raft configuration.
func (c *Client) RemovePeer(ctx context.Context, id string) error {
	_, err := c.do(ctx, http.MethodDelete, urlPath("operator", "raft", "peers", id), nil, nil, nil)
	return err
}

// TransferLeadership hands leadership to the server id, or to the most up-to-date follower when
// id is empty.
func (c *Client) TransferLeadership(ctx context.Context, id string) error {
	_, err := c.do(ctx, http.MethodPost, "/v1/operator/raft/transfer-leadership", nil, TransferRequest{ID: id}, nil)
	return err
}

// SaveSnapshot streams a snapshot of the whole state into w. It is leader-verified unless stale
// is set, which saves the serving node's state even when the pool has no leader.
func (c *Client) SaveSnapshot(ctx context.Context, w io.Writer, stale bool) (ReadMeta, error) {
	var flags []string
	if stale {
		flags = []string{"stale"}
	}
	resp, err := c.send(ctx, http.MethodGet, "/v1/snapshot", flags, nil)
	if err != nil {
		return ReadMeta{}, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return ReadMeta{}, fmt.Errorf("read snapshot from %s: %w", c.base, err)
	}
	return readMeta(resp), nil
}

// RestoreSnapshot replaces the whole state with the snapshot read from r, in one Raft entry, and
// returns the table's diff.
func (c *Client) RestoreSnapshot(ctx context.Context, r io.Reader) (TableDiff, error) {
	var out TableDiff
	_, err := c.do(ctx, http.MethodPut, "/v1/snapshot", nil, r, &out)
	return out, err
}

// urlPath joins escaped path segments under /v1/.
// CreateToken creates an ACL token; the answer holds its secret, which is shown only this once.
func (c *Client) CreateToken(ctx context.Context, name string, scope fsm.Scope) (NewToken, error) {
	var out NewToken
	_, err := c.do(ctx, http.MethodPost, "/v1/acl/tokens", nil, TokenRequest{Name: name, Scope: scope}, &out)
	return out, err
}

// Tokens lists the ACL tokens (accessors, names and scopes; never secrets).
func (c *Client) Tokens(ctx context.Context) ([]TokenInfo, error) {
	var out []TokenInfo
	_, err := c.read(ctx, "/v1/acl/tokens", ReadOptions{}, &out)
	return out, err
}

// DeleteToken removes the ACL token with this accessor.
func (c *Client) DeleteToken(ctx context.Context, accessor string) (WriteResult, error) {
	return c.write(ctx, http.MethodDelete, urlPath("acl", "tokens", accessor), nil)
}

func urlPath(segments ...string) string {
	var b strings.Builder
	b.WriteString("/v1")
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}

func (c *Client) read(ctx context.Context, path string, opts ReadOptions, out any) (ReadMeta, error) {
	var flags []string
	if opts.Consistent {
		flags = []string{"consistent"}
	}
	return c.do(ctx, http.MethodGet, path, flags, nil, out)
}

func (c *Client) write(ctx context.Context, method, path string, body any) (WriteResult, error) {
	var out WriteResult
	_, err := c.do(ctx, method, path, nil, body, &out)
	return out, err
}

// do sends a request and decodes a 2xx answer's JSON into out (if not nil). A body that is not
// an io.Reader is sent as JSON.
func (c *Client) do(ctx context.Context, method, path string, flags []string, body any, out any) (ReadMeta, error) {
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case io.Reader:
		r = b
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			return ReadMeta{}, fmt.Errorf("%s %s: encode %T: %w", method, c.base+path, b, err)
		}
		r = bytes.NewReader(enc)
	}
	resp, err := c.send(ctx, method, path, flags, r)
	if err != nil {
		return ReadMeta{}, err
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return ReadMeta{}, fmt.Errorf("%s %s: decode answer: %w", method, c.base+path, err)
		}
	}
	return readMeta(resp), nil
}

// send sends a request with the given boolean query flags ("?plan&consistent") and returns a
// 2xx response, whose body the caller closes, or an *Error.
func (c *Client) send(ctx context.Context, method, path string, flags []string, body io.Reader) (*http.Response, error) {
	u := c.base + path
	if len(flags) > 0 {
		u += "?" + strings.Join(flags, "&")
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, u, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.actor != "" {
		req.Header.Set(HeaderActor, c.actor)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, responseError(method, u, resp)
}

// responseError reads a non-2xx answer into an *Error, keeping the server's message; a body that
// is not the API's JSON (a proxy's page) becomes the message as text.
func responseError(method, u string, resp *http.Response) *Error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &Error{}
	if json.Unmarshal(raw, e) != nil || e.Message == "" {
		e = &Error{Message: fmt.Sprintf("%s %s: %s", method, u, resp.Status)}
		if text := strings.TrimSpace(string(raw)); text != "" {
			e.Message += ": " + text
		}
	}
	e.StatusCode = resp.StatusCode
	return e
}

func readMeta(resp *http.Response) ReadMeta {
	index, _ := strconv.ParseUint(resp.Header.Get(HeaderIndex), 10, 64)
	return ReadMeta{Index: index, Consistency: resp.Header.Get(HeaderConsistency)}
}

// Ready asks whether the agent is ready (GET /v1/agent/ready). A not-ready agent is an answer
// (Ready false, with the reasons), not an error.
func (c *Client) Ready(ctx context.Context) (Readiness, error) {
	u := c.base + "/v1/agent/ready"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Readiness{}, fmt.Errorf("GET %s: %w", u, err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return Readiness{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
		return Readiness{}, responseError(http.MethodGet, u, resp)
	}
	var r Readiness
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return Readiness{}, fmt.Errorf("GET %s: decode answer: %w", u, err)
	}
	return r, nil
}
