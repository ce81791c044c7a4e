package cluster

import (
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/tests/harness"
	"github.com/ledgerq/ledgerq/tests/redistest"
)

// Read-lag figures: how long after a publish its message is visible on
// the read side, at a steady publish rate.
const (
	lagRate     = 1000 // publishes per second
	lagDuration = 10 * time.Second
	lagWorkers  = 32 // concurrent publishers, so one slow append does not stall the pace
)

// figuresEnabled skips a figures test unless LEDGERQ_FIGURES=1: they take
// tens of seconds and measure rather than check.
func figuresEnabled(t *testing.T) {
	t.Helper()
	if os.Getenv("LEDGERQ_FIGURES") != "1" {
		t.Skip("figures run only with LEDGERQ_FIGURES=1")
	}
}

// TestFiguresReadLag publishes at lagRate for lagDuration and times, for
// every message, its first SSE frame on each node: on one node with the
// in-process bus, and over Redis Streams on the write node and on a query
// node. It fails only if a message never shows up.
func TestFiguresReadLag(t *testing.T) {
	figuresEnabled(t)
	var rows []string
	t.Run("in-process", func(t *testing.T) {
		n := startNode(t, "single")
		rows = append(rows, measureLag(t, n, n)...)
	})
	t.Run("redis", func(t *testing.T) {
		redis := redistest.Start(t)
		w := startNode(t, "write", "--redis", redis.URL())
		q := startNode(t, "query", "--redis", redis.URL(), "--role", "query")
		rows = append(rows, measureLag(t, w, w, q)...)
	})
	t.Logf("read lag at %d publishes/s for %s (ms: p50 / p99 / max)\n%s", lagRate, lagDuration,
		strings.Join(rows, "\n"))
}

// sent is one publish: when the request left, when its 201 came back.
type sent struct {
	id         string
	start, end time.Time
}

// measureLag publishes to w and returns one table row per observer.
func measureLag(t *testing.T, w *node, observers ...*node) []string {
	t.Helper()
	tok := w.token()
	harness.MustStatus(t, w.Call("POST", "/v1/queues", tok, map[string]any{"name": "lag"}), http.StatusCreated, "create lag")

	var arrivedMu sync.Mutex
	arrivals := make([]map[string]time.Time, len(observers))
	var readers sync.WaitGroup
	streams := make([]*harness.Stream, len(observers))
	for i, o := range observers {
		streams[i] = o.Subscribe(harness.Subscription{Query: "queues=lag&kinds=message", Token: tok})
		arrivals[i] = map[string]time.Time{}
		readers.Add(1)
		go func(i int) {
			defer readers.Done()
			for f := range streams[i].Events {
				if id, _ := f.Data["id"].(string); f.Event == "message.updated" && id != "" {
					arrivedMu.Lock()
					if _, ok := arrivals[i][id]; !ok {
						arrivals[i][id] = f.Arrived
					}
					arrivedMu.Unlock()
				}
			}
		}(i)
	}

	total := int(lagDuration.Seconds() * lagRate)
	tickets := make(chan int)
	go func() {
		defer close(tickets)
		begin := time.Now()
		for i := 0; i < total; i++ {
			time.Sleep(time.Until(begin.Add(time.Duration(i) * time.Second / lagRate)))
			tickets <- i
		}
	}()
	var (
		mu    sync.Mutex
		sends []sent
		errs  []error
		pub   sync.WaitGroup
	)
	began := time.Now()
	for g := 0; g < lagWorkers; g++ {
		pub.Add(1)
		go func() {
			defer pub.Done()
			for i := range tickets {
				start := time.Now()
				r, err := w.Do("POST", "/v1/queues/lag/messages", tok, map[string]any{"body": fmt.Sprintf("lag-%d", i)})
				end := time.Now()
				if err == nil && r.Status != http.StatusCreated {
					err = fmt.Errorf("publish: %d %s", r.Status, r.Body)
				}
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					sends = append(sends, sent{id: r.Str("id"), start: start, end: end})
				}
				mu.Unlock()
			}
		}()
	}
	pub.Wait()
	elapsed := time.Since(began)
	if len(errs) > 0 {
		t.Fatalf("%d publishes failed; first: %v", len(errs), errs[0])
	}
	// Wait for every message on every observer (those that never come are
	// reported below), then end the streams.
	deadline := time.Now().Add(30 * time.Second)
	for complete := false; !complete && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		arrivedMu.Lock()
		complete = true
		for i := range observers {
			for _, s := range sends {
				if _, ok := arrivals[i][s.id]; !ok {
					complete = false
					break
				}
			}
		}
		arrivedMu.Unlock()
	}
	for _, st := range streams {
		st.Close()
	}
	readers.Wait()

	var rows []string
	publish := make([]time.Duration, len(sends))
	for j, s := range sends {
		publish[j] = s.end.Sub(s.start)
	}
	rows = append(rows, fmt.Sprintf("  %-22s publish → 201: %s  (achieved %.0f/s)", w.name+" node", pct(publish),
		float64(len(sends))/elapsed.Seconds()))
	for i, o := range observers {
		var fromSend, from201 []time.Duration
		missing := 0
		for _, s := range sends {
			at, ok := arrivals[i][s.id]
			if !ok {
				missing++
				continue
			}
			fromSend = append(fromSend, at.Sub(s.start))
			from201 = append(from201, max(0, at.Sub(s.end)))
		}
		if missing > 0 {
			t.Errorf("%s node: %d of %d messages never appeared on its event stream", o.name, missing, len(sends))
		}
		rows = append(rows,
			fmt.Sprintf("  %-22s publish → SSE: %s", o.name+" node", pct(fromSend)),
			fmt.Sprintf("  %-22s 201 → SSE:     %s", "", pct(from201)))
	}
	return rows
}

// pct formats p50, p99 and max in milliseconds.
func pct(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no samples"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(p float64) float64 {
		return float64(s[min(len(s)-1, int(p*float64(len(s))))].Microseconds()) / 1000
	}
	return fmt.Sprintf("%7.2f / %7.2f / %7.2f", at(0.50), at(0.99), float64(s[len(s)-1].Microseconds())/1000)
}
