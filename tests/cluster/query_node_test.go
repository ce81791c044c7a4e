package cluster

import (
	"context"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ledgerq/ledgerq/eventstore/relay"
	"github.com/ledgerq/ledgerq/tests/harness"
	"github.com/ledgerq/ledgerq/tests/redistest"
)

// TestQueryNodeServesWhatTheWriteNodeWrote runs a write node and a query
// node as two processes over one Redis and reads from the second what was
// written to the first: the same queue stats and message lists at the same
// position, the same message history, live SSE updates; the query node
// refuses commands, and after a restart it resumes from its own read model
// and catches up with what was written while it was down.
func TestQueryNodeServesWhatTheWriteNodeWrote(t *testing.T) {
	redis := redistest.Start(t)
	w := startNode(t, "write", "--redis", redis.URL())
	q := startNode(t, "query", "--redis", redis.URL(), "--role", "query")
	tok := w.token()
	queues := []string{"jobs-dlq", "jobs", "mail"}
	sub := q.Subscribe(harness.Subscription{Query: "queues=" + strings.Join(queues, ",") + "&kinds=message", Token: tok})

	c := &tally{}
	harness.MustStatus(t, c.note(w.Call("POST", "/v1/queues", tok, map[string]any{"name": "jobs-dlq"})), http.StatusCreated, "create jobs-dlq")
	harness.MustStatus(t, c.note(w.Call("POST", "/v1/queues", tok, map[string]any{"name": "jobs", "dead_letter_queue": "jobs-dlq", "max_receive_count": 1})), http.StatusCreated, "create jobs")
	harness.MustStatus(t, c.note(w.Call("POST", "/v1/queues", tok, map[string]any{"name": "mail"})), http.StatusCreated, "create mail")
	const jobs, mails = 120, 80
	publishMany(t, w, tok, c, "jobs", jobs, 4)
	publishMany(t, w, tok, c, "mail", mails, 4)
	// jobs: 10 acked, 5 nacked past max_receive_count (dead-lettered), 5
	// left in flight; mail: 10 nacked, ready again.
	const acks, deadLettered, held, released = 10, 5, 5, 10
	acked := settle(t, w, tok, c, "jobs", receive(t, w, tok, c, "jobs", acks+deadLettered+held), acks, deadLettered)
	settle(t, w, tok, c, "mail", receive(t, w, tok, c, "mail", released), 0, released)
	last := c.lastPosition()

	// The read models agree at the write node's last position.
	want := w.view(tok, last, queues...)
	got := q.view(tok, last, queues...)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("query node differs from the write node at position %d:\nquery %v\nwrite %v", last, got, want)
	}
	for _, chk := range []struct {
		queue, stat string
		want        int64
	}{
		{"jobs", "published_total", jobs}, {"jobs", "acked_total", acks}, {"jobs", "dead_lettered_total", deadLettered},
		{"jobs", "in_flight", held}, {"jobs", "ready", jobs - acks - deadLettered - held},
		{"jobs-dlq", "ready", deadLettered}, {"mail", "released_total", released}, {"mail", "ready", mails},
	} {
		if g := harness.Stat(got.Queues[chk.queue], chk.stat); g != chk.want {
			t.Errorf("%s %s = %d on the query node, want %d", chk.queue, chk.stat, g, chk.want)
		}
	}

	// Message history is readable on the query node, as on the write node.
	for _, id := range []string{acked[0], got.Messages["jobs"]["dead_lettered"][0]} {
		hq := q.GetAt("/v1/messages/"+id, tok, last)
		hw := w.GetAt("/v1/messages/"+id, tok, last)
		if !reflect.DeepEqual(hq.JSON, hw.JSON) {
			t.Fatalf("message %s: query node %s, write node %s", id, hq.Body, hw.Body)
		}
	}
	if types := historyTypes(q.GetAt("/v1/messages/"+acked[0], tok, last)); !slices.Equal(types, []string{"MessagePublished", "MessageLeased", "MessageAcked"}) {
		t.Errorf("history of an acked message on the query node: %v", types)
	}

	// SSE on the query node saw every message published, and the acks.
	ids := c.publishedIDs()
	seen := collect(t, sub, 30*time.Second, func(seen map[string][]string) bool {
		for _, id := range ids {
			if len(seen[id]) == 0 {
				return false
			}
		}
		for _, id := range acked {
			if !slices.Contains(seen[id], "acked") {
				return false
			}
		}
		return true
	})
	if len(seen) < len(ids) {
		t.Fatalf("SSE on the query node: %d messages, want %d", len(seen), len(ids))
	}
	sub.Close()

	// No command route is served by the query node: every command answers
	// 405 with a reason, Allow: GET where the path has a query route and an
	// empty Allow where only commands use it.
	for _, cmd := range []struct {
		method, path string
		queryPath    bool
	}{
		{"POST", "/v1/queues", true}, {"PATCH", "/v1/queues/jobs", true}, {"DELETE", "/v1/queues/jobs", true},
		{"POST", "/v1/queues/jobs/messages", true}, {"POST", "/v1/queues/jobs/messages:batch", false},
		{"POST", "/v1/queues/jobs/receive", false}, {"POST", "/v1/queues/jobs/ack", false},
		{"POST", "/v1/queues/jobs/nack", false}, {"POST", "/v1/queues/jobs/purge", false},
	} {
		r := q.Call(cmd.method, cmd.path, tok, map[string]any{"name": "x", "body": "x", "receipt": "x"})
		wantAllow := ""
		if cmd.queryPath {
			wantAllow = "GET"
		}
		ok := r.Status == http.StatusMethodNotAllowed && r.Str("code") == "method_not_allowed" &&
			r.Header.Get("Allow") == wantAllow && strings.Contains(r.Str("detail"), "queries only")
		if !ok || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/problem+json") {
			t.Errorf("%s %s on the query node: %d %q Allow %q detail %q, want 405 method_not_allowed Allow %q",
				cmd.method, cmd.path, r.Status, r.Str("code"), r.Header.Get("Allow"), r.Str("detail"), wantAllow)
		}
	}
	if r := w.GetAt("/v1/queues/jobs", tok, last); harness.Stat(r.JSON, "published_total") != jobs {
		t.Fatalf("commands sent to the query node changed the write node: %s", r.Body)
	}

	// Restart: the query node resumes from its own read model. To show it
	// needs nothing it had already applied, the stream entries it consumed
	// are trimmed from Redis while it is down; a node rebuilding from zero
	// could not get past the hole.
	q.GetAt("/v1/queues/jobs", tok, last)
	q.Stop()
	rdb := redisClient(t, redis.Addr())
	consumed := lastEntryID(t, rdb)
	publishMany(t, w, tok, c, "mail", 40, 2)
	settle(t, w, tok, c, "jobs", receive(t, w, tok, c, "jobs", 5), 5, 0)
	w.GetAt("/v1/queues/mail", tok, c.lastPosition()) // the write node consumes the same stream: it is all there
	trimmed, err := rdb.XTrimMinID(context.Background(), relay.Topic, nextEntryID(t, consumed)).Result()
	if err != nil || trimmed == 0 {
		t.Fatalf("trim the entries the query node consumed: %d trimmed, %v", trimmed, err)
	}
	q.Restart()
	sub = q.Subscribe(harness.Subscription{Query: "queues=mail&kinds=message", Token: tok})
	before := len(c.publishedIDs())
	publishMany(t, w, tok, c, "mail", 10, 1)
	last = c.lastPosition()
	want = w.view(tok, last, queues...)
	got = q.view(tok, last, queues...)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after the restart the query node differs at position %d:\nquery %v\nwrite %v", last, got, want)
	}
	fresh := c.publishedIDs()[before:]
	collect(t, sub, 30*time.Second, func(seen map[string][]string) bool {
		for _, id := range fresh {
			if len(seen[id]) == 0 {
				return false
			}
		}
		return true
	})
}

// historyTypes lists the event types of a GET /v1/messages/{id} answer.
func historyTypes(r harness.Response) []string {
	var out []string
	hs, _ := r.JSON["history"].([]any)
	for _, h := range hs {
		out = append(out, h.(map[string]any)["type"].(string))
	}
	return out
}

func redisClient(t *testing.T, addr string) *goredis.Client {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// lastEntryID is the id of the newest entry of the events stream.
func lastEntryID(t *testing.T, c *goredis.Client) string {
	t.Helper()
	es, err := c.XRevRangeN(context.Background(), relay.Topic, "+", "-", 1).Result()
	if err != nil || len(es) != 1 {
		t.Fatalf("newest entry of %s: %v (%d entries)", relay.Topic, err, len(es))
	}
	return es[0].ID
}

// nextEntryID is the smallest stream entry id after id ("ms-seq").
func nextEntryID(t *testing.T, id string) string {
	t.Helper()
	ms, seq, ok := strings.Cut(id, "-")
	n, err := strconv.ParseUint(seq, 10, 64)
	if !ok || err != nil {
		t.Fatalf("stream entry id %q", id)
	}
	return ms + "-" + strconv.FormatUint(n+1, 10)
}
