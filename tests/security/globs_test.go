package security

import (
	"net/http"
	"strings"
	"testing"

	"github.com/ledgerq/ledgerq/tests/harness"
)

// TestQueuePatternsCannotBeEscaped gives an admin token limited to
// "orders.*" every trick to reach another queue: the bare prefix, longer
// and look-alike names, other cases, dot segments, percent-encoding (once
// and twice), NUL and spaces, a literal star; and queue names carried in
// bodies and query strings. Only names that really are orders.<something>
// get through, and nothing about the other queues leaks.
func TestQueuePatternsCannotBeEscaped(t *testing.T) {
	t.Parallel()
	s := startServer(t, harness.Options{})
	root := s.token("glob-root", "admin")
	for _, q := range []string{"orders", "orders.a", "orders.a.b", "ordersx", "Orders.a", "billing", "orders.dlq"} {
		harness.MustStatus(t, s.Call("POST", "/v1/queues", root, map[string]any{"name": q}), 201, "create "+q)
	}
	billingMsg := s.Call("POST", "/v1/queues/billing/messages", root, map[string]any{"body": "billing secret"})
	harness.MustStatus(t, billingMsg, 201, "publish to billing")
	limited := s.token("glob-user", "admin", "orders.*")

	const (
		allow       = "allowed"
		forbidden   = "forbidden (403)"
		badName     = "invalid name (400)"
		noRoute     = "no route (404/405)"
		notExisting = "queue_not_found (404)"
	)
	cases := []struct {
		segment string // raw, as it goes on the wire
		want    string
		landsIn string // for allowed: the queue that must receive the message
	}{
		{"orders.a", allow, "orders.a"},
		{"orders.a.b", allow, "orders.a.b"},
		{"%6Frders.a", allow, "orders.a"},  // an encoded ASCII letter is the same name
		{"orders%2Ea", allow, "orders.a"},  // an encoded dot too
		{"orders", forbidden, ""},          // the bare prefix: the pattern needs the dot
		{"ordersx", forbidden, ""},         // a longer word is not a child
		{"Orders.a", forbidden, ""},        // bytes, not case-folded
		{"billing", forbidden, ""},         // another queue
		{"orders.%2e%2e", notExisting, ""}, // "orders.." is a flat name of its own, not a path
		{"%D0%BErders.a", badName, ""},     // Cyrillic о
		{"%EF%BD%8Frders.a", badName, ""},  // fullwidth ｏ
		{"orders%E2%80%A4a", badName, ""},  // one dot leader for the dot
		{"orders.a%2F..%2F..%2Fbilling", badName, ""},
		{"orders.a%2f..%2fbilling", badName, ""},
		{"%2e%2e", badName, ""},
		{"..", badName, ""},
		{"orders.a%00", badName, ""},
		{"orders.a%20", badName, ""},
		{"orders.%2A", badName, ""},        // a literal star is no name
		{"orders.%252e%252e", badName, ""}, // decoded once only: "%2e" stays text
		{"orders.a%5C..%5Cbilling", badName, ""},
		{"orders.a/../billing", noRoute, ""}, // a dot segment is never cleaned into another route
		{"orders.a/%2e%2e/billing", noRoute, ""},
	}
	count := func(queue string) float64 {
		r := s.Call("GET", "/v1/queues/"+queue, root, nil, "X-Ledgerq-Min-Position", headOf(s, root))
		harness.MustStatus(t, r, 200, "get "+queue)
		stats, _ := r.JSON["stats"].(map[string]any)
		v, _ := stats["published_total"].(float64)
		return v
	}
	before := map[string]float64{}
	for _, q := range []string{"orders", "ordersx", "Orders.a", "billing", "orders.a", "orders.a.b"} {
		before[q] = count(q)
	}
	published := map[string]float64{}
	for _, c := range cases {
		pub := s.Call("POST", "/v1/queues/"+c.segment+"/messages", limited, map[string]any{"body": "probe " + c.segment})
		get := s.Call("GET", "/v1/queues/"+c.segment, limited, nil)
		recv := s.Call("POST", "/v1/queues/"+c.segment+"/receive", limited, map[string]any{"max_messages": 1})
		for _, r := range []harness.Response{pub, get, recv} {
			switch c.want {
			case allow:
				if r.Status != 200 && r.Status != 201 {
					t.Errorf("%s: %s, want it allowed", c.segment, r)
				}
			case forbidden:
				if r.Status != http.StatusForbidden || r.Str("code") != "forbidden" {
					t.Errorf("%s: %s, want 403 forbidden", c.segment, r)
				}
			case badName:
				if r.Status != http.StatusBadRequest || r.Str("code") != "invalid_argument" {
					t.Errorf("%s: %s, want 400 invalid_argument", c.segment, r)
				}
			case notExisting:
				if r.Status != http.StatusNotFound || r.Str("code") != "queue_not_found" {
					t.Errorf("%s: %s, want 404 queue_not_found", c.segment, r)
				}
			case noRoute:
				if r.Status != http.StatusNotFound && r.Status != http.StatusMethodNotAllowed {
					t.Errorf("%s: %s, want no route", c.segment, r)
				}
			}
		}
		if c.want == allow {
			published[c.landsIn]++
			if got := pub.Str("queue"); got != c.landsIn {
				t.Errorf("%s: published to %q, want %q", c.segment, got, c.landsIn)
			}
		}
	}
	// Only the allowed queues received anything.
	for q, n := range before {
		if got, want := count(q), n+published[q]; got != want {
			t.Errorf("queue %s: published_total %v after the probes, want %v", q, got, want)
		}
	}

	// Names in bodies and query strings obey the same patterns.
	harness.MustProblem(t, s.Call("POST", "/v1/queues", limited, map[string]any{"name": "billing.x"}), 403, "forbidden", "create outside the pattern")
	harness.MustProblem(t, s.Call("POST", "/v1/queues", limited, map[string]any{"name": "orders.new", "dead_letter_queue": "billing", "max_receive_count": 1}),
		403, "forbidden", "a dead-letter queue outside the pattern")
	harness.MustProblem(t, s.Call("PATCH", "/v1/queues/orders.a", limited, map[string]any{"dead_letter_queue": "billing", "max_receive_count": 1}),
		403, "forbidden", "configure a dead-letter queue outside the pattern")
	harness.MustProblem(t, s.Call("POST", "/v1/queues/orders.a/redrive", limited, map[string]any{"to": "billing"}), 403, "forbidden", "redrive to another queue")
	harness.MustProblem(t, s.Call("POST", "/v1/queues", limited, map[string]any{"name": "оrders.x"}), 400, "invalid_argument", "create a look-alike name")
	harness.MustProblem(t, s.Call("GET", "/v1/subscribe?queues=orders.a,billing", limited, nil), 403, "forbidden", "subscribe to another queue")
	harness.MustProblem(t, s.Call("GET", "/v1/messages/"+billingMsg.Str("id"), limited, nil), 404, "message_not_found", "read a message of another queue by id")

	// Listings, the event log and the reconstructed state show nothing of
	// the other queues.
	head := headOf(s, root)
	for _, path := range []string{"/v1/queues", "/v1/queues?prefix=b", "/v1/events?limit=1000", "/v1/events?stream=queue-billing",
		"/v1/audit/state?at_position=" + head} {
		r := s.Call("GET", path, limited, nil, "X-Ledgerq-Min-Position", head)
		harness.MustStatus(t, r, 200, path)
		body := string(r.Body)
		for _, other := range []string{`"billing"`, "queue-billing", `"ordersx"`, `"orders"`, `"Orders.a"`, "billing secret"} {
			if strings.Contains(body, other) {
				t.Errorf("%s shows %s to a token limited to orders.*: %s", path, other, body)
			}
		}
	}
	// The limited token's listing is exactly its queues.
	r := s.Call("GET", "/v1/queues", limited, nil, "X-Ledgerq-Min-Position", head)
	var names []string
	qs, _ := r.JSON["queues"].([]any)
	for _, q := range qs {
		names = append(names, q.(map[string]any)["name"].(string))
	}
	if got, want := strings.Join(names, ","), "orders.a,orders.a.b,orders.dlq"; got != want {
		t.Errorf("limited listing = %s, want %s", got, want)
	}
	s.alive()
}

// headOf is the position of the last event in the log, as a string for
// X-Ledgerq-Min-Position.
func headOf(s *server, token string) string {
	s.t.Helper()
	r := s.Call("GET", "/v1/audit/verify", token, nil)
	harness.MustStatus(s.t, r, 200, "verify for the head")
	return jsonNumber(r.JSON["head_position"])
}
