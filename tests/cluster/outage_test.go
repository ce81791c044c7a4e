package cluster

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/tests/harness"
	"github.com/ledgerq/ledgerq/tests/redistest"
)

// load publishes and consumes against a write node until stopped, and
// records every answer that was not the expected success.
type load struct {
	w         *node
	tok       string
	c         *tally
	queues    []string
	published atomic.Int64
	consumed  atomic.Int64
	stop      chan struct{}
	wg        sync.WaitGroup

	mu   sync.Mutex
	errs []error
}

func startLoad(w *node, tok string, c *tally, queues []string, publishers int) *load {
	l := &load{w: w, tok: tok, c: c, queues: queues, stop: make(chan struct{})}
	for g := 0; g < publishers; g++ {
		l.wg.Add(1)
		go l.publish(g)
	}
	l.wg.Add(1)
	go l.consume()
	return l
}

func (l *load) fail(err error) {
	l.mu.Lock()
	l.errs = append(l.errs, err)
	l.mu.Unlock()
}

func (l *load) stopped() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

func (l *load) publish(g int) {
	defer l.wg.Done()
	for i := 0; !l.stopped(); i++ {
		queue := l.queues[(g+i)%len(l.queues)]
		r, err := l.w.Do("POST", "/v1/queues/"+queue+"/messages", l.tok, map[string]any{"body": fmt.Sprintf("p%d-%d", g, i)})
		if err == nil && r.Status != http.StatusCreated {
			err = fmt.Errorf("publish to %s: %d %s", queue, r.Status, r.Body)
		}
		if err != nil {
			l.fail(err)
			return
		}
		l.c.note(r)
		l.published.Add(1)
	}
}

// consume receives five messages at a time and acks three, nacks one and
// keeps one leased for ten minutes, so the end state has every kind.
func (l *load) consume() {
	defer l.wg.Done()
	for i := 0; !l.stopped(); i++ {
		queue := l.queues[i%len(l.queues)]
		r, err := l.w.Do("POST", "/v1/queues/"+queue+"/receive", l.tok, map[string]any{"max_messages": 5, "visibility_timeout_ms": 600000})
		if err == nil && r.Status != http.StatusOK {
			err = fmt.Errorf("receive from %s: %d %s", queue, r.Status, r.Body)
		}
		if err != nil {
			l.fail(err)
			return
		}
		l.c.note(r)
		ms, _ := r.JSON["messages"].([]any)
		for j, m := range ms {
			receipt := m.(map[string]any)["receipt"].(string)
			verb := "ack"
			switch j {
			case 3:
				verb = "nack"
			case 4:
				continue
			}
			r, err := l.w.Do("POST", "/v1/queues/"+queue+"/"+verb, l.tok, map[string]any{"receipt": receipt})
			if err == nil && r.Status != http.StatusOK {
				err = fmt.Errorf("%s on %s: %d %s", verb, queue, r.Status, r.Body)
			}
			if err != nil {
				l.fail(err)
				return
			}
			l.c.note(r)
			l.consumed.Add(1)
		}
		if len(ms) == 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// end stops the load and fails the test with the first error it met.
func (l *load) end(t *testing.T) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) > 0 {
		t.Fatalf("%d commands failed; first: %v", len(l.errs), l.errs[0])
	}
}

// waitPublished waits until n more publishes than now have succeeded and
// at least min has passed.
func (l *load) waitPublished(t *testing.T, n int64, min time.Duration) {
	t.Helper()
	target, since := l.published.Load()+n, time.Now()
	harness.WaitFor(t, fmt.Sprintf("%d more publishes", n), time.Minute, func() bool {
		l.mu.Lock()
		failed := len(l.errs) > 0
		l.mu.Unlock()
		if failed {
			l.end(t)
		}
		return l.published.Load() >= target && time.Since(since) >= min
	})
}

// TestRedisOutageLosesNothing kills the Redis server in the middle of a
// mixed load and starts it again, empty. Every publish and every consume
// answers success throughout (the log is the truth); the write node reports
// the bus down and its relay retries with backoff; when Redis is back both
// the write node's and the query node's read models catch up, and they
// equal a rebuild from the log and `ledgerq replay`.
func TestRedisOutageLosesNothing(t *testing.T) {
	redis := redistest.Start(t)
	w := startNode(t, "write", "--redis", redis.URL())
	q := startNode(t, "query", "--redis", redis.URL(), "--role", "query")
	tok := w.token()
	queues := []string{"orders", "billing"}
	c := &tally{}
	for _, name := range queues {
		harness.MustStatus(t, c.note(w.Call("POST", "/v1/queues", tok, map[string]any{"name": name})), http.StatusCreated, "create "+name)
	}

	l := startLoad(w, tok, c, queues, 3)
	l.waitPublished(t, 100, 0)
	redis.Kill()
	down := time.Now()
	harness.WaitFor(t, "the write node to report Redis down", 10*time.Second, func() bool {
		return w.Call("GET", "/readyz", "", nil).Status == http.StatusServiceUnavailable
	})
	l.waitPublished(t, 200, 3*time.Second)
	redis.Restart()
	outage := time.Since(down)
	l.waitPublished(t, 100, 0)
	l.end(t)
	last := c.lastPosition()
	if l.consumed.Load() == 0 {
		t.Fatal("the consumer settled nothing")
	}

	// The relay retried, and not in a tight loop: at a steady 100 ms (the
	// backoff's floor) the outage would have cost outage/100ms attempts.
	retries := len(w.LogRecords("relay: publish failed; retrying"))
	if floor := int(outage / (100 * time.Millisecond)); retries == 0 || retries >= floor {
		t.Errorf("relay retried %d times in a %s outage; want at least one, and fewer than %d (backoff)", retries, outage.Round(time.Millisecond), floor)
	}
	t.Logf("outage %s: %d publishes, %d settled, %d relay retries, head %d",
		outage.Round(time.Millisecond), l.published.Load(), l.consumed.Load(), retries, last)

	live := w.view(tok, last, queues...)
	if got := q.view(tok, last, queues...); !reflect.DeepEqual(got, live) {
		t.Fatalf("query node after the outage differs from the write node:\nquery %v\nwrite %v", got, live)
	}
	var total int64
	for _, name := range queues {
		total += harness.Stat(live.Queues[name], "published_total")
	}
	if total != l.published.Load() {
		t.Fatalf("read model counts %d publishes, %d answered 201", total, l.published.Load())
	}

	// The same answers from a read model rebuilt from the log, and from
	// `ledgerq replay`.
	w.Stop()
	q.Stop()
	replay := harness.ParseState(t, harness.Replay(t, w.Data))
	if replay.Position != last {
		t.Fatalf("ledgerq replay reached position %d, the last command answered %d", replay.Position, last)
	}
	for _, name := range queues {
		if got := harness.NormalTimes(harness.WithoutAge(replay.Queues[name])); !reflect.DeepEqual(got, harness.NormalTimes(live.Queues[name])) {
			t.Errorf("ledgerq replay: %s = %v, live %v", name, got, live.Queues[name])
		}
	}
	if err := os.Remove(filepath.Join(w.Data, "readmodel.db")); err != nil {
		t.Fatal(err)
	}
	w.Restart()
	if rebuilt := w.view(tok, last, queues...); !reflect.DeepEqual(rebuilt, live) {
		t.Fatalf("rebuilt read model differs from the live one:\nrebuilt %v\nlive    %v", rebuilt, live)
	}
}
