package transport

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkHandler measures the edge's own cost per request over fakes:
// JWT verification, routing, guards, decoding, encoding, access log and
// metrics (the log goes to a discarding hook-less logger).
func BenchmarkHandler(b *testing.B) {
	hx := newHarness(b, nil)
	tok := adminToken(b)
	publish := `{"body":"` + strings.Repeat("x", 1024) + `","headers":{"k":"v"}}`
	for _, bc := range []struct {
		name, method, path, body string
	}{
		{"get_queue", "GET", "/v1/queues/orders", ""},
		{"publish_1KiB", "POST", "/v1/queues/orders/messages", publish},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var body io.Reader
				if bc.body != "" {
					body = strings.NewReader(bc.body)
				}
				r := httptest.NewRequest(bc.method, bc.path, body)
				r.Header.Set("Authorization", "Bearer "+tok)
				r.Header.Set("Content-Type", "application/json")
				rec := httptest.NewRecorder()
				hx.h.ServeHTTP(rec, r)
				if rec.Code >= 300 {
					b.Fatalf("status %d", rec.Code)
				}
				hx.logs.Reset()
			}
		})
	}
}

// BenchmarkUnmarshalStrict: the strict decoding of a publish body with a
// 200-byte message (checkShape, then encoding/json).
func BenchmarkUnmarshalStrict(b *testing.B) {
	data := []byte(`{"body":"` + strings.Repeat("abcdefghij", 20) + `","headers":{"trace":"t-1"},"content_type":"text/plain"}`)
	b.ReportAllocs()
	for b.Loop() {
		var mb messageBody
		if err := unmarshalStrict(data, &mb); err != nil {
			b.Fatal(err)
		}
	}
}
