package web_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/ledgerq/ledgerq/transport/web"
)

func get(t *testing.T, h http.Handler, method, target string, header map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func readBody(t *testing.T, res *http.Response) []byte {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return b
}

func TestPages(t *testing.T) {
	h := web.Handler()
	for _, c := range []struct {
		path string
		must []string // fragments the page needs
	}{
		// The element ids are the contract with the browser test.
		{"/", []string{`id="token-input"`, `id="token-save"`, `id="token-forget"`, `id="conn-state"`, `id="queue-rows"`, `id="feed"`, `rel="icon"`}},
		{"/docs", []string{`id="swagger-ui"`, "swagger-ui-bundle.js", "docs.js", `rel="icon"`}},
	} {
		t.Run(c.path, func(t *testing.T) {
			res := get(t, h, http.MethodGet, c.path, nil)
			body := string(readBody(t, res))
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200", res.StatusCode)
			}
			if got, want := res.Header.Get("Content-Type"), "text/html; charset=utf-8"; got != want {
				t.Errorf("Content-Type %q, want %q", got, want)
			}
			if got := res.Header.Get("Cache-Control"); got != "no-cache" {
				t.Errorf("Cache-Control %q, want no-cache: a new binary must show at once", got)
			}
			if res.Header.Get("ETag") == "" {
				t.Error("no ETag")
			}
			csp := res.Header.Get("Content-Security-Policy")
			if !strings.Contains(csp, "script-src 'self';") || !strings.Contains(csp, "style-src 'self';") || strings.Contains(csp, "unsafe") {
				t.Errorf("Content-Security-Policy %q must allow only the page's own scripts and styles", csp)
			}
			if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options %q", got)
			}
			if got := res.Header.Get("Referrer-Policy"); got != "no-referrer" {
				t.Errorf("Referrer-Policy %q", got)
			}
			for _, m := range c.must {
				if !strings.Contains(body, m) {
					t.Errorf("page lacks %s", m)
				}
			}
		})
	}
}

var assetURL = regexp.MustCompile(`(?:src|href)="(/assets/[^"]+)"`)

// TestPageAssetsResolve follows every asset a page links: each must exist,
// carry the right type, and be cacheable for good under its versioned URL.
func TestPageAssetsResolve(t *testing.T) {
	h := web.Handler()
	wantType := map[string]string{
		".js":  "text/javascript; charset=utf-8",
		".css": "text/css; charset=utf-8",
		".svg": "image/svg+xml",
	}
	seen := 0
	for _, page := range []string{"/", "/docs"} {
		body := string(readBody(t, get(t, h, http.MethodGet, page, nil)))
		for _, m := range assetURL.FindAllStringSubmatch(body, -1) {
			seen++
			url := m[1]
			if !strings.Contains(url, "?v=") {
				t.Errorf("%s links %s without a version", page, url)
			}
			res := get(t, h, http.MethodGet, url, nil)
			if res.StatusCode != http.StatusOK {
				t.Errorf("%s → %d", url, res.StatusCode)
				continue
			}
			ext := filepath.Ext(strings.SplitN(url, "?", 2)[0])
			if got := res.Header.Get("Content-Type"); got != wantType[ext] {
				t.Errorf("%s Content-Type %q, want %q", url, got, wantType[ext])
			}
			if got := res.Header.Get("Cache-Control"); got != "public, max-age=31536000, immutable" {
				t.Errorf("%s Cache-Control %q, want immutable", url, got)
			}
		}
	}
	if seen < 6 {
		t.Errorf("found %d asset links in the pages; the regexp or the pages changed", seen)
	}
}

func TestAssetCaching(t *testing.T) {
	h := web.Handler()
	for _, target := range []string{"/assets/dashboard.js", "/assets/dashboard.js?v=0000000000000000"} {
		res := get(t, h, http.MethodGet, target, nil)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s status %d", target, res.StatusCode)
		}
		// Without the current version the URL may outlive this binary: revalidate.
		if got := res.Header.Get("Cache-Control"); got != "no-cache" {
			t.Errorf("%s Cache-Control %q, want no-cache", target, got)
		}
		etag := res.Header.Get("ETag")
		if etag == "" {
			t.Fatalf("%s has no ETag", target)
		}
		again := get(t, h, http.MethodGet, target, map[string]string{"If-None-Match": etag})
		if again.StatusCode != http.StatusNotModified {
			t.Errorf("%s with If-None-Match: status %d, want 304", target, again.StatusCode)
		}
	}
}

func TestGzip(t *testing.T) {
	h := web.Handler()
	const target = "/assets/vendor/swagger-ui-dist/swagger-ui-bundle.js"
	plain := get(t, h, http.MethodGet, target, nil)
	plainBody := readBody(t, plain)
	if plain.Header.Get("Content-Encoding") != "" {
		t.Fatal("compressed without Accept-Encoding")
	}

	zipped := get(t, h, http.MethodGet, target, map[string]string{"Accept-Encoding": "br, gzip;q=0.8"})
	if got := zipped.Header.Get("Content-Encoding"); got != "gzip" {
		t.Fatalf("Content-Encoding %q, want gzip", got)
	}
	if !strings.Contains(zipped.Header.Get("Vary"), "Accept-Encoding") {
		t.Error("no Vary: Accept-Encoding; caches would mix encodings")
	}
	if zipped.Header.Get("ETag") == plain.Header.Get("ETag") {
		t.Error("gzip and identity bodies share an ETag")
	}
	compressed := readBody(t, zipped)
	zr, err := gzip.NewReader(bytes.NewReader(compressed))
	if err != nil {
		t.Fatalf("gzip reader: %v", err)
	}
	unzipped, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	if !bytes.Equal(unzipped, plainBody) {
		t.Error("gunzipped body differs from the plain one")
	}
	if len(compressed) >= len(plainBody)/2 {
		t.Errorf("compressed to %d of %d bytes: expected better than half for minified JavaScript", len(compressed), len(plainBody))
	}

	refused := get(t, h, http.MethodGet, target, map[string]string{"Accept-Encoding": "gzip;q=0, identity"})
	if got := refused.Header.Get("Content-Encoding"); got != "" {
		t.Errorf("gzip;q=0 still got Content-Encoding %q", got)
	}
}

func TestNotFoundAndMethods(t *testing.T) {
	h := web.Handler()
	for _, path := range []string{"/nope", "/docs/", "/assets/", "/assets/nope.js", "/assets/vendor/README.md", "/pages/dashboard.html", "/index.html"} {
		res := get(t, h, http.MethodGet, path, nil)
		if res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", path, res.StatusCode)
			continue
		}
		if got := res.Header.Get("Content-Type"); got != "application/problem+json" {
			t.Errorf("GET %s: Content-Type %q, want application/problem+json", path, got)
		}
		var p struct {
			Type   string `json:"type"`
			Status int    `json:"status"`
			Title  string `json:"title"`
			Code   string `json:"code"`
		}
		if err := json.Unmarshal(readBody(t, res), &p); err != nil || p.Status != 404 || p.Title == "" ||
			p.Code != "not_found" || p.Type != "urn:ledgerq:problem:not_found" {
			t.Errorf("GET %s: problem body %+v, err %v", path, p, err)
		}
	}

	res := get(t, h, http.MethodPost, "/", nil)
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: status %d, want 405", res.StatusCode)
	}
	if got := res.Header.Get("Allow"); got != "GET, HEAD" {
		t.Errorf("POST /: Allow %q", got)
	}

	head := get(t, h, http.MethodHead, "/", nil)
	if head.StatusCode != http.StatusOK || len(readBody(t, head)) != 0 {
		t.Errorf("HEAD /: status %d with a body", head.StatusCode)
	}
}

func TestFavicon(t *testing.T) {
	res := get(t, web.Handler(), http.MethodGet, "/favicon.ico", nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d", res.StatusCode)
	}
	if got := res.Header.Get("Content-Type"); got != "image/svg+xml" {
		t.Errorf("Content-Type %q", got)
	}
	if !bytes.HasPrefix(readBody(t, res), []byte("<svg")) {
		t.Error("favicon is not the SVG icon")
	}
}

// TestNoMarkupFromData guards the dashboard's rule that server data never
// becomes markup, and the pages' CSP: no inline script or handlers.
func TestNoMarkupFromData(t *testing.T) {
	forbidden := regexp.MustCompile(`\.innerHTML|\.outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|createContextualFragment`)
	for _, f := range []string{"assets/dashboard.js", "assets/docs.js"} {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if m := forbidden.Find(src); m != nil {
			t.Errorf("%s uses %s", f, m)
		}
	}
	inline := regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]|\son[a-z]+=`)
	for _, f := range []string{"pages/dashboard.html", "pages/docs.html"} {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if m := inline.Find(src); m != nil {
			t.Errorf("%s has inline script: %s", f, m)
		}
	}
}

// TestProblemsMatchTheDocument: the handler's own errors are shaped like
// every other problem of the API.
func TestProblemsMatchTheDocument(t *testing.T) {
	schema := loadDoc(t).Components.Schemas["Problem"].Value
	h := web.Handler()
	for _, c := range []struct{ method, path string }{{http.MethodGet, "/nope"}, {http.MethodDelete, "/docs"}} {
		var v any
		if err := json.Unmarshal(readBody(t, get(t, h, c.method, c.path, nil)), &v); err != nil {
			t.Fatalf("%s %s: %v", c.method, c.path, err)
		}
		if err := schema.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
			t.Errorf("%s %s: problem does not match the Problem schema: %v", c.method, c.path, err)
		}
	}
}
