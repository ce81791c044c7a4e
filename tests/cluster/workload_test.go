package cluster

import (
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/ledgerq/ledgerq/tests/harness"
)

// tally keeps what a workload did, for the expectations of a test.
type tally struct {
	mu        sync.Mutex
	last      int64
	published []string
	acked     []string
}

// note records a command's position and returns the response.
func (c *tally) note(r harness.Response) harness.Response {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := r.Num("position"); p > c.last {
		c.last = p
	}
	return r
}

func (c *tally) lastPosition() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

func (c *tally) publishedIDs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.published...)
}

// publishMany publishes n messages to queue from workers goroutines and
// fails the test if any publish does not answer 201.
func publishMany(t *testing.T, w *node, tok string, c *tally, queue string, n, workers int) {
	t.Helper()
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := g; i < n; i += workers {
				r, err := w.Do("POST", "/v1/queues/"+queue+"/messages", tok, map[string]any{"body": fmt.Sprintf("%s-%d", queue, i)})
				if err == nil && r.Status != http.StatusCreated {
					err = fmt.Errorf("publish to %s: %d %s", queue, r.Status, r.Body)
				}
				if err != nil {
					errs <- err
					return
				}
				c.note(r)
				c.mu.Lock()
				c.published = append(c.published, r.Str("id"))
				c.mu.Unlock()
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// receive leases up to max messages of queue for ten minutes (nothing
// expires while a test runs) and returns their receipts by id.
func receive(t *testing.T, w *node, tok string, c *tally, queue string, max int) map[string]string {
	t.Helper()
	r := harness.MustStatus(t, c.note(w.Call("POST", "/v1/queues/"+queue+"/receive", tok,
		map[string]any{"max_messages": max, "visibility_timeout_ms": 600000})), http.StatusOK, "receive from "+queue)
	out := map[string]string{}
	ms, _ := r.JSON["messages"].([]any)
	for _, m := range ms {
		mm := m.(map[string]any)
		out[mm["id"].(string)] = mm["receipt"].(string)
	}
	return out
}

// settle acks the first acks receipts, nacks the next nacks (redelivery
// delay 0) and leaves the rest leased; it returns the acked ids.
func settle(t *testing.T, w *node, tok string, c *tally, queue string, receipts map[string]string, acks, nacks int) []string {
	t.Helper()
	var acked []string
	i := 0
	for id, receipt := range receipts {
		switch {
		case i < acks:
			harness.MustStatus(t, c.note(w.Call("POST", "/v1/queues/"+queue+"/ack", tok, map[string]any{"receipt": receipt})), http.StatusOK, "ack")
			acked = append(acked, id)
		case i < acks+nacks:
			harness.MustStatus(t, c.note(w.Call("POST", "/v1/queues/"+queue+"/nack", tok, map[string]any{"receipt": receipt})), http.StatusOK, "nack")
		}
		i++
	}
	c.mu.Lock()
	c.acked = append(c.acked, acked...)
	c.mu.Unlock()
	return acked
}
