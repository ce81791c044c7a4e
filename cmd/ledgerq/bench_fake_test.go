package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeLedgerq answers the routes the load generator uses, with in-memory
// queues and SSE, so the generator's bookkeeping can be checked exactly.
type fakeLedgerq struct {
	token string

	mu        sync.Mutex
	position  int64
	ready     map[string][]string // queue → message ids
	leased    map[string]bool     // receipts
	acked     int
	subs      map[string][]chan int64
	published int
}

func newFakeLedgerq(t *testing.T, token string) (*fakeLedgerq, *httptest.Server) {
	f := &fakeLedgerq{token: token, ready: map[string][]string{}, leased: map[string]bool{}, subs: map[string][]chan int64{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/queues", f.auth(func(w http.ResponseWriter, r *http.Request) {
		f.reply(w, http.StatusCreated, map[string]any{"queue": map[string]any{}, "position": f.head()})
	}))
	mux.HandleFunc("POST /v1/queues/{queue}/messages", f.auth(func(w http.ResponseWriter, r *http.Request) {
		pos := f.publish(r.PathValue("queue"), 1)
		f.reply(w, http.StatusCreated, map[string]any{"id": fmt.Sprint("m", pos), "queue": r.PathValue("queue"), "position": pos})
	}))
	mux.HandleFunc("POST /v1/queues/{queue}/messages:batch", f.auth(func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Messages []json.RawMessage `json:"messages"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || len(in.Messages) == 0 {
			f.reply(w, http.StatusBadRequest, map[string]any{"code": "invalid_argument"})
			return
		}
		pos := f.publish(r.PathValue("queue"), len(in.Messages))
		f.reply(w, http.StatusCreated, map[string]any{"results": []any{}, "position": pos})
	}))
	mux.HandleFunc("POST /v1/queues/{queue}/receive", f.auth(func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Max int `json:"max_messages"`
		}
		_ = json.NewDecoder(r.Body).Decode(&in)
		f.mu.Lock()
		q := r.PathValue("queue")
		n := min(max(in.Max, 1), len(f.ready[q]))
		var msgs []map[string]any
		for _, id := range f.ready[q][:n] {
			f.leased["r-"+id] = true
			msgs = append(msgs, map[string]any{"id": id, "receipt": "r-" + id})
		}
		f.ready[q] = f.ready[q][n:]
		f.mu.Unlock()
		f.reply(w, http.StatusOK, map[string]any{"messages": msgs, "position": f.head()})
	}))
	mux.HandleFunc("POST /v1/queues/{queue}/ack", f.auth(func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Receipts []string `json:"receipts"`
		}
		_ = json.NewDecoder(r.Body).Decode(&in)
		f.mu.Lock()
		var results []map[string]any
		for _, rc := range in.Receipts {
			ok := f.leased[rc]
			delete(f.leased, rc)
			if ok {
				f.acked++
				f.position++
			}
			results = append(results, map[string]any{"receipt": rc, "ok": ok})
		}
		pos := f.position
		f.mu.Unlock()
		f.reply(w, http.StatusOK, map[string]any{"results": results, "position": pos})
	}))
	mux.HandleFunc("GET /v1/queues/{queue}", f.auth(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		ready := len(f.ready[r.PathValue("queue")])
		f.mu.Unlock()
		w.Header().Set("X-Ledgerq-Position", strconv.FormatInt(f.head(), 10))
		f.reply(w, http.StatusOK, map[string]any{"name": r.PathValue("queue"), "stats": map[string]any{"ready": ready}})
	}))
	mux.HandleFunc("GET /v1/subscribe", f.auth(f.subscribe))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeLedgerq) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+f.token {
			f.reply(w, http.StatusUnauthorized, map[string]any{"code": "unauthorized"})
			return
		}
		h(w, r)
	}
}

func (f *fakeLedgerq) reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeLedgerq) head() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.position
}

// publish appends n messages to queue, tells the queue's subscribers, and
// returns the last position.
func (f *fakeLedgerq) publish(queue string, n int) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.position++
		f.published++
		f.ready[queue] = append(f.ready[queue], fmt.Sprint("m", f.position))
		for _, c := range f.subs[queue] {
			select {
			case c <- f.position:
			default: // a slow subscriber misses frames, as the test would notice
			}
		}
	}
	return f.position
}

func (f *fakeLedgerq) subscribe(w http.ResponseWriter, r *http.Request) {
	queues := strings.Split(r.URL.Query().Get("queues"), ",")
	c := make(chan int64, 1<<14)
	f.mu.Lock()
	for _, q := range queues {
		f.subs[q] = append(f.subs[q], c)
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_, _ = fmt.Fprint(w, ": hello\n\n")
	_ = rc.Flush()
	for {
		select {
		case <-r.Context().Done():
			return
		case pos := <-c:
			// A queue.updated frame with the same id must not be taken
			// for the message frame.
			_, _ = fmt.Fprintf(w, "id: %d\nevent: queue.updated\ndata: {}\n\nid: %d\nevent: message.updated\ndata: {\"id\":\"m%d\"}\n\n", pos, pos, pos)
			_ = rc.Flush()
		}
	}
}
