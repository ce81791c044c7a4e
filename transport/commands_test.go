package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/commands"
	"github.com/ledgerq/ledgerq/domain"
)

func TestCreateQueue(t *testing.T) {
	hx := newHarness(t, nil)
	tok := token(t, "ops", []string{ScopeQueuesManage}, nil)
	rec := hx.do(req{method: "POST", path: "/v1/queues", token: tok, header: map[string]string{"X-Correlation-Id": "corr-1", "X-Request-Id": "req-1"},
		body: `{"name":"orders","visibility_timeout_ms":1000,"dead_letter_queue":"orders.dlq","max_receive_count":3}`})
	if rec.Code != http.StatusCreated {
		t.Fatalf("status = %d; %s", rec.Code, rec.Body)
	}
	got := rec.Body.String()
	want := `{"queue":{"name":"orders","attributes":{"visibility_timeout_ms":30000,"delay_ms":0,"retention_ms":345600000,"max_message_bytes":262144,"dead_letter_queue":null,"max_receive_count":0},"created_at":"2025-03-04T04:06:07.891Z","updated_at":"2025-03-04T04:06:07.891Z"},"position":11}` + "\n"
	if got != want {
		t.Fatalf("body =\n%s\nwant\n%s", got, want)
	}
	if h := rec.Header().Get(headerPosition); h != "11" {
		t.Errorf("%s = %q, want 11", headerPosition, h)
	}
	cmd := hx.cmds.lastCmd().(commands.CreateQueue)
	if cmd.Name != "orders" || *cmd.Attributes.VisibilityTimeoutMS != 1000 || *cmd.Attributes.DeadLetterQueue != "orders.dlq" ||
		*cmd.Attributes.MaxReceiveCount != 3 || cmd.Attributes.DelayMS != nil {
		t.Errorf("command = %+v", cmd)
	}

	hx.cmds.createdExisting = true
	rec = hx.do(req{method: "POST", path: "/v1/queues", token: tok, body: `{"name":"orders"}`})
	if rec.Code != http.StatusOK {
		t.Fatalf("existing queue, same attributes: status = %d, want 200", rec.Code)
	}

	hx.cmds.err = domain.WithMessage(domain.ErrQueueExists, "queue orders exists with other attributes")
	expectProblem(t, hx.do(req{method: "POST", path: "/v1/queues", token: tok, body: `{"name":"orders"}`}), http.StatusConflict, "queue_exists")

	hx.cmds.err = nil
	for body, field := range map[string]string{
		`{}`:             "name",
		`{"name":""}`:    "name",
		`{"name":"-x"}`:  "name",
		`{"name":"a/b"}`: "name",
		`{"name":"` + strings.Repeat("a", 81) + `"}`: "name",
		`{"name":"ok","dead_letter_queue":"no way"}`: "dead_letter_queue",
		`{"name":"ok","delay_ms":"5"}`:               "delay_ms",
		`{"name":"ok","max_receive_count":1.5}`:      "max_receive_count",
		`{"name":"ok","dead_letter_queue":5}`:        "dead_letter_queue",
		`{"name":"ok","colour":"blue"}`:              "colour",
	} {
		p := expectProblem(t, hx.do(req{method: "POST", path: "/v1/queues", token: tok, body: body}), http.StatusBadRequest, "invalid_argument")
		if p.Field != field {
			t.Errorf("%s: field = %q, want %q (detail %q)", body, p.Field, field, p.Detail)
		}
	}
}

func TestCommandCallerMetadata(t *testing.T) {
	var got commands.Caller
	hx := newHarness(t, nil)
	hx.cmds.receive = func(ctx context.Context, _ commands.Receive) (commands.ReceiveResult, error) {
		got = commands.CallerFrom(ctx)
		return commands.ReceiveResult{}, nil
	}
	tok := token(t, "worker-7", []string{ScopeMessagesConsume}, nil)
	hx.do(req{method: "POST", path: "/v1/queues/orders/receive", token: tok, header: map[string]string{"X-Request-Id": "req-42", "X-Correlation-Id": "flow-9"}})
	if want := (commands.Caller{Subject: "worker-7", RequestID: "req-42", CorrelationID: "flow-9"}); got != want {
		t.Fatalf("caller = %+v, want %+v", got, want)
	}
	hx.do(req{method: "POST", path: "/v1/queues/orders/receive", token: tok, header: map[string]string{"X-Request-Id": "req-43", "X-Correlation-Id": "bad\x01id"}})
	if got.CorrelationID != "req-43" {
		t.Fatalf("correlation id = %q, want the request id when the header is unusable", got.CorrelationID)
	}
}

func TestConfigureQueueDeadLetterNullRemoves(t *testing.T) {
	hx := newHarness(t, nil)
	tok := adminToken(t)
	for _, tc := range []struct {
		body string
		want *string
	}{
		{`{"dead_letter_queue":null}`, ptr("")},
		{`{"dead_letter_queue":""}`, ptr("")},
		{`{"dead_letter_queue":"orders.dlq"}`, ptr("orders.dlq")},
		{`{"delay_ms":5}`, nil},
	} {
		rec := hx.do(req{method: "PATCH", path: "/v1/queues/orders", token: tok, body: tc.body})
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: status %d; %s", tc.body, rec.Code, rec.Body)
		}
		cmd := hx.cmds.lastCmd().(commands.ConfigureQueue)
		if cmd.Name != "orders" || !reflect.DeepEqual(cmd.Attributes.DeadLetterQueue, tc.want) {
			t.Errorf("%s: DeadLetterQueue = %v, want %v", tc.body, deref(cmd.Attributes.DeadLetterQueue), deref(tc.want))
		}
		if tc.want != nil && *tc.want != "" && !strings.Contains(rec.Body.String(), `"dead_letter_queue":"orders.dlq"`) {
			t.Errorf("answer does not show the dead-letter queue: %s", rec.Body)
		}
	}
	hx.cmds.err = domain.WithMessage(domain.ErrQueueNotFound, "queue %q not found", "orders")
	expectProblem(t, hx.do(req{method: "PATCH", path: "/v1/queues/orders", token: tok, body: `{"delay_ms":1}`}), http.StatusNotFound, "queue_not_found")
}

func ptr[T any](v T) *T { return &v }

func deref(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%q", *p)
}

func TestDeletePurgeRedrive(t *testing.T) {
	hx := newHarness(t, nil)
	tok := adminToken(t)
	rec := hx.do(req{method: "DELETE", path: "/v1/queues/orders", token: tok})
	if rec.Code != 200 || rec.Body.String() != `{"position":13}`+"\n" || rec.Header().Get(headerPosition) != "13" {
		t.Fatalf("delete = %d %s", rec.Code, rec.Body)
	}
	hx.cmds.err = domain.WithMessage(domain.ErrConflict, "queue orders is the dead-letter queue of payments")
	p := expectProblem(t, hx.do(req{method: "DELETE", path: "/v1/queues/orders", token: tok}), http.StatusConflict, "conflict")
	if !strings.Contains(p.Detail, "dead-letter") {
		t.Errorf("detail %q lost the domain message", p.Detail)
	}
	hx.cmds.err = nil

	rec = hx.do(req{method: "POST", path: "/v1/queues/orders/purge", token: tok})
	if rec.Code != 200 || rec.Body.String() != `{"purged":3,"position":14}`+"\n" {
		t.Fatalf("purge = %d %s", rec.Code, rec.Body)
	}

	// Redrive appended nothing in the fake: the answer carries the head.
	rec = hx.do(req{method: "POST", path: "/v1/queues/orders.dlq/redrive", token: tok, body: `{"to":"orders","max_messages":5}`})
	if rec.Code != 200 || rec.Body.String() != `{"moved":2,"position":99}`+"\n" || rec.Header().Get(headerPosition) != "99" {
		t.Fatalf("redrive = %d %s (%s)", rec.Code, rec.Body, rec.Header().Get(headerPosition))
	}
	if cmd := hx.cmds.lastCmd().(commands.Redrive); cmd != (commands.Redrive{Queue: "orders.dlq", To: "orders", MaxMessages: 5}) {
		t.Errorf("command = %+v", cmd)
	}
	expectProblem(t, hx.do(req{method: "POST", path: "/v1/queues/orders.dlq/redrive", token: tok, body: `{"max_messages":0}`}), 400, "invalid_argument")
	expectProblem(t, hx.do(req{method: "POST", path: "/v1/queues/orders.dlq/redrive", token: tok, body: `{"to":"../x"}`}), 400, "invalid_argument")
}

func TestPublish(t *testing.T) {
	hx := newHarness(t, nil)
	tok := token(t, "producer", []string{ScopeMessagesPublish}, nil)
	rec := hx.do(req{method: "POST", path: "/v1/queues/orders/messages", token: tok,
		body: `{"body":"aGk=","body_encoding":"base64","content_type":"text/plain","headers":{"k":"v"},"delay_ms":0,"dedup_id":"d1"}`})
	if rec.Code != http.StatusCreated || rec.Body.String() != `{"id":"m-1","queue":"orders","position":15}`+"\n" {
		t.Fatalf("publish = %d %s", rec.Code, rec.Body)
	}
	want := commands.Publish{Queue: "orders", Message: commands.Message{Body: "aGk=", BodyEncoding: "base64", ContentType: "text/plain", Headers: map[string]string{"k": "v"}, DelayMS: ptr(int64(0)), DedupID: "d1"}}
	if got := hx.cmds.lastCmd().(commands.Publish); !reflect.DeepEqual(got, want) {
		t.Errorf("command = %+v, want %+v", got, want)
	}
	hx.cmds.duplicate = true
	if rec := hx.do(req{method: "POST", path: "/v1/queues/orders/messages", token: tok, body: `{"body":"x","dedup_id":"d1"}`}); rec.Code != http.StatusOK {
		t.Fatalf("duplicate publish: status %d, want 200", rec.Code)
	}
	hx.cmds.duplicate = false

	headers := make([]string, 33)
	for i := range headers {
		headers[i] = fmt.Sprintf(`"h%d":"v"`, i)
	}
	for body, field := range map[string]string{
		`{}`:                                 "body",
		`{"body":null}`:                      "body",
		`{"body":5}`:                         "body",
		`{"body":"x","body_encoding":"hex"}`: "body_encoding",
		`{"body":"x","headers":{"a":1}}`:     "headers",
		`{"body":"x","headers":[]}`:          "headers",
		`{"body":"x","headers":{` + strings.Join(headers, ",") + `}}`: "headers",
		`{"body":"x","dedup_id":"` + strings.Repeat("d", 129) + `"}`:  "dedup_id",
		`{"body":"x","delay_ms":-1e400}`:                              "delay_ms",
		`{"body":"x","body":"y"}`:                                     "body",
	} {
		p := expectProblem(t, hx.do(req{method: "POST", path: "/v1/queues/orders/messages", token: tok, body: body}), 400, "invalid_argument")
		if p.Field != field {
			t.Errorf("%.60s: field = %q, want %q (%s)", body, p.Field, field, p.Detail)
		}
	}

	hx.cmds.err = domain.WithMessage(domain.ErrPayloadTooLarge, "the body has 2000 bytes, the queue takes 1024")
	expectProblem(t, hx.do(req{method: "POST", path: "/v1/queues/orders/messages", token: tok, body: `{"body":"x"}`}), http.StatusRequestEntityTooLarge, "payload_too_large")
	hx.cmds.err = domain.Invalid("headers", "header names must not be empty")
	p := expectProblem(t, hx.do(req{method: "POST", path: "/v1/queues/orders/messages", token: tok, body: `{"body":"x"}`}), 400, "invalid_argument")
	if p.Field != "headers" || p.Detail != "header names must not be empty" {
		t.Errorf("domain error lost its field or message: %+v", p)
	}
}

func TestPublishBatch(t *testing.T) {
	hx := newHarness(t, nil)
	tok := token(t, "producer", []string{ScopeMessagesPublish}, nil)
	rec := hx.do(req{method: "POST", path: "/v1/queues/orders/messages:batch", token: tok, body: `{"messages":[{"body":"a"},{"body":"b","headers":{"x":"y"}}]}`})
	want := `{"results":[{"id":"b-a","position":21},{"id":"b-b","position":22}],"position":22}` + "\n"
	if rec.Code != http.StatusCreated || rec.Body.String() != want {
		t.Fatalf("batch = %d %s, want %s", rec.Code, rec.Body, want)
	}
	if got := hx.cmds.lastCmd().(commands.PublishBatch); len(got.Messages) != 2 || got.Messages[1].Headers["x"] != "y" {
		t.Errorf("command = %+v", got)
	}

	many := strings.TrimSuffix(strings.Repeat(`{"body":"a"},`, 101), ",")
	for _, tc := range []struct {
		body  string
		field string
		index int // -1: none
	}{
		{`{"messages":[]}`, "messages", -1},
		{`{"messages":[` + many + `]}`, "messages", -1},
		{`{}`, "messages", -1},
		{`{"messages":[{"body":"a"},{"bodyy":"b"}]}`, "messages[1].bodyy", 1},
		{`{"messages":[{"body":"a"},{"body":"b"},{"body":1}]}`, "messages[2].body", 2},
		{`{"messages":[{"body":"a"},{}]}`, "messages[1].body", 1},
		{`{"messages":[{"body":"a","body_encoding":"rot13"}]}`, "messages[0].body_encoding", 0},
	} {
		p := expectProblem(t, hx.do(req{method: "POST", path: "/v1/queues/orders/messages:batch", token: tok, body: tc.body}), 400, "invalid_argument")
		gotIndex := -1
		if p.Index != nil {
			gotIndex = *p.Index
		}
		if p.Field != tc.field || gotIndex != tc.index {
			t.Errorf("%.50s: field %q index %d, want %q %d", tc.body, p.Field, gotIndex, tc.field, tc.index)
		}
	}
	// An entry the domain refuses keeps its index, all or nothing.
	hx.cmds.batchErr = domain.Invalid("messages[4].delay_ms", "must be between 0 and 900000")
	p := expectProblem(t, hx.do(req{method: "POST", path: "/v1/queues/orders/messages:batch", token: tok, body: `{"messages":[{"body":"a"}]}`}), 400, "invalid_argument")
	if p.Index == nil || *p.Index != 4 || p.Field != "messages[4].delay_ms" {
		t.Errorf("domain batch error: %+v", p)
	}
}

func TestReceiveAckNackExtend(t *testing.T) {
	hx := newHarness(t, nil)
	tok := token(t, "consumer", []string{ScopeMessagesConsume}, nil)
	rec := hx.do(req{method: "POST", path: "/v1/queues/orders/receive", token: tok, body: `{"max_messages":10,"wait_ms":0,"visibility_timeout_ms":5000,"consumer":"w1"}`})
	want := `{"messages":[{"id":"m-1","queue":"orders","body":"aGk=","body_encoding":"base64","content_type":"text/plain","headers":{},"receipt":"r-1","receive_count":1,"published_at":"2025-03-04T04:06:07.891Z","lease_expires_at":"2025-03-04T04:06:37.891Z"}],"position":16}` + "\n"
	if rec.Code != 200 || rec.Body.String() != want {
		t.Fatalf("receive = %d\n%s\nwant\n%s", rec.Code, rec.Body, want)
	}
	if got := hx.cmds.lastCmd().(commands.Receive); got.MaxMessages != 10 || *got.VisibilityTimeoutMS != 5000 || got.Consumer != "w1" || got.Queue != "orders" {
		t.Errorf("command = %+v", got)
	}
	// No body at all: defaults.
	rec = hx.do(req{method: "POST", path: "/v1/queues/orders/receive", token: tok, header: map[string]string{"Content-Type": ""}})
	if rec.Code != 200 {
		t.Fatalf("receive without body = %d %s", rec.Code, rec.Body)
	}
	if got := hx.cmds.lastCmd().(commands.Receive); got.MaxMessages != 1 || got.WaitMS != 0 || got.VisibilityTimeoutMS != nil {
		t.Errorf("defaults = %+v", got)
	}
	hx.cmds.receive = func(context.Context, commands.Receive) (commands.ReceiveResult, error) {
		return commands.ReceiveResult{Position: 5}, nil
	}
	if rec := hx.do(req{method: "POST", path: "/v1/queues/orders/receive", token: tok, body: `{}`}); rec.Body.String() != `{"messages":[],"position":5}`+"\n" {
		t.Fatalf("empty receive = %s, want an empty list", rec.Body)
	}
	for body, field := range map[string]string{
		`{"max_messages":0}`:                              "max_messages",
		`{"max_messages":101}`:                            "max_messages",
		`{"wait_ms":-1}`:                                  "wait_ms",
		`{"wait_ms":20001}`:                               "wait_ms",
		`{"consumer":"a\u0000b"}`:                         "consumer",
		`{"consumer":"` + strings.Repeat("c", 257) + `"}`: "consumer",
	} {
		p := expectProblem(t, hx.do(req{method: "POST", path: "/v1/queues/orders/receive", token: tok, body: body}), 400, "invalid_argument")
		if p.Field != field {
			t.Errorf("%s: field %q, want %q", body, p.Field, field)
		}
	}

	rec = hx.do(req{method: "POST", path: "/v1/queues/orders/ack", token: tok, body: `{"receipt":"r-1"}`})
	if rec.Code != 200 || rec.Body.String() != `{"id":"m-1","position":17}`+"\n" {
		t.Fatalf("ack = %d %s", rec.Code, rec.Body)
	}
	rec = hx.do(req{method: "POST", path: "/v1/queues/orders/ack", token: tok, body: `{"receipts":["r-1","r-2"]}`})
	if rec.Code != 200 || rec.Body.String() != `{"results":[{"receipt":"r-1","ok":true},{"receipt":"r-2","ok":false,"code":"receipt_not_found"}],"position":18}`+"\n" {
		t.Fatalf("ack batch = %d %s", rec.Code, rec.Body)
	}
	hundredOne := `"` + strings.Repeat(`r","`, 100) + `r"`
	for _, body := range []string{`{}`, `{"receipt":"a","receipts":["b"]}`, `{"receipts":[]}`, `{"receipts":[` + hundredOne + `]}`, `{"receipt":""}`, `{"receipts":["a",""]}`} {
		expectProblem(t, hx.do(req{method: "POST", path: "/v1/queues/orders/ack", token: tok, body: body}), 400, "invalid_argument")
	}
	hx.cmds.err = domain.WithMessage(domain.ErrLeaseMismatch, "the lease expired")
	expectProblem(t, hx.do(req{method: "POST", path: "/v1/queues/orders/ack", token: tok, body: `{"receipt":"old"}`}), 409, "lease_mismatch")
	hx.cmds.err = domain.ErrReceiptNotFound
	expectProblem(t, hx.do(req{method: "POST", path: "/v1/queues/orders/nack", token: tok, body: `{"receipt":"zzz"}`}), 404, "receipt_not_found")
	hx.cmds.err = nil

	rec = hx.do(req{method: "POST", path: "/v1/queues/orders/nack", token: tok, body: `{"receipt":"r-1","delay_ms":250}`})
	if rec.Code != 200 || rec.Body.String() != `{"id":"m-1","position":19}`+"\n" {
		t.Fatalf("nack = %d %s", rec.Code, rec.Body)
	}
	if got := hx.cmds.lastCmd().(commands.Nack); got != (commands.Nack{Queue: "orders", Receipt: "r-1", DelayMS: 250}) {
		t.Errorf("nack command = %+v", got)
	}
	expectProblem(t, hx.do(req{method: "POST", path: "/v1/queues/orders/nack", token: tok, body: `{"receipt":"r","delay_ms":-5}`}), 400, "invalid_argument")
	expectProblem(t, hx.do(req{method: "POST", path: "/v1/queues/orders/nack", token: tok, body: `{"delay_ms":5}`}), 400, "invalid_argument")

	rec = hx.do(req{method: "POST", path: "/v1/queues/orders/extend", token: tok, body: `{"receipt":"r-1","visibility_timeout_ms":60000}`})
	if rec.Code != 200 || rec.Body.String() != `{"id":"m-1","lease_expires_at":"2025-03-04T04:06:07.891Z","position":20}`+"\n" {
		t.Fatalf("extend = %d %s", rec.Code, rec.Body)
	}
	expectProblem(t, hx.do(req{method: "POST", path: "/v1/queues/orders/extend", token: tok, body: `{"receipt":"r-1"}`}), 400, "invalid_argument")
}

func TestLongPollEndsWithClientAndShutdown(t *testing.T) {
	hx := newHarness(t, nil)
	started := make(chan struct{}, 1)
	hx.cmds.receive = func(ctx context.Context, c commands.Receive) (commands.ReceiveResult, error) {
		started <- struct{}{}
		select {
		case <-ctx.Done():
			return commands.ReceiveResult{}, fmt.Errorf("receive: %w", ctx.Err())
		case <-time.After(time.Duration(c.WaitMS) * time.Millisecond):
			return commands.ReceiveResult{Position: 1}, nil
		}
	}
	tok := token(t, "consumer", []string{ScopeMessagesConsume}, nil)
	body := `{"wait_ms":20000}`

	// The client goes away.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan *httptest.ResponseRecorder)
	go func() {
		done <- hx.do(req{method: "POST", path: "/v1/queues/orders/receive", token: tok, body: body, ctx: ctx})
	}()
	<-started
	cancel()
	select {
	case rec := <-done:
		if rec.Code != statusClientClosed {
			t.Errorf("status after the client left = %d, want %d (logged only)", rec.Code, statusClientClosed)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the long poll did not end when the client went away")
	}

	// The server shuts down: the poll answers an empty list.
	go func() { done <- hx.do(req{method: "POST", path: "/v1/queues/orders/receive", token: tok, body: body}) }()
	<-started
	close(hx.done)
	select {
	case rec := <-done:
		if rec.Code != 200 || rec.Body.String() != `{"messages":[],"position":99}`+"\n" {
			t.Errorf("answer at shutdown = %d %s, want 200 with no messages at the head", rec.Code, rec.Body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the long poll did not end at shutdown")
	}
}

func TestStrictDecoding(t *testing.T) {
	hx := newHarness(t, nil)
	tok := adminToken(t)
	deep := strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat("}", 40)
	for _, tc := range []struct {
		name, body, detail string
	}{
		{"malformed", `{"name":`, "malformed JSON"},
		{"not an object", `["orders"]`, "JSON object"},
		{"null", `null`, "JSON object"},
		{"string", `"orders"`, "JSON object"},
		{"trailing data", `{"name":"orders"} {"name":"x"}`, "after the JSON object"},
		{"trailing garbage", `{"name":"orders"}x`, ""},
		{"unknown field", `{"name":"orders","nme":"x"}`, "unknown field"},
		{"duplicate key", `{"name":"orders","name":"payments"}`, "duplicate key"},
		{"too deep", `{"name":"orders","x":` + deep + `}`, "nested deeper"},
		{"wrong type", `{"name":true}`, "must be a string"},
		{"integer overflow", `{"name":"o","delay_ms":99999999999999999999}`, "integer"},
		{"empty body", ` `, "required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := expectProblem(t, hx.do(req{method: "POST", path: "/v1/queues", token: tok, body: tc.body}), 400, "invalid_argument")
			if !strings.Contains(p.Detail, tc.detail) {
				t.Errorf("detail %q, want it to contain %q", p.Detail, tc.detail)
			}
		})
	}
	if hx.cmds.lastCmd() != nil {
		t.Fatalf("a refused body reached the write side: %+v", hx.cmds.lastCmd())
	}
}

func TestContentTypes(t *testing.T) {
	hx := newHarness(t, nil)
	tok := adminToken(t)
	body := `{"name":"orders"}`
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin1", "application/jsonx", "garbage;;"} {
		rec := hx.do(req{method: "POST", path: "/v1/queues", token: tok, body: body, header: map[string]string{"Content-Type": ct}})
		expectProblem(t, rec, http.StatusUnsupportedMediaType, "unsupported_media_type")
	}
	rec := hx.do(req{method: "POST", path: "/v1/queues", token: tok, body: body, header: map[string]string{"Content-Type": ""}})
	expectProblem(t, rec, http.StatusUnsupportedMediaType, "unsupported_media_type")
	for _, ct := range []string{"application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8"} {
		if rec := hx.do(req{method: "POST", path: "/v1/queues", token: tok, body: body, header: map[string]string{"Content-Type": ct}}); rec.Code != 201 {
			t.Errorf("%q: status %d, want 201", ct, rec.Code)
		}
	}
}

// countingReader yields n bytes of a JSON string body and counts what was
// read from it.
type countingReader struct {
	read  atomic.Int64
	total int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	done := c.read.Load()
	if done >= c.total {
		return 0, io.EOF
	}
	n := int64(len(p))
	if n > c.total-done {
		n = c.total - done
	}
	for i := range p[:n] {
		p[i] = 'a'
	}
	if done == 0 {
		copy(p, `{"body":"`)
	}
	c.read.Add(n)
	return int(n), nil
}

func TestBodyLimits(t *testing.T) {
	hx := newHarness(t, func(d *Deps) { d.MaxBodyBytes = 64 << 10 })
	tok := adminToken(t)

	// A chunked body of 100 MiB is cut off after the limit.
	cr := &countingReader{total: 100 << 20}
	r := httptest.NewRequest("POST", "/v1/queues/orders/messages", cr)
	r.ContentLength = -1
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	hx.h.ServeHTTP(rec, r)
	expectProblem(t, rec, http.StatusRequestEntityTooLarge, "payload_too_large")
	if got := cr.read.Load(); got > 1<<20 {
		t.Fatalf("read %d bytes of a body refused at 64 KiB", got)
	}

	// A declared length over the limit is refused before reading.
	cr = &countingReader{total: 100 << 20}
	r = httptest.NewRequest("POST", "/v1/queues/orders/messages", cr)
	r.ContentLength = cr.total
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Authorization", "Bearer "+tok)
	rec = httptest.NewRecorder()
	hx.h.ServeHTTP(rec, r)
	expectProblem(t, rec, http.StatusRequestEntityTooLarge, "payload_too_large")
	if got := cr.read.Load(); got != 0 {
		t.Fatalf("read %d bytes of a body whose length was already too large", got)
	}

	// Small routes have a small limit whatever MaxBodyBytes says.
	big := `{"receipt":"` + strings.Repeat("r", DefaultSmallBodyBytes) + `"}`
	expectProblem(t, hx.do(req{method: "POST", path: "/v1/queues/orders/ack", token: tok, body: big}), http.StatusRequestEntityTooLarge, "payload_too_large")

	// Just under the limit passes.
	ok := `{"body":"` + strings.Repeat("a", 60<<10) + `"}`
	if rec := hx.do(req{method: "POST", path: "/v1/queues/orders/messages", token: tok, body: ok}); rec.Code != 201 {
		t.Fatalf("body under the limit: %d %s", rec.Code, rec.Body)
	}
}

// unavailableErr is how a store that cannot write reports it.
type unavailableErr struct{}

func (unavailableErr) Error() string     { return "disk full at /var/lib/ledgerq/events.db" }
func (unavailableErr) Unavailable() bool { return true }

func TestErrorTable(t *testing.T) {
	hx := newHarness(t, nil)
	tok := adminToken(t)
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{domain.ErrQueueNotFound, 404, "queue_not_found"},
		{fmt.Errorf("wrapped: %w", domain.ErrMessageNotFound), 404, "message_not_found"},
		{domain.ErrReceiptNotFound, 404, "receipt_not_found"},
		{domain.ErrQueueExists, 409, "queue_exists"},
		{domain.ErrLeaseMismatch, 409, "lease_mismatch"},
		{domain.ErrConflict, 409, "conflict"},
		{domain.ErrPayloadTooLarge, 413, "payload_too_large"},
		{domain.Invalid("x", "bad"), 400, "invalid_argument"},
		{&domain.Error{Kind: domain.KindNotFound, Code: "dead_letter_queue_not_found", Message: "no such dead-letter queue"}, 404, "dead_letter_queue_not_found"},
		{&domain.Error{Kind: domain.KindConflict, Message: "busy"}, 409, "conflict"},
		{fmt.Errorf("append: %w", unavailableErr{}), 503, "unavailable"},
		{fmt.Errorf("%w: %w", commands.ErrUnavailable, errors.New("disk I/O error at /var/lib/x")), 503, "unavailable"},
		{context.DeadlineExceeded, 503, "unavailable"},
		{&domain.Error{Kind: "weird", Code: "x", Message: "secret path /etc"}, 500, "internal"},
		{errors.New("sqlite: database disk image is malformed at /var/lib/x"), 500, "internal"},
	} {
		hx.cmds.err = tc.err
		rec := hx.do(req{method: "DELETE", path: "/v1/queues/orders", token: tok})
		p := expectProblem(t, rec, tc.status, tc.code)
		if tc.status >= 500 && (strings.Contains(rec.Body.String(), "/var/lib") || strings.Contains(rec.Body.String(), "/etc") || strings.Contains(rec.Body.String(), "sqlite")) {
			t.Errorf("%v: a 5xx leaked internals: %s", tc.err, rec.Body)
		}
		if p.RequestID == "" || p.RequestID != rec.Header().Get("X-Request-Id") {
			t.Errorf("problem request_id %q does not match the header %q", p.RequestID, rec.Header().Get("X-Request-Id"))
		}
	}
	// The cause of a 500 is logged with the request id.
	hx.cmds.err = errors.New("boom at /var/lib/x")
	rec := hx.do(req{method: "DELETE", path: "/v1/queues/orders", token: tok, header: map[string]string{"X-Request-Id": "trace-500"}})
	expectProblem(t, rec, 500, "internal")
	found := false
	for _, e := range hx.logs.AllEntries() {
		if e.Data["request_id"] == "trace-500" && e.Data["error"] != nil && strings.Contains(fmt.Sprint(e.Data["error"]), "boom") {
			found = true
		}
	}
	if !found {
		t.Error("the cause of the 500 was not logged with its request id")
	}
}
