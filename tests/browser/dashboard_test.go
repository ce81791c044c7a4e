package browser

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
)

// chromiumPath finds the browser: LEDGERQ_CHROMIUM, else chromium on PATH.
// Without one the test fails under CI=true and is skipped elsewhere.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("LEDGERQ_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const hint = "chromium not found (install it: sudo apt-get install -y chromium, or set LEDGERQ_CHROMIUM)"
	if os.Getenv("CI") == "true" {
		t.Fatal(hint)
	}
	t.Skip(hint)
	return ""
}

// browserContext starts a headless Chromium with a fresh profile and returns
// a chromedp context for one tab. The flags keep the browser off the
// network except for the page under test: no QUIC, no component or sync
// traffic, no first-run work.
func browserContext(t *testing.T, parent context.Context) (context.Context, context.CancelFunc) {
	t.Helper()
	alloc, cancelAlloc := chromedp.NewExecAllocator(parent,
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox, // tests run as root in CI containers
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("no-proxy-server", true),
		chromedp.WindowSize(1440, 900),
		chromedp.UserDataDir(t.TempDir()),
	)
	ctx, cancelTab := chromedp.NewContext(alloc)
	return ctx, func() { cancelTab(); cancelAlloc() }
}

// consoleWatch records the page's console errors, uncaught exceptions and
// browser-log errors. chromedp.Console merges the three protocol events
// runtime.consoleAPICalled, runtime.exceptionThrown and log.entryAdded.
type consoleWatch struct {
	mu       sync.Mutex
	problems []string
	err      error
	marks    chan string // texts of console.info calls, to sync with the page
	done     chan struct{}
}

func watchConsole(ctx context.Context) *consoleWatch {
	w := &consoleWatch{marks: make(chan string, 16), done: make(chan struct{})}
	// Subscribe now, before the page loads, so nothing is missed.
	messages := chromedp.Console(ctx)
	go func() {
		defer close(w.done)
		for m, err := range messages {
			if err != nil {
				if ctx.Err() == nil {
					w.mu.Lock()
					w.err = err
					w.mu.Unlock()
				}
				return
			}
			switch {
			case m.IsException() || m.Type == chromedp.ConsoleError:
				where := m.URL
				if where != "" {
					where = fmt.Sprintf(" at %s:%d:%d", m.URL, m.Line+1, m.Column+1)
				}
				w.mu.Lock()
				w.problems = append(w.problems, fmt.Sprintf("%s%s", m, where))
				w.mu.Unlock()
			case m.Type == chromedp.ConsoleInfo:
				select {
				case w.marks <- m.Text:
				default:
				}
			}
		}
	}()
	return w
}

// Problems returns what was recorded so far.
func (w *consoleWatch) Problems() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := append([]string(nil), w.problems...)
	if w.err != nil {
		out = append(out, "reading the console: "+w.err.Error())
	}
	return out
}

// settle writes a marker to the console and waits until the watcher has
// read it: every message the page wrote before is then recorded.
func (w *consoleWatch) settle(t *testing.T, ctx context.Context) {
	t.Helper()
	mark := "ledgerq-test-mark-" + strconv.FormatInt(time.Now().UnixNano(), 10)
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`console.info(`+strconv.Quote(mark)+`)`)); err != nil {
		t.Fatalf("console marker: %v", err)
	}
	timeout := time.After(5 * time.Second)
	for {
		select {
		case got := <-w.marks:
			if got == mark {
				return
			}
		case <-timeout:
			t.Fatal("the console marker did not come back within 5 s")
		}
	}
}

// page drives one dashboard tab.
type page struct {
	t       *testing.T
	ctx     context.Context
	console *consoleWatch
}

// waitFor polls a JavaScript predicate until it is true. On timeout it
// fails the test with what the page shows and any console problems.
func (p *page) waitFor(what, predicate string, within time.Duration) {
	p.t.Helper()
	_, err := chromedp.Run(p.ctx, chromedp.Poll[bool](predicate,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(within)))
	if err == nil {
		return
	}
	state, _ := chromedp.Run(p.ctx, chromedp.Evaluate[string](pageStateJS))
	if errors.Is(err, chromedp.ErrPollingTimeout) {
		p.t.Fatalf("waiting %v for %s: not reached\npage: %s\nconsole problems: %q", within, what, state, p.console.Problems())
	}
	p.t.Fatalf("waiting for %s: %v\npage: %s\nconsole problems: %q", what, err, state, p.console.Problems())
}

// cell is the row of queue's stat cell (data-value and text).
func (p *page) cell(queue, stat string) (value, text string) {
	p.t.Helper()
	got, err := chromedp.Run(p.ctx, chromedp.Evaluate[[]string](fmt.Sprintf(
		`(() => { const c = document.querySelector(%s); return c ? [c.dataset.value, c.textContent] : ["<none>", "<none>"]; })()`,
		strconv.Quote(cellSelector(queue, stat)))))
	if err != nil || len(got) != 2 {
		p.t.Fatalf("reading %s/%s: %v", queue, stat, err)
	}
	return got[0], got[1]
}

// count is the number of elements matching a CSS selector.
func (p *page) count(selector string) int {
	p.t.Helper()
	n, err := chromedp.Run(p.ctx, chromedp.Evaluate[int](`document.querySelectorAll(`+strconv.Quote(selector)+`).length`))
	if err != nil {
		p.t.Fatalf("counting %s: %v", selector, err)
	}
	return n
}

// colorScheme makes the page see prefers-color-scheme: scheme.
func (p *page) colorScheme(scheme string) {
	p.t.Helper()
	_, err := chromedp.Call(p.ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
	})
	if err != nil {
		p.t.Fatalf("emulate prefers-color-scheme %s: %v", scheme, err)
	}
}

// screenshot saves the whole page as a PNG at path and logs where it is.
func (p *page) screenshot(path string) {
	p.t.Helper()
	shot, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		p.t.Fatalf("save the screenshot: %v", err)
	}
	p.t.Logf("screenshot: %s (%d bytes)", path, len(shot))
}

func cellSelector(queue, stat string) string {
	return fmt.Sprintf(`tr[data-queue=%s] [data-stat=%s]`, strconv.Quote(queue), strconv.Quote(stat))
}

// cellIs is a predicate: the cell's raw number is want.
func cellIs(queue, stat string, want int) string {
	return fmt.Sprintf(`(() => { const c = document.querySelector(%s); return c !== null && c.dataset.value === %q; })()`,
		strconv.Quote(cellSelector(queue, stat)), strconv.Itoa(want))
}

// pageStateJS summarises the page for a failure message.
const pageStateJS = `JSON.stringify({
  conn: document.getElementById("conn-state").dataset.state,
  notice: document.getElementById("notice").hidden ? "" : document.getElementById("notice").textContent,
  rows: Array.from(document.querySelectorAll("tr[data-queue]")).map((tr) =>
    [tr.dataset.queue, Object.fromEntries(Array.from(tr.querySelectorAll("[data-stat][data-value]")).map((c) => [c.dataset.stat, c.dataset.value]))]),
  feed: document.querySelectorAll("#feed li").length,
  position: document.getElementById("last-position").textContent,
})`

// TestDashboardFollowsTheQueue opens the dashboard of a real server in
// headless Chromium, connects with a pasted token, and checks that what the
// test does over the HTTP API shows up in the queue's row, the totals and
// the event feed without a reload, with no console error or uncaught
// exception on the way.
func TestDashboardFollowsTheQueue(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser; skipped with -short")
	}
	chromiumPath(t) // skip or fail before starting anything
	srv := startServer(t)
	tok := srv.Token("dashboard", "admin")
	const queue = "orders"
	srv.Must("POST", "/v1/queues", tok, map[string]any{"name": queue}, 201)

	// One deadline for the whole browser session.
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	bctx, closeBrowser := browserContext(t, ctx)
	p := &page{t: t, ctx: bctx, console: watchConsole(bctx)}
	defer func() { closeBrowser(); <-p.console.done }()

	p.colorScheme("light")
	if err := chromedp.Do(bctx, chromedp.Navigate(srv.URL+"/")); err != nil {
		t.Fatalf("open the dashboard: %v", err)
	}
	p.waitFor("the idle state before a token", `document.getElementById("conn-state").dataset.state === "idle"`, 5*time.Second)

	// Paste the token (Input.insertText is what a paste does) and connect.
	if err := chromedp.Do(bctx, chromedp.Focus(chromedp.ID("token-input"))); err != nil {
		t.Fatalf("focus the token field: %v", err)
	}
	if _, err := chromedp.Call(bctx, input.InsertText, input.InsertTextParams{Text: tok}); err != nil {
		t.Fatalf("paste the token: %v", err)
	}
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.ID("token-save"))); err != nil {
		t.Fatalf("press Connect: %v", err)
	}
	p.waitFor("#conn-state[data-state=live]", `document.querySelector('#conn-state[data-state="live"]') !== null`, 10*time.Second)
	p.waitFor("the queue's row", cellIs(queue, "ready", 0), 5*time.Second)

	// Publish over the API while the page is live: ten batches and some
	// single messages, so that the counts need thousands separators.
	const batches, singles = 10, 30
	const published = batches*100 + singles
	for b := range batches {
		msgs := make([]map[string]any, 100)
		for i := range msgs {
			msgs[i] = map[string]any{"body": fmt.Sprintf("batch %d message %d", b, i)}
		}
		srv.Must("POST", "/v1/queues/"+queue+"/messages:batch", tok, map[string]any{"messages": msgs}, 201)
	}
	for i := range singles {
		srv.Must("POST", "/v1/queues/"+queue+"/messages", tok, map[string]any{"body": fmt.Sprintf("single %d", i)}, 201)
	}
	p.waitFor(fmt.Sprintf("ready = %d", published), cellIs(queue, "ready", published), 10*time.Second)
	if v, text := p.cell(queue, "published_total"); v != strconv.Itoa(published) || text != "1,030" {
		t.Errorf("published cell: value %q text %q, want %d shown as 1,030", v, text, published)
	}

	// Lease some, acknowledge a few of them.
	const leased, acked = 10, 4
	var receipts []string
	for len(receipts) < leased {
		var got struct {
			Messages []struct {
				Receipt string `json:"receipt"`
			} `json:"messages"`
		}
		r := srv.Must("POST", "/v1/queues/"+queue+"/receive", tok,
			map[string]any{"max_messages": leased - len(receipts), "visibility_timeout_ms": 600000}, 200)
		if err := r.Decode(&got); err != nil {
			t.Fatal(err)
		}
		if len(got.Messages) == 0 {
			t.Fatalf("receive returned nothing with %d messages ready", published-len(receipts))
		}
		for _, m := range got.Messages {
			receipts = append(receipts, m.Receipt)
		}
	}
	var lastAck struct {
		Position int64 `json:"position"`
	}
	for _, r := range receipts[:acked] {
		if err := srv.Must("POST", "/v1/queues/"+queue+"/ack", tok, map[string]any{"receipt": r}, 200).Decode(&lastAck); err != nil {
			t.Fatal(err)
		}
	}
	p.waitFor("acked = 4", cellIs(queue, "acked_total", acked), 10*time.Second)
	p.waitFor("in flight = 6", cellIs(queue, "in_flight", leased-acked), 5*time.Second)
	p.waitFor("ready = 1,020", cellIs(queue, "ready", published-leased), 5*time.Second)
	for stat, want := range map[string]string{"in_flight": "6", "acked_total": "4", "ready": "1,020", "dead_lettered_total": "0"} {
		if _, text := p.cell(queue, stat); text != want {
			t.Errorf("%s cell shows %q, want %q", stat, text, want)
		}
	}
	p.waitFor("the In flight total", `document.querySelector('[data-total="in_flight"]').dataset.value === "6"`, 5*time.Second)

	// The feed shows the message events as they happened, newest first.
	p.waitFor("4 acked events in the feed",
		`document.querySelectorAll('#feed li[data-queue="orders"] .badge[data-state="acked"]').length === 4`, 5*time.Second)
	if n := p.count(`#feed li[data-queue="orders"]`); n < leased+acked {
		t.Errorf("feed has %d entries for %s, want at least %d", n, queue, leased+acked)
	}
	if n := p.count(`#feed li`); n > 200 {
		t.Errorf("feed has %d entries, more than its cap of 200", n)
	}
	posText, err := chromedp.Run(bctx, chromedp.TextContent(chromedp.ID("last-position")))
	if err != nil {
		t.Fatalf("read #last-position: %v", err)
	}
	if pos, err := strconv.ParseInt(strings.ReplaceAll(posText, ",", ""), 10, 64); err != nil || pos < lastAck.Position {
		t.Errorf("#last-position shows %q, want at least %d (the last ack's position)", posText, lastAck.Position)
	}

	// The per-second sampler turns totals into rates once two samples
	// exist; by then the sparkline has been drawn too.
	p.waitFor("the Pub/s rate", `document.querySelector('tr[data-queue="orders"] [data-stat="published_rate"]').dataset.value !== ""`, 5*time.Second)
	if v, _ := p.cell(queue, "published_rate"); v == "" || strings.HasPrefix(v, "-") {
		t.Errorf("Pub/s cell value %q, want a rate of at least 0", v)
	}

	dir := os.Getenv("LEDGERQ_BROWSER_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	p.screenshot(filepath.Join(dir, "dashboard.png"))
	// The dark theme is the page's default; switching redraws the charts
	// with the new palette (a matchMedia listener), so it runs too.
	p.colorScheme("dark")
	p.waitFor("the dark palette", `getComputedStyle(document.body).backgroundColor !== "rgb(244, 246, 249)"`, 5*time.Second)
	p.screenshot(filepath.Join(dir, "dashboard-dark.png"))

	p.console.settle(t, bctx)
	for _, problem := range p.console.Problems() {
		t.Errorf("browser console: %s", problem)
	}
}
