package harness

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeServer is a Server whose process is an httptest server: the HTTP
// side of the harness without building the binary.
func fakeServer(t *testing.T, h http.Handler) *Server {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	opts := Options{Name: "fake"}
	opts.setDefaults()
	return &Server{URL: ts.URL, Addr: strings.TrimPrefix(ts.URL, "http://"), t: t, opts: opts, client: ts.Client(), logs: &logBuffer{}}
}

func TestSendBodiesAndHeaders(t *testing.T) {
	type seen struct{ auth, ctype, custom, body string }
	got := make(chan seen, 1)
	s := fakeServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		got <- seen{r.Header.Get("Authorization"), r.Header.Get("Content-Type"), r.Header.Get("X-Custom"), string(raw)}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id":"m1","position":7}`)
	}))
	for _, c := range []struct {
		name    string
		token   string
		body    any
		headers []string
		want    seen
	}{
		{"json", "tok", map[string]any{"a": 1}, nil, seen{"Bearer tok", "application/json", "", `{"a":1}`}},
		{"raw string", "", `{"body":`, nil, seen{"", "application/json", "", `{"body":`}},
		{"raw bytes, content type overridden", "", []byte("x"), []string{"Content-Type", "text/plain", "X-Custom", "v"}, seen{"", "text/plain", "v", "x"}},
		{"no body", "", nil, nil, seen{"", "", "", ""}},
	} {
		r := s.Call("POST", "/x", c.token, c.body, c.headers...)
		if g := <-got; g != c.want {
			t.Errorf("%s: server saw %+v, want %+v", c.name, g, c.want)
		}
		if r.Status != 200 || r.Str("id") != "m1" || r.Num("position") != 7 {
			t.Errorf("%s: answer %v, JSON %v", c.name, r, r.JSON)
		}
	}
	if _, err := s.Do("GET", "/x", "", nil, "X-Odd"); err == nil {
		t.Error("an odd number of header strings was accepted")
	}
}

func TestResponseJSONOnlyForObjects(t *testing.T) {
	s := fakeServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, strings.TrimPrefix(r.URL.Path, "/"))
	}))
	if r := s.Call("GET", "/[1,2]", "", nil); r.JSON != nil {
		t.Errorf("an array filled JSON: %v", r.JSON)
	}
	var v []int
	if err := s.Call("GET", "/[1,2]", "", nil).Decode(&v); err != nil || !reflect.DeepEqual(v, []int{1, 2}) {
		t.Errorf("Decode: %v %v", v, err)
	}
	if err := s.Call("GET", "/nope", "", nil).Decode(&v); err == nil {
		t.Error("Decode of a non-JSON body did not fail")
	}
}

func TestProblem(t *testing.T) {
	body := `{"type":"about:blank","title":"Unavailable","status":503,"detail":"disk full","code":"unavailable"}`
	r := Response{Status: 503, Header: http.Header{"Content-Type": {"application/problem+json"}}, Body: []byte(body)}
	p, ok := r.Problem()
	if !ok || p.Code != "unavailable" || p.Status != 503 || p.Detail != "disk full" {
		t.Errorf("Problem() = %+v, %v", p, ok)
	}
	r.Header.Set("Content-Type", "application/json")
	if _, ok := r.Problem(); ok {
		t.Error("a plain JSON answer was taken for a problem")
	}
}

func TestGetAtWaitsOutConsistencyTimeouts(t *testing.T) {
	var calls atomic.Int64
	s := fakeServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Ledgerq-Min-Position") != "5" {
			t.Errorf("min position %q, want 5", r.Header.Get("X-Ledgerq-Min-Position"))
		}
		if calls.Add(1) < 3 {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"code":"consistency_timeout"}`)
			return
		}
		w.Header().Set("X-Ledgerq-Position", "6")
		fmt.Fprint(w, `{"name":"q"}`)
	}))
	if r := s.GetAt("/v1/queues/q", "tok", 5); r.Str("name") != "q" || calls.Load() != 3 {
		t.Fatalf("GetAt answered %v after %d calls, want the third", r, calls.Load())
	}
}

func TestMetrics(t *testing.T) {
	s := fakeServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "# HELP go_goroutines x\ngo_goroutines 12\nhttp_requests_total{code=\"200\"} 3\nledgerq_sse_clients 0\n")
	}))
	m, err := s.Metrics("go_goroutines", "ledgerq_sse_clients")
	if err != nil || m["go_goroutines"] != 12 || m["ledgerq_sse_clients"] != 0 {
		t.Fatalf("Metrics = %v, %v", m, err)
	}
	if _, err := s.Metrics("http_requests_total"); err == nil {
		t.Error("a labelled metric counted as an unlabelled sample")
	}
}

func TestSubscribeParsesEvents(t *testing.T) {
	const stream = "retry: 2000\n\n" +
		"id: 3\nevent: queue.updated\ndata: {\"name\":\"q\"}\n\n" +
		"event: message.updated\ndata: {\"id\":\"a\"}\n\n" +
		"id: 4\n\n" +
		": keep-alive\n\n" +
		"id: 5\nevent: message.updated\ndata: {\"id\":\"b\",\n" + "data: \"state\":\"ready\"}\n\n"
	var headers atomic.Value
	s := fakeServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		headers.Store(r.Header.Clone())
		if r.URL.RawQuery != "queues=q" {
			t.Errorf("query %q", r.URL.RawQuery)
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, stream)
	}))
	st := s.Subscribe(Subscription{Query: "queues=q", Token: "tok", LastEventID: "2"})
	var got []Event
	for ev := range st.Events {
		if ev.Arrived.IsZero() {
			t.Errorf("event %+v without arrival time", ev)
		}
		ev.Arrived = time.Time{}
		got = append(got, ev)
	}
	want := []Event{
		{ID: 3, Event: "queue.updated", Data: map[string]any{"name": "q"}},
		{Event: "message.updated", Data: map[string]any{"id": "a"}},
		{ID: 5, Event: "message.updated", Data: map[string]any{"id": "b", "state": "ready"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("events %+v, want %+v", got, want)
	}
	if err := st.Err(); err != nil || st.Count() != 3 {
		t.Fatalf("clean end: err %v, count %d", err, st.Count())
	}
	h := headers.Load().(http.Header)
	if h.Get("Authorization") != "Bearer tok" || h.Get("Last-Event-ID") != "2" || h.Get("Accept") != "text/event-stream" {
		t.Fatalf("request headers %v", h)
	}
}

func TestSubscribeCountOnlyAndClose(t *testing.T) {
	release := make(chan struct{})
	s := fakeServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "id: %d\nevent: message.updated\ndata: {}\n\n", i+1)
		}
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer close(release)
	st := s.Subscribe(Subscription{Query: "queues=q", CountOnly: true})
	WaitFor(t, "three events counted", 5*time.Second, func() bool { return st.Count() == 3 })
	select {
	case <-st.Done():
		t.Fatal("the stream ended while the server kept it open")
	default:
	}
	st.Close()
	if err := st.Err(); err == nil {
		t.Fatal("a stream ended by Close reported a clean end")
	}
	if _, open := <-st.Events; open {
		t.Fatal("CountOnly kept an event")
	}
}

func TestLogBufferKeepsTheNewestLines(t *testing.T) {
	l := &logBuffer{max: 100}
	for i := range 50 {
		fmt.Fprintf(l, "line %02d\n", i)
	}
	got := l.String()
	if len(got) > 100 || !strings.HasSuffix(got, "line 49\n") || !strings.HasPrefix(got, "line ") {
		t.Fatalf("kept %q", got)
	}
	unbounded := &logBuffer{}
	for range 1000 {
		fmt.Fprint(unbounded, "0123456789")
	}
	if n := len(unbounded.String()); n != 10000 {
		t.Fatalf("unbounded buffer kept %d bytes, want 10000", n)
	}
}

func TestLogRecords(t *testing.T) {
	s := &Server{logs: &logBuffer{}}
	fmt.Fprint(s.logs, `{"msg":"relay: publish failed; retrying","n":1}`+"\nplain text\n"+`{"msg":"other"}`+"\n"+`{"msg":"relay: publish failed; retrying","n":2}`+"\n")
	recs := s.LogRecords("relay: publish failed; retrying")
	if len(recs) != 2 || recs[1]["n"] != float64(2) {
		t.Fatalf("records %v", recs)
	}
}

func TestStateHelpers(t *testing.T) {
	raw := []byte(`{"position":9,"queues":[{"name":"a","created_at":"2026-01-02T03:04:05.1Z","stats":{"ready":2,"oldest_ready_age_ms":17}},{"name":"b"}]}`)
	st := ParseState(t, raw)
	if st.Position != 9 || len(st.Queues) != 2 || Stat(st.Queues["a"], "ready") != 2 || Stat(st.Queues["b"], "ready") != 0 {
		t.Fatalf("ParseState = %+v", st)
	}
	a := NormalTimes(WithoutAge(st.Queues["a"]))
	want := map[string]any{"name": "a", "created_at": "2026-01-02T03:04:05.100Z", "stats": map[string]any{"ready": float64(2)}}
	if !reflect.DeepEqual(a, want) {
		t.Fatalf("normalised %v, want %v", a, want)
	}
	if _, ok := st.Queues["a"]["stats"].(map[string]any)["oldest_ready_age_ms"]; !ok {
		t.Fatal("WithoutAge changed its argument")
	}
}

func TestBuildTakesLEDGERQ_BIN(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "ledgerq")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(BinEnv, fake)
	path, cleanup, err := Build()
	if err != nil || path != fake {
		t.Fatalf("Build() = %q, %v; want %q", path, err, fake)
	}
	cleanup()
	if _, err := os.Stat(fake); err != nil {
		t.Fatalf("the cleanup of a prebuilt binary removed it: %v", err)
	}
	t.Setenv(BinEnv, filepath.Join(t.TempDir(), "missing"))
	if _, _, err := Build(); err == nil {
		t.Fatal("a missing LEDGERQ_BIN was accepted")
	}
}
