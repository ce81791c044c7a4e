package evidence

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/sirupsen/logrus"

	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/eventstore"
	"github.com/ledgerq/ledgerq/tests/harness"
)

// Shape of the figures' log.
const (
	figureEvents = 1_000_000
	figureQueues = 10
	figureBody   = 256 // bytes per message body
)

// TestFiguresMillionEventLog writes a 1,000,000-event log of realistic
// domain events (publish, lease, ack) through the event store and times
// what an auditor does with it: `ledgerq audit verify`, `ledgerq replay` to
// the head and to points near the start and the head, the server's start-up
// on it, and GET /v1/audit/state and /v1/audit/verify over HTTP. Run with
// LEDGERQ_FIGURES=1; it takes a few minutes.
func TestFiguresMillionEventLog(t *testing.T) {
	if os.Getenv("LEDGERQ_FIGURES") != "1" {
		t.Skip("figures run only with LEDGERQ_FIGURES=1")
	}
	dir := t.TempDir()
	var rows []string
	row := func(what string, d time.Duration, events int64) {
		r := fmt.Sprintf("  %-56s %8.2f s", what, d.Seconds())
		if events > 0 {
			r += fmt.Sprintf("  %10.0f events/s", float64(events)/d.Seconds())
		}
		rows = append(rows, r)
	}
	defer func() { t.Logf("1,000,000-event log\n%s", strings.Join(rows, "\n")) }()

	start := time.Now()
	head, messages := writeMillion(t, filepath.Join(dir, "events.db"))
	row("write (eventstore.Append, 1000 events/request)", time.Since(start), head)
	if fi, err := os.Stat(filepath.Join(dir, "events.db")); err == nil {
		rows = append(rows, fmt.Sprintf("  %-56s %8.0f MiB", "events.db size", float64(fi.Size())/(1<<20)))
	}

	start = time.Now()
	if rep := harness.VerifyOffline(t, dir); rep.Checked != head {
		t.Fatalf("audit verify: checked %d events, the log has %d", rep.Checked, head)
	}
	row("ledgerq audit verify (whole chain)", time.Since(start), head)

	start = time.Now()
	state := queuesByName(t, harness.Replay(t, dir))
	row("ledgerq replay (to the head)", time.Since(start), head)
	var published int64
	for _, q := range state {
		published += harness.Stat(q, "published_total")
	}
	if published != messages || len(state) != figureQueues {
		t.Fatalf("replay: %d queues, %d published; want %d and %d", len(state), published, figureQueues, messages)
	}
	near := map[string]int64{"near the start": 1000, "near the head": head - 1000}
	offline := map[int64]map[string]map[string]any{}
	for _, label := range []string{"near the start", "near the head"} {
		pos := near[label]
		start = time.Now()
		offline[pos] = queuesByName(t, harness.Replay(t, dir, "--at-position", strconv.FormatInt(pos, 10)))
		row(fmt.Sprintf("ledgerq replay --at-position %d (%s)", pos, label), time.Since(start), 0)
	}

	start = time.Now()
	s := startServer(t, dir)
	row("serve: start until /readyz 200", time.Since(start), 0)
	for _, m := range s.LogRecords("command state rebuilt from the log") {
		ms, _ := m["took_ms"].(float64)
		row("  of which the command state's rebuild", time.Duration(ms)*time.Millisecond, head)
	}
	tok := adminToken(s)
	s.GetAt("/v1/queues", tok, head)
	row("serve: start until the read models reach the head", time.Since(start), head)

	for _, label := range []string{"near the start", "near the head"} {
		pos := near[label]
		path := "/v1/audit/state?at_position=" + strconv.FormatInt(pos, 10)
		var took []time.Duration
		var got map[string]map[string]any
		for i := 0; i < 3; i++ {
			start = time.Now()
			r := harness.MustStatus(t, s.Call("GET", path, tok, nil), http.StatusOK, path)
			took = append(took, time.Since(start))
			got = queuesByName(t, r.Body)
		}
		if !reflect.DeepEqual(got, offline[pos]) {
			t.Errorf("GET %s differs from ledgerq replay --at-position %d", path, pos)
		}
		sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
		row(fmt.Sprintf("GET /v1/audit/state?at_position=%d (median of 3)", pos), took[1], 0)
	}
	start = time.Now()
	if r := harness.MustStatus(t, s.Call("GET", "/v1/audit/verify", tok, nil), http.StatusOK, "verify"); r.JSON["ok"] != true {
		t.Fatalf("verify over HTTP: %s", r.Body)
	}
	row("GET /v1/audit/verify (whole chain)", time.Since(start), head)
}

// writeMillion appends figureEvents events to a new log at path: queues
// created, then messages each published, leased and acked, except every
// tenth left ready and every tenth plus one left leased (until tomorrow),
// so a replay ends with live messages of both kinds. It returns the head
// and the number of messages.
func writeMillion(t *testing.T, path string) (head, messages int64) {
	t.Helper()
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	store, err := eventstore.Open(path, eventstore.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	body := strings.Repeat("x", figureBody)
	base := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)

	const perRequest = 1000
	versions := make([]int64, figureQueues)
	pending := make([]*eventstore.Pending, 0, 16)
	batches := make([][]eventstore.NewEvent, figureQueues)
	wait := func(all bool) {
		for len(pending) > 0 && (all || len(pending) == cap(pending)) {
			if _, err := pending[0].Wait(ctx); err != nil {
				t.Fatalf("append: %v", err)
			}
			pending = pending[1:]
		}
	}
	flush := func(q int) {
		if len(batches[q]) == 0 {
			return
		}
		wait(false)
		pending = append(pending, store.Submit(eventstore.AppendRequest{
			Metadata: eventstore.Metadata{Subject: "figures"},
			Streams: []eventstore.StreamAppend{{
				StreamID: domain.StreamID(queueName(q)), ExpectedVersion: versions[q], Events: batches[q],
			}},
		}))
		versions[q] += int64(len(batches[q]))
		head += int64(len(batches[q]))
		batches[q] = nil
	}
	add := func(q int, e domain.Event) {
		data, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		batches[q] = append(batches[q], eventstore.NewEvent{Type: e.EventType(), SchemaVersion: e.SchemaVersion(), Data: data})
		if len(batches[q]) >= perRequest {
			flush(q)
		}
	}
	attrs := domain.DefaultAttributes()
	for q := 0; q < figureQueues; q++ {
		add(q, domain.QueueCreated{Queue: queueName(q), Attributes: attrs, CreatedAt: base})
	}
	var events int64 = figureQueues
	for i := int64(0); events < figureEvents; i++ {
		q := int(i % figureQueues)
		at := base.Add(time.Duration(i) * time.Millisecond)
		id := ulid.Make().String()
		add(q, domain.MessagePublished{
			Queue: queueName(q), MessageID: id, Body: body, BodyEncoding: domain.EncodingUTF8, BodySize: figureBody,
			ContentType: "application/json", Headers: map[string]string{"trace": strconv.FormatInt(i, 10)},
			PublishedAt: at, AvailableAt: at, ExpiresAt: at.Add(time.Duration(attrs.RetentionMS) * time.Millisecond),
		})
		events++
		messages++
		if i%10 == 0 || events >= figureEvents {
			continue // left ready
		}
		var nonce [domain.ReceiptNonceSize]byte
		copy(nonce[:], id)
		receipt, err := domain.NewReceipt(id, nonce)
		if err != nil {
			t.Fatal(err)
		}
		hash := domain.ReceiptHash(receipt)
		leasedAt := at.Add(time.Millisecond)
		add(q, domain.MessageLeased{Queue: queueName(q), MessageID: id, ReceiptHash: hash, Consumer: "worker",
			LeasedAt: leasedAt, LeaseExpiresAt: time.Now().Add(24 * time.Hour), ReceiveCount: 1})
		events++
		if i%10 == 1 || events >= figureEvents {
			continue // left leased
		}
		add(q, domain.MessageAcked{Queue: queueName(q), MessageID: id, ReceiptHash: hash, AckedAt: leasedAt.Add(time.Millisecond)})
		events++
	}
	for q := range batches {
		flush(q)
	}
	wait(true)
	if store.Head() != head || head != figureEvents {
		t.Fatalf("log head %d, wrote %d, want %d", store.Head(), head, figureEvents)
	}
	return head, messages
}

func queueName(q int) string { return fmt.Sprintf("figures-%02d", q) }
