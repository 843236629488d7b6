package console

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The browser suite drives Debian's headless Chromium with chromedp, as a
// person uses the console: typing, clicking, reading what the page says.
// It never skips: a machine without Chromium fails here, with the
// command that installs it (.ci/run runs it).

// chromiumPath is where Debian's chromium package puts the browser
// (QXTD_CHROMIUM overrides it).
func chromiumPath() string {
	if p := os.Getenv("QXTD_CHROMIUM"); p != "" {
		return p
	}
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	return ""
}

// browser is one test's window in the shared headless Chromium: a
// browser context of its own (as an incognito window), so no cookie or
// storage crosses tests.
type browser struct {
	t      *testing.T
	ctx    context.Context
	mu     sync.Mutex
	errors []string // console errors, exceptions and CSP violations seen
}

// shotDir is where `make screenshots` collects a PNG of every page.
var shotDir = os.Getenv("QXTD_SCREENSHOTS")

// chromium is the one Chromium the browser tests of this test binary
// share (TestMain stops it). A launch costs more CPU than most tests'
// pages (about a second: a full browser with its own GPU and network
// processes), and the suite opened some thirty.
var chromium struct {
	mu     sync.Mutex
	ctx    context.Context // the browser's; done when it was stopped or died
	cancel context.CancelFunc
}

func TestMain(m *testing.M) {
	code := m.Run()
	chromium.mu.Lock()
	if chromium.cancel != nil {
		chromium.cancel()
	}
	chromium.mu.Unlock()
	os.Exit(code)
}

// sharedChromium is the running shared Chromium, started if there is
// none or the last one died (a test after it gets a new one).
func sharedChromium(t *testing.T) context.Context {
	t.Helper()
	chromium.mu.Lock()
	defer chromium.mu.Unlock()
	if chromium.ctx != nil && chromium.ctx.Err() == nil {
		return chromium.ctx
	}
	if chromium.cancel != nil { // one that died: its process reaped, its profile removed
		chromium.cancel()
		chromium.ctx, chromium.cancel = nil, nil
	}
	path := chromiumPath()
	if path == "" {
		t.Fatal("headless Chromium is required for the browser tests: apt-get install -y chromium (or set QXTD_CHROMIUM)")
	}
	profile, err := os.MkdirTemp("", "qxtd-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 900),
		// The machine's network is closed: no background connections.
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("lang", "zh-CN"),
	}
	// Start the browser now, so a broken install fails here, clearly. A
	// launch that crashes (Chromium now and then dies in its first
	// moments on a loaded machine: "chrome failed to start" with a
	// crashpad dump) is tried again, twice at most: the launch is not
	// what these tests test.
	for try := 1; ; try++ {
		actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
		ctx, cancel := chromedp.NewContext(actx)
		err := chromedp.Do(ctx)
		if err == nil {
			chromium.ctx = ctx
			chromium.cancel = func() {
				cancel()
				acancel()
				os.RemoveAll(profile)
			}
			return ctx
		}
		cancel()
		acancel()
		if try == 3 {
			os.RemoveAll(profile)
			t.Fatalf("starting %s: %v", path, err)
		}
		t.Logf("starting %s (try %d): %v", path, try, err)
	}
}

// stopChromium stops the shared Chromium if it is still shared's: the
// next test starts another.
func stopChromium(shared context.Context) {
	chromium.mu.Lock()
	defer chromium.mu.Unlock()
	if chromium.ctx == shared {
		chromium.cancel()
		chromium.ctx, chromium.cancel = nil, nil
	}
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	var ctx context.Context
	var cancel context.CancelFunc
	for try := 1; ; try++ {
		shared := sharedChromium(t)
		ctx, cancel = chromedp.NewContext(shared, chromedp.WithNewBrowserContext())
		err := chromedp.Do(ctx)
		if err == nil {
			break
		}
		cancel()
		if try == 2 {
			t.Fatalf("a window of its own in Chromium: %v", err)
		}
		// A browser that cannot open a window is not one to go on with
		// (it died under an earlier test): a new one, once.
		t.Logf("a window of its own in Chromium: %v; starting it again", err)
		stopChromium(shared)
	}
	b := &browser{t: t, ctx: ctx}
	// Every console error, uncaught exception and CSP violation the pages
	// cause fails the test at its end.
	msgs := chromedp.Console(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range msgs {
			if err != nil {
				return
			}
			if formAnswer(m) {
				continue
			}
			if m.IsException() || m.Type == chromedp.ConsoleError {
				b.record(m.String())
			}
		}
	}()
	t.Cleanup(func() {
		cancel() // closes the window and disposes of its browser context
		<-done
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, e := range b.errors {
			t.Errorf("browser console: %s", e)
		}
	})
	return b
}

func (b *browser) record(s string) {
	b.mu.Lock()
	b.errors = append(b.errors, s)
	b.mu.Unlock()
}

// run runs actions with a deadline; a failure fails the test with what
// the page showed.
func (b *browser) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	var err error
	for _, a := range actions {
		// An action that finds its node and then loses it to an htmx
		// swap or a navigation (the page still settling after the last
		// wait) fails before it did anything: it is run again.
		for {
			err = chromedp.Do(ctx, a)
			if err == nil || !staleNode(err) || ctx.Err() != nil {
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond): // poll: the swap has no event to wait on here
			}
		}
		if err != nil {
			break
		}
	}
	if err != nil {
		tctx, tcancel := context.WithTimeout(b.ctx, 3*time.Second)
		body, _ := chromedp.Run(tctx, chromedp.Text(chromedp.CSS("body")))
		tcancel()
		b.t.Fatalf("%s: %v\npage text:\n%s", what, err, body)
	}
}

// staleNode reports whether err is Chromium's answer for a node, page or
// script context that went away under the action — an htmx swap or a
// navigation still under way ("No node with given id found", "Could not
// find node with given id", "Not attached to an active page", "Cannot
// find context with specified id"): the action did nothing and can run
// again.
func staleNode(err error) bool {
	s := err.Error()
	return strings.Contains(s, "node with given id") || strings.Contains(s, "Not attached to an active page") ||
		strings.Contains(s, "context with specified id")
}

// selected is the value and the text of the option chosen in the select
// sel.
func (b *browser) selected(sel string) (value, text string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	read := fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e && e.selectedOptions.length ? [e.value, e.selectedOptions[0].text] : null; })()`, sel)
	got, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](read))
	if err != nil || len(got) != 2 {
		b.t.Fatalf("read the choice of %s: %v %v", sel, got, err)
	}
	return got[0], got[1]
}

// count is how many elements of the page match sel.
func (b *browser) count(sel string) int {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf(`document.querySelectorAll(%q).length`, sel)))
	if err != nil {
		b.t.Fatalf("count %s: %v", sel, err)
	}
	return n
}

// docParsed is true (JavaScript) once the page's HTML has been parsed
// whole. Chromium parses a page as it arrives and runs scripts between
// the parser's turns, so an element above a table can show while the
// table has only its first rows: TestBrowserDeskWorkflow once read one
// row of five beside the notice above them (fresh-clone CI at c7cfe81).
const docParsed = `document.readyState !== "loading"`

// text is the visible text of the first element matching sel.
func (b *browser) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	// One evaluation finds the element and reads it: a query and a
	// separate read (chromedp.Text) fail with "No node with given id"
	// when htmx swaps the element in between (a page settling in place).
	// Not while the page is still being parsed: a table read then may
	// hold its first rows only (docParsed).
	read := fmt.Sprintf(`(() => { if (!(%s)) return null; const e = document.querySelector(%q); return e && e.offsetParent !== null ? e.innerText : null; })()`, docParsed, sel)
	for {
		s, err := chromedp.Run(ctx, chromedp.Evaluate[*string](read))
		if err == nil && s != nil {
			return *s
		}
		if ctx.Err() != nil {
			b.t.Fatalf("read %s: not visible (%v)", sel, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond): // poll: nothing to wait on for "visible"
		}
	}
}

// waitText waits until the element sel shows want: a page updated in
// place (htmx) is watched for DOM changes; with reload set, the page is
// reloaded until it shows it (a message's state changing on the server).
func (b *browser) waitText(sel, want string, reload bool) {
	b.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	shows := fmt.Sprintf(`(() => { if (!(%s)) return false; const e = document.querySelector(%q); return !!e && e.offsetParent !== null && e.innerText.includes(%q); })()`, docParsed, sel, want)
	for {
		ctx, cancel := context.WithDeadline(b.ctx, deadline)
		var err error
		if reload {
			ctx2, cancel2 := context.WithTimeout(ctx, 2*time.Second)
			_, err = chromedp.Run(ctx2, chromedp.Poll[bool](shows, chromedp.WithPollingMutation(), chromedp.WithPollingTimeout(0)))
			cancel2()
		} else {
			_, err = chromedp.Run(ctx, chromedp.Poll[bool](shows, chromedp.WithPollingMutation(), chromedp.WithPollingTimeout(0)))
		}
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tctx, tcancel := context.WithTimeout(b.ctx, 3*time.Second)
			last, _ := chromedp.Run(tctx, chromedp.Text(chromedp.CSS("body")))
			tcancel()
			b.t.Fatalf("%s never showed %q (%v); page text:\n%s", sel, want, err, last)
		}
		if reload {
			b.run("reload", chromedp.Reload())
		}
	}
}

// login opens the login page and logs in as systemID.
func (b *browser) login(base, systemID string) {
	b.t.Helper()
	b.run("log in as "+systemID,
		chromedp.Navigate(base+"/login"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=system_id]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=system_id]`), systemID),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), password),
		chromedp.Click(chromedp.CSS(`form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`nav.side`)),
	)
}

// opsLogin opens the desk's page at pageURL, logs in with the operator
// token there, and waits for the page asked for (the login goes back to
// it).
func (b *browser) opsLogin(pageURL string) {
	b.t.Helper()
	b.opsLoginWith(pageURL, opsToken_)
}

// opsLoginWith is opsLogin with token: an account manager's own
// (api.Config.Managers).
func (b *browser) opsLoginWith(pageURL, token string) {
	b.t.Helper()
	b.run("the account manager opens "+pageURL+" and logs in",
		chromedp.Navigate(pageURL),
		chromedp.WaitVisible(chromedp.CSS(`input[name=token]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=token]`), token),
		chromedp.Click(chromedp.CSS(`form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`nav.side`)),
	)
}

// shot writes a PNG of the whole page to $QXTD_SCREENSHOTS/name.png
// (`make screenshots`); without the variable it does nothing.
func (b *browser) shot(name string) {
	b.t.Helper()
	if shotDir == "" {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.MkdirAll(shotDir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(shotDir, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// mobile makes the window phone-sized (and back with desktop).
func (b *browser) mobile() {
	b.run("phone size", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
}

// desktop is the window of newBrowser again: EmulateReset alone leaves
// the phone's width, so the desktop size is set explicitly.
func (b *browser) desktop() {
	b.run("desktop size", chromedp.EmulateReset(), chromedp.EmulateViewport(1280, 900))
}

// formAnswer tells the browser's log entry for a page answered with a
// 4xx status — a refused form (422), a failed login (401) — which is the
// console working as meant, not a defect of the page.
func formAnswer(m chromedp.ConsoleMessage) bool {
	return m.Source == "network" && strings.Contains(m.Text, "the server responded with a status of 4")
}
