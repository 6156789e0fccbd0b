package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/troop-lb/troop/api"
	"github.com/troop-lb/troop/fsm"
)

// TestConsoleInBrowser drives the web console (/ui/) of a real `troop agent -dev` in headless
// Chromium, with ACLs on: an unknown token is sent back to the login, a read token sees the pool but
// its drain is refused (and changes nothing), and with an operator token it finds the services
// the API created, drains a real server
// through the confirmation dialog, sees the change in the page and through the API, checks that
// a 390x844 phone screen does not scroll sideways, and fails on any error the page logs or throws.
// Screenshots go to $TROOP_ARTIFACTS (default: the test's temporary directory).
//
// It needs Debian's chromium package: installed here when missing if the test runs as root (make
// deps installs it for CI); otherwise the test skips, saying so.
func TestConsoleInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the browser test starts Chromium")
	}
	browser := chromium(t)
	started := time.Now()
	defer func() { t.Logf("browser test took %s", time.Since(started).Round(time.Millisecond)) }()

	artifacts := os.Getenv("TROOP_ARTIFACTS")
	if artifacts == "" {
		artifacts = t.TempDir()
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}

	base, bootstrap := startDevAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client := api.NewClient(base, nil).WithToken(bootstrap)
	tokens := map[fsm.Scope]string{}
	for _, scope := range []fsm.Scope{fsm.ScopeRead, fsm.ScopeOperator} {
		tok, err := client.CreateToken(ctx, "console-"+string(scope), scope)
		if err != nil {
			t.Fatalf("create a %s token: %v", scope, err)
		}
		tokens[scope] = tok.Secret
	}
	weight2 := 2
	if _, err := client.PutService(ctx, fsm.Service{
		Name: "web", VIP: netip.MustParseAddr("192.0.2.6"), Port: 80, Protocol: fsm.TCP,
		Reals: []fsm.Real{{Address: netip.MustParseAddr("192.0.2.21")}, {Address: netip.MustParseAddr("192.0.2.22"), Weight: &weight2}},
	}); err != nil {
		t.Fatalf("create the service: %v", err)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.Flag("headless", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 900),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()

	// Open the tab first, so that the listener misses nothing of the page.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	var mu sync.Mutex
	var pageErrors []string
	err := chromedp.Listen(bctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *cdpruntime.EventConsoleAPICalled:
			if ev.Type == cdpruntime.ConsoleAPICalledTypeError || ev.Type == cdpruntime.ConsoleAPICalledTypeAssert {
				var args []string
				for _, a := range ev.Args {
					args = append(args, fmt.Sprintf("%s%s", a.Value, a.Description))
				}
				pageErrors = append(pageErrors, fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " ")))
			}
		case *cdpruntime.EventExceptionThrown:
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			pageErrors = append(pageErrors, fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber, msg))
		}
	})
	if err != nil {
		t.Fatal(err)
	}

	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.TrimSpace(v)
	}
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return chromedp.Void{}, fmt.Errorf("screenshot %s: %w", name, err)
			}
			p := filepath.Join(artifacts, name+".png")
			if err := os.WriteFile(p, png, 0o644); err != nil {
				return chromedp.Void{}, err
			}
			t.Logf("screenshot: %s", p)
			return chromedp.Void{}, nil
		}
	}
	const (
		real1   = `tr[data-real="192.0.2.21:80"]`
		drain   = real1 + ` button[data-action="drain"]`
		enable  = real1 + ` button[data-action="enable"]`
		members = `#members-table tr[data-member="dev"]`
	)

	login := func(token string) []chromedp.Action[chromedp.Void] {
		return []chromedp.Action[chromedp.Void]{
			chromedp.WaitVisible(chromedp.CSS("#token")),
			func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
				_, err := chromedp.Evaluate[bool](`(document.getElementById("token").value = "", true)`)(ctx, tg)
				return chromedp.Void{}, err
			},
			chromedp.SendKeys(chromedp.CSS("#token"), token),
			chromedp.Click(chromedp.CSS("#login-submit")),
		}
	}
	refusedAtLogin := func(what string) {
		t.Helper()
		do(what, chromedp.WaitVisible(chromedp.CSS("#login-message")))
		var msg string
		waitFor(t, 5*time.Second, what+": the login screen says why", func() error {
			if msg = text("#login-message"); msg == "" {
				return errors.New("no message yet")
			}
			return nil
		})
		t.Logf("%s: the console is back at its login: %q", what, msg)
	}

	// A token the pool does not know gets no further than the login screen.
	do("open the console", chromedp.Navigate(base+"/")) // redirected to /ui/
	do("log in with an unknown token", login("not-a-token-of-this-pool")...)
	refusedAtLogin("an unknown token")

	// A read token sees everything and changes nothing: its drain is refused (403).
	do("log in with a read token", append(login(tokens[fsm.ScopeRead]), chromedp.WaitVisible(chromedp.CSS(members)))...)
	do("read token: services page",
		chromedp.Click(chromedp.CSS(`#nav a[data-page="services"]`)),
		chromedp.WaitVisible(chromedp.CSS(drain)),
		chromedp.Click(chromedp.CSS(drain)),
		chromedp.WaitVisible(chromedp.CSS("#confirm-ok")),
		chromedp.Click(chromedp.CSS("#confirm-ok")),
	)
	refusedAtLogin("a drain with a read token")
	if svc, _, err := client.Service(ctx, "web", api.ReadOptions{}); err != nil || svc.Reals[0].Admin != fsm.Enabled {
		t.Fatalf("after a read token's drain the API says %+v (%v), want every real enabled", svc.Reals, err)
	}

	do("log in with an operator token", append(login(tokens[fsm.ScopeOperator]),
		chromedp.Click(chromedp.CSS(`#nav a[data-page="overview"]`)),
		chromedp.WaitVisible(chromedp.CSS(members)),
		shot("overview"))...)
	token, err := chromedp.Run(bctx, chromedp.Evaluate[string](`sessionStorage.getItem("troop.token")`))
	if row := text(members); !strings.Contains(row, "leader") || token != tokens[fsm.ScopeOperator] || err != nil {
		t.Errorf("overview row %q, stored token %q (%v); want the dev director as leader and the token", row, token, err)
	}

	do("services page",
		chromedp.Click(chromedp.CSS(`#nav a[data-page="services"]`)),
		chromedp.WaitVisible(chromedp.CSS(drain)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-real="192.0.2.22:80"]`)),
		shot("services"),
	)

	do("drain from the console",
		chromedp.Click(chromedp.CSS(drain)),
		chromedp.WaitVisible(chromedp.CSS("#confirm-ok")),
	)
	if req := text("#confirm-request"); !strings.Contains(req, "PUT /v1/services/web/reals/") || !strings.Contains(req, `"draining"`) {
		t.Errorf("the confirmation shows %q; want the PUT .../admin request with draining", req)
	}
	do("confirm the drain",
		chromedp.Click(chromedp.CSS("#confirm-ok")),
		chromedp.WaitVisible(chromedp.CSS(enable)),
	)
	if admin := text(real1 + " .admin"); admin != "draining" {
		t.Errorf("the page shows admin %q after the drain, want draining", admin)
	}
	svc, _, err := client.Service(ctx, "web", api.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range svc.Reals {
		want := fsm.Enabled
		if r.ID() == "192.0.2.21:80" {
			want = fsm.Draining
		}
		if r.Admin != want {
			t.Errorf("the API says %s is %s, want %s", r.ID(), r.Admin, want)
		}
	}

	do("events page",
		chromedp.Click(chromedp.CSS(`#nav a[data-page="events"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#events li.leadership`)),
		shot("events"),
	)

	// A phone: nothing may stick out to the right of a 390 px wide screen, on any page.
	do("phone viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	for _, page := range []string{"overview", "services", "events"} {
		do("phone "+page,
			chromedp.Click(chromedp.CSS(`#nav a[data-page="`+page+`"]`)),
			chromedp.Sleep(100*time.Millisecond),
			shot(page+"-390"),
		)
		overflow, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`(() => {
			const w = document.documentElement.clientWidth, out = [];
			if (document.documentElement.scrollWidth > w) out.push("document " + document.documentElement.scrollWidth + " > " + w);
			for (const el of document.querySelectorAll("body *")) {
				const r = el.getBoundingClientRect();
				if (r.width > 0 && r.right > w + 0.5) out.push(el.tagName + (el.id ? "#" + el.id : "") + "." + el.className + " right " + Math.round(r.right));
			}
			return out.slice(0, 10);
		})()`))
		if err != nil {
			t.Fatalf("measure %s: %v", page, err)
		}
		if len(overflow) > 0 {
			t.Errorf("%s at 390x844 overflows horizontally: %v", page, overflow)
		}
	}

	mu.Lock()
	defer mu.Unlock()
	if len(pageErrors) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(pageErrors, "\n"))
	}
}

// chromium finds Debian's Chromium, installing the package when missing if we are root.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("chromium is not installed and installing it needs root: run `apt-get install chromium` (make deps does, as root)")
	}
	t.Log("installing Debian's chromium package for the browser test")
	install := func() ([]byte, error) {
		cmd := exec.Command("apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		return cmd.CombinedOutput()
	}
	if out, err := install(); err != nil {
		// A fresh machine has no package lists yet.
		if out2, err2 := exec.Command("apt-get", "update", "-qq").CombinedOutput(); err2 != nil {
			t.Fatalf("apt-get install chromium: %v\n%s\napt-get update: %v\n%s", err, out, err2, out2)
		}
		if out, err := install(); err != nil {
			t.Fatalf("apt-get install chromium: %v\n%s", err, out)
		}
	}
	p, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium installed but not on PATH: %v", err)
	}
	return p
}

// startDevAgent runs `troop agent -dev` with its API on a free loopback port and returns the
// API's URL, with ACLs on and the admin bootstrap token it returns too, once the agent is ready. The agent is stopped (SIGTERM) when the test ends.
func startDevAgent(t *testing.T) (base, bootstrap string) {
	t.Helper()
	secret := make([]byte, 24)
	rand.Read(secret)
	bootstrap = hex.EncodeToString(secret)
	tokenFile := filepath.Join(t.TempDir(), "bootstrap.token")
	if err := os.WriteFile(tokenFile, []byte(bootstrap+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	logPath := filepath.Join(t.TempDir(), "agent.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(troopBinary(t), "agent", "-dev", "-api-address", addr, "-bootstrap-token-file", tokenFile)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the agent: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		logf.Close()
		if t.Failed() {
			out, _ := os.ReadFile(logPath)
			t.Logf("agent log:\n%s", tail(string(out), 40))
		}
	})
	base = "http://" + addr
	client := api.NewClient(base, &http.Client{Timeout: 2 * time.Second})
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		r, err := client.Ready(ctx)
		cancel()
		if err == nil && r.Ready {
			return base, bootstrap
		}
		select {
		case err := <-exited:
			out, _ := os.ReadFile(logPath)
			t.Fatalf("the agent exited: %v\n%s", err, out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent on %s is not ready after 15 s: %v %+v", addr, err, r)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
