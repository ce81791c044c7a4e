package transport

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/ledgerq/ledgerq/commands"
	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/queries"
)

// testSecret is 32 bytes, the shortest HS256 secret accepted.
var testSecret = []byte("0123456789abcdef0123456789abcdef")

var testTime = time.Date(2025, 3, 4, 5, 6, 7, 891234567, time.FixedZone("X", 3600))

// fakeCommands records the last command and answers from its fields.
type fakeCommands struct {
	mu   sync.Mutex
	last any
	head int64
	err  error // returned by every method when set

	createdExisting bool
	duplicate       bool
	receive         func(ctx context.Context, cmd commands.Receive) (commands.ReceiveResult, error)
	batchErr        error
}

func (f *fakeCommands) record(cmd any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.last = cmd
	return f.err
}

func (f *fakeCommands) lastCmd() any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

func queueInfo(name string) commands.QueueInfo {
	return commands.QueueInfo{
		Name:       name,
		Attributes: domain.Attributes{VisibilityTimeoutMS: 30000, RetentionMS: 345600000, MaxMessageBytes: 262144},
		CreatedAt:  testTime, UpdatedAt: testTime,
	}
}

func (f *fakeCommands) CreateQueue(_ context.Context, c commands.CreateQueue) (commands.QueueResult, error) {
	if err := f.record(c); err != nil {
		return commands.QueueResult{}, err
	}
	return commands.QueueResult{Queue: queueInfo(c.Name), Created: !f.createdExisting, Position: 11}, nil
}

func (f *fakeCommands) ConfigureQueue(_ context.Context, c commands.ConfigureQueue) (commands.QueueResult, error) {
	if err := f.record(c); err != nil {
		return commands.QueueResult{}, err
	}
	q := queueInfo(c.Name)
	if c.Attributes.DeadLetterQueue != nil {
		q.Attributes.DeadLetterQueue = *c.Attributes.DeadLetterQueue
	}
	return commands.QueueResult{Queue: q, Position: 12}, nil
}

func (f *fakeCommands) DeleteQueue(_ context.Context, c commands.DeleteQueue) (commands.PositionResult, error) {
	if err := f.record(c); err != nil {
		return commands.PositionResult{}, err
	}
	return commands.PositionResult{Position: 13}, nil
}

func (f *fakeCommands) PurgeQueue(_ context.Context, c commands.PurgeQueue) (commands.PurgeResult, error) {
	if err := f.record(c); err != nil {
		return commands.PurgeResult{}, err
	}
	return commands.PurgeResult{Purged: 3, Position: 14}, nil
}

func (f *fakeCommands) Redrive(_ context.Context, c commands.Redrive) (commands.RedriveResult, error) {
	if err := f.record(c); err != nil {
		return commands.RedriveResult{}, err
	}
	return commands.RedriveResult{Moved: 2}, nil // nothing appended: the edge falls back on Head
}

func (f *fakeCommands) Publish(_ context.Context, c commands.Publish) (commands.PublishResult, error) {
	if err := f.record(c); err != nil {
		return commands.PublishResult{}, err
	}
	return commands.PublishResult{ID: "m-1", Queue: c.Queue, Duplicate: f.duplicate, Position: 15}, nil
}

func (f *fakeCommands) PublishBatch(_ context.Context, c commands.PublishBatch) (commands.BatchResult, error) {
	if err := f.record(c); err != nil {
		return commands.BatchResult{}, err
	}
	if f.batchErr != nil {
		return commands.BatchResult{}, f.batchErr
	}
	res := commands.BatchResult{Position: int64(20 + len(c.Messages))}
	for i := range c.Messages {
		res.Results = append(res.Results, commands.PublishResult{ID: "b-" + string(rune('a'+i)), Queue: c.Queue, Position: int64(21 + i)})
	}
	return res, nil
}

func (f *fakeCommands) Receive(ctx context.Context, c commands.Receive) (commands.ReceiveResult, error) {
	if err := f.record(c); err != nil {
		return commands.ReceiveResult{}, err
	}
	if f.receive != nil {
		return f.receive(ctx, c)
	}
	return commands.ReceiveResult{Messages: []commands.ReceivedMessage{{
		ID: "m-1", Queue: c.Queue, Body: "aGk=", BodyEncoding: "base64", ContentType: "text/plain",
		Receipt: "r-1", ReceiveCount: 1, PublishedAt: testTime, LeaseExpiresAt: testTime.Add(30 * time.Second),
	}}, Position: 16}, nil
}

func (f *fakeCommands) Ack(_ context.Context, c commands.Ack) (commands.AckResult, error) {
	if err := f.record(c); err != nil {
		return commands.AckResult{}, err
	}
	return commands.AckResult{ID: "m-1", Position: 17}, nil
}

func (f *fakeCommands) AckBatch(_ context.Context, c commands.AckBatch) (commands.AckBatchResult, error) {
	if err := f.record(c); err != nil {
		return commands.AckBatchResult{}, err
	}
	res := commands.AckBatchResult{Position: 18}
	for i, rc := range c.Receipts {
		it := commands.AckItem{Receipt: rc, OK: i == 0}
		if i > 0 {
			it.Code = "receipt_not_found"
		}
		res.Results = append(res.Results, it)
	}
	return res, nil
}

func (f *fakeCommands) Nack(_ context.Context, c commands.Nack) (commands.AckResult, error) {
	if err := f.record(c); err != nil {
		return commands.AckResult{}, err
	}
	return commands.AckResult{ID: "m-1", Position: 19}, nil
}

func (f *fakeCommands) Extend(_ context.Context, c commands.Extend) (commands.ExtendResult, error) {
	if err := f.record(c); err != nil {
		return commands.ExtendResult{}, err
	}
	return commands.ExtendResult{ID: "m-1", LeaseExpiresAt: testTime, Position: 20}, nil
}

func (f *fakeCommands) Head() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.head
}

// fakeQueries serves a fixed set of queues and messages.
type fakeQueries struct {
	mu       sync.Mutex
	queues   []queries.Queue
	position int64
	lastList queries.ListQueues
	lastMsgs queries.ListMessages
	waitErr  error
	waited   int64
	err      error
}

func newFakeQueries(names ...string) *fakeQueries {
	f := &fakeQueries{position: 40}
	for i, n := range names {
		f.queues = append(f.queues, queries.Queue{
			Name:       n,
			Attributes: queries.Attributes{VisibilityTimeoutMS: 30000, RetentionMS: 345600000, MaxMessageBytes: 262144},
			CreatedAt:  testTime, UpdatedAt: testTime,
			Stats: queries.Stats{Ready: int64(i + 1)},
		})
	}
	return f
}

func (f *fakeQueries) ListQueues(_ context.Context, q queries.ListQueues) (queries.QueuePage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastList = q
	if f.err != nil {
		return queries.QueuePage{}, f.err
	}
	var page queries.QueuePage
	for _, qu := range f.queues {
		if strings.HasPrefix(qu.Name, q.Prefix) && (q.Allowed == nil || q.Allowed(qu.Name)) {
			page.Queues = append(page.Queues, qu)
		}
	}
	return page, nil
}

func (f *fakeQueries) GetQueue(_ context.Context, name string) (queries.Queue, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, q := range f.queues {
		if q.Name == name {
			return q, nil
		}
	}
	return queries.Queue{}, domain.WithMessage(domain.ErrQueueNotFound, "queue %q not found", name)
}

func (f *fakeQueries) ListMessages(_ context.Context, q queries.ListMessages) (queries.MessagePage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastMsgs = q
	body := "hello"
	m := queries.MessageSummary{ID: "m-1", Queue: q.Queue, State: queries.StateReady, PublishedAt: testTime}
	if q.IncludeBody {
		m.Body, m.BodyEncoding = &body, "utf8"
	}
	return queries.MessagePage{Messages: []queries.MessageSummary{m}, NextCursor: "next"}, nil
}

func (f *fakeQueries) GetMessage(_ context.Context, id string) (queries.MessageDetail, error) {
	queue := "orders"
	if strings.HasPrefix(id, "pay") {
		queue = "payments"
	}
	if id == "missing" {
		return queries.MessageDetail{}, domain.ErrMessageNotFound
	}
	return queries.MessageDetail{
		ID: id, Queue: queue, State: queries.StateAcked, Body: "hello", BodyEncoding: "utf8", PublishedAt: testTime,
		History: []queries.HistoryEntry{{Position: 5, Type: domain.TypeMessagePublished, RecordedAt: testTime, Data: json.RawMessage(`{"a":1}`)}},
	}, nil
}

func (f *fakeQueries) WaitFor(_ context.Context, position int64, _ time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waited = position
	return f.waitErr
}

func (f *fakeQueries) Position() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.position
}

// fakeAudit serves a log of n events.
type fakeAudit struct {
	mu       sync.Mutex
	n        int
	last     queries.EventFilter
	streamFn func(ctx context.Context, f queries.EventFilter, fn func(queries.EventView) error) error
}

func testEvent(pos int64) queries.EventView {
	return queries.EventView{
		Position: pos, Stream: "queue-orders", Version: pos, Type: domain.TypeMessagePublished, SchemaVersion: 1,
		Data: json.RawMessage(`{"queue":"orders"}`), Metadata: json.RawMessage(`{"subject":"alice"}`),
		RecordedAt: testTime, Hash: "h", PrevHash: "p",
	}
}

func (f *fakeAudit) Events(_ context.Context, flt queries.EventFilter) (queries.EventPage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.last = flt
	var page queries.EventPage
	for p := flt.After + 1; p <= int64(f.n) && len(page.Events) < flt.Limit; p++ {
		page.Events = append(page.Events, testEvent(p))
	}
	if n := len(page.Events); n > 0 && page.Events[n-1].Position < int64(f.n) {
		page.NextAfter = page.Events[n-1].Position
	}
	return page, nil
}

func (f *fakeAudit) StreamEvents(ctx context.Context, flt queries.EventFilter, fn func(queries.EventView) error) error {
	f.mu.Lock()
	f.last = flt
	n, streamFn := f.n, f.streamFn
	f.mu.Unlock()
	if streamFn != nil {
		return streamFn(ctx, flt, fn)
	}
	for p := flt.After + 1; p <= int64(n); p++ {
		if err := fn(testEvent(p)); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeAudit) Verify(_ context.Context, from, to int64) (queries.VerifyResult, error) {
	return queries.VerifyResult{OK: true, Checked: int64(f.n) - from, HeadPosition: int64(f.n), HeadHash: "h"}, nil
}

func (f *fakeAudit) StateAt(_ context.Context, q queries.StateAt) (queries.StateView, error) {
	pos := q.Position
	if pos == 0 {
		pos = 9
	}
	return queries.StateView{Position: pos, Queues: newFakeQueries("orders", "payments").queues}, nil
}

// harness is a server over fakes.
type harness struct {
	t       testing.TB
	h       http.Handler
	cmds    *fakeCommands
	qs      *fakeQueries
	audit   *fakeAudit
	hub     *queries.Hub
	logs    *logtest.Hook
	metrics *Metrics
	done    chan struct{}
}

// newHarness builds the real handler over fakes; edit tweaks the deps.
func newHarness(t testing.TB, edit func(*Deps)) *harness {
	t.Helper()
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	hx := &harness{
		t: t, cmds: &fakeCommands{head: 99}, qs: newFakeQueries("orders", "orders.eu", "payments"),
		audit: &fakeAudit{n: 5}, hub: queries.NewHub(queries.HubConfig{}), logs: hook, done: make(chan struct{}),
	}
	t.Cleanup(func() {
		select {
		case <-hx.done:
		default:
			close(hx.done)
		}
		hx.hub.Close()
	})
	deps := Deps{
		Commands: hx.cmds, Queries: hx.qs, Audit: hx.audit, Hub: hx.hub,
		Auth: AuthConfig{HS256Secret: testSecret}, Logger: logger,
		OpenAPI: []byte(`{"openapi":"3.1.0"}`),
		Web:     http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "web:"+r.URL.Path) }),
		Done:    hx.done,
	}
	if edit != nil {
		edit(&deps)
	}
	if deps.Metrics == nil {
		m, err := NewMetrics(prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		deps.Metrics = m
	}
	hx.metrics = deps.Metrics
	h, err := NewServer(deps)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	hx.h = h
	return hx
}

// token mints an HS256 token with the test secret.
func token(t testing.TB, sub string, scopes []string, queues []string) string {
	t.Helper()
	tok, err := MintToken(testSecret, sub, scopes, queues, time.Hour)
	if err != nil {
		t.Fatalf("MintToken: %v", err)
	}
	return tok
}

func adminToken(t testing.TB) string { return token(t, "admin-user", []string{ScopeAdmin}, nil) }

type req struct {
	method, path, body string
	token              string
	header             map[string]string
	ctx                context.Context
}

func (hx *harness) do(r req) *httptest.ResponseRecorder {
	hx.t.Helper()
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	hr := httptest.NewRequest(r.method, r.path, body)
	if r.ctx != nil {
		hr = hr.WithContext(r.ctx)
	}
	if r.body != "" {
		hr.Header.Set("Content-Type", "application/json")
	}
	if r.token != "" {
		hr.Header.Set("Authorization", "Bearer "+r.token)
	}
	for k, v := range r.header {
		if v == "" {
			hr.Header.Del(k)
		} else {
			hr.Header.Set(k, v)
		}
	}
	rec := httptest.NewRecorder()
	hx.h.ServeHTTP(rec, hr)
	return rec
}

// problemOf decodes a problem document, failing the test when the answer
// is not one.
func problemOf(t *testing.T, rec *httptest.ResponseRecorder) problem {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json (status %d, body %s)", ct, rec.Code, rec.Body)
	}
	var p problem
	dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("decode problem %s: %v", rec.Body, err)
	}
	if p.Status != rec.Code {
		t.Errorf("problem status %d != HTTP status %d", p.Status, rec.Code)
	}
	if p.Type != problemTypePrefix+p.Code || p.Title == "" || p.Detail == "" {
		t.Errorf("problem lacks type, title or detail: %+v", p)
	}
	return p
}

// expectProblem checks status and code of a problem answer.
func expectProblem(t *testing.T, rec *httptest.ResponseRecorder, status int, code string) problem {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status = %d, want %d; body %s", rec.Code, status, rec.Body)
	}
	p := problemOf(t, rec)
	if p.Code != code {
		t.Fatalf("code = %q, want %q (detail %q)", p.Code, code, p.Detail)
	}
	return p
}

// jsonOf decodes a JSON answer into a generic map.
func jsonOf(t *testing.T, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q, want application/json (status %d, body %s)", ct, rec.Code, rec.Body)
	}
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("decode %s: %v", rec.Body, err)
	}
	return m
}
