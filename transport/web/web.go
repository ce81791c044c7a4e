package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
)

//go:embed pages/*.html
var pagesFS embed.FS

// The vendor folder's README is documentation for maintainers, not an asset.
//
//go:embed assets/*.js assets/*.css assets/*.svg assets/vendor/swagger-ui-dist
var assetsFS embed.FS

// Caching: pages revalidate on every load (no-cache + ETag) so a new binary
// shows at once. They link assets with ?v=<content hash>; a request that
// names the current hash may be cached forever, any other revalidates.
const (
	cacheRevalidate = "no-cache"
	cacheImmutable  = "public, max-age=31536000, immutable"
)

// csp lets the pages run only their own scripts and styles from /assets/
// and talk only to this origin. Swagger UI sets styles through the DOM,
// which style-src 'self' allows; it needs no eval and no inline script.
// Images may be data: URLs (Swagger UI's icons).
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// contentTypes is fixed here rather than taken from mime.TypeByExtension,
// which reads the host's mime.types and could change what a browser with
// nosniff accepts.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

// gzipMin: smaller files gain too little from compression to be worth it.
const gzipMin = 1024

// file is one servable body with what its responses need.
type file struct {
	name        string // embedded path, given to http.ServeContent
	body        []byte
	contentType string
	hash        string // hex SHA-256 of body
	page        bool   // an HTML page rather than an asset

	gzOnce sync.Once
	gz     []byte // compressed body, nil when not worth it
}

func newFile(name string, body []byte) *file {
	sum := sha256.Sum256(body)
	ct, ok := contentTypes[path.Ext(name)]
	if !ok {
		// Licence texts and notices, most without an extension.
		ct = "text/plain; charset=utf-8"
	}
	return &file{name: name, body: body, contentType: ct, hash: hex.EncodeToString(sum[:])}
}

// version is the short content hash that pages put in asset URLs.
func (f *file) version() string { return f.hash[:16] }

func (f *file) compressible() bool {
	return len(f.body) >= gzipMin && (strings.HasPrefix(f.contentType, "text/") || f.contentType == "image/svg+xml")
}

// gzipped compresses the body once, on first demand: the Swagger UI bundle
// is 1.7 MB and shrinks to about a third, but most servers never serve it.
func (f *file) gzipped() []byte {
	f.gzOnce.Do(func() {
		if !f.compressible() {
			return
		}
		var buf bytes.Buffer
		zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		if err != nil {
			return
		}
		if _, err := zw.Write(f.body); err != nil {
			return
		}
		if err := zw.Close(); err != nil {
			return
		}
		if buf.Len() < len(f.body) {
			f.gz = buf.Bytes()
		}
	})
	return f.gz
}

// site is the built set of pages and assets, keyed by URL path.
type site struct {
	files map[string]*file
}

var buildSite = sync.OnceValues(newSite)

func newSite() (*site, error) {
	s := &site{files: map[string]*file{}}
	err := fs.WalkDir(assetsFS, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := assetsFS.ReadFile(p)
		if err != nil {
			return err
		}
		s.files["/"+p] = newFile(p, body)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("web: read embedded assets: %w", err)
	}

	// Browsers ask for /favicon.ico when a page has no icon link (a JSON
	// response in a new tab, say); answer it with the same icon.
	if icon, ok := s.files["/assets/favicon.svg"]; ok {
		s.files["/favicon.ico"] = icon
	}

	funcs := template.FuncMap{
		// asset turns a file under assets/ into its versioned URL, and
		// fails the build for a name that does not exist.
		"asset": func(name string) (string, error) {
			f, ok := s.files["/assets/"+name]
			if !ok {
				return "", fmt.Errorf("no embedded asset %q", name)
			}
			return "/assets/" + name + "?v=" + f.version(), nil
		},
	}
	for urlPath, name := range map[string]string{"/": "pages/dashboard.html", "/docs": "pages/docs.html"} {
		t, err := template.New(path.Base(name)).Funcs(funcs).ParseFS(pagesFS, name)
		if err != nil {
			return nil, fmt.Errorf("web: parse %s: %w", name, err)
		}
		var buf bytes.Buffer
		if err := t.Execute(&buf, nil); err != nil {
			return nil, fmt.Errorf("web: render %s: %w", name, err)
		}
		f := newFile(name, buf.Bytes())
		f.page = true
		s.files[urlPath] = f
	}
	return s, nil
}

// Handler serves the dashboard at /, the docs page at /docs, the embedded
// assets under /assets/ and the icon at /favicon.ico, for GET and HEAD.
// Any other path answers 404 and any other method 405, both as
// application/problem+json. It does not serve /openapi.json: mount
// OpenAPI's bytes there.
func Handler() http.Handler {
	s, err := buildSite()
	if err != nil {
		// The embedded files are fixed at compile time and the tests build
		// them, so this cannot happen in a released binary; still, answer
		// with an error rather than crash the server.
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeProblem(w, http.StatusInternalServerError, "internal", "the web assets could not be built")
		})
	}
	return s
}

// ServeHTTP answers from the prebuilt files; it never touches the disk.
func (s *site) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f, ok := s.files[r.URL.Path]
	if !ok {
		writeProblem(w, http.StatusNotFound, "not_found", "no page or asset at "+r.URL.Path)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeProblem(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed here")
		return
	}

	h := w.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("X-Content-Type-Options", "nosniff")
	switch {
	case f.page:
		h.Set("Cache-Control", cacheRevalidate)
		h.Set("Content-Security-Policy", csp)
		// The dashboard puts the token in the SSE URL; never leak URLs.
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
	case r.URL.Query().Get("v") == f.version():
		h.Set("Cache-Control", cacheImmutable)
	default:
		h.Set("Cache-Control", cacheRevalidate)
	}

	body, etag := f.body, `"`+f.version()+`"`
	if f.compressible() {
		h.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r.Header.Get("Accept-Encoding")) {
			if gz := f.gzipped(); gz != nil {
				body, etag = gz, `"`+f.version()+`-gz"`
				h.Set("Content-Encoding", "gzip")
			}
		}
	}
	h.Set("ETag", etag)
	// ServeContent answers If-None-Match with 304, and Range and HEAD.
	http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(body))
}

// acceptsGzip reports whether an Accept-Encoding header allows gzip: listed
// (or "*") without q=0.
func acceptsGzip(header string) bool {
	for part := range strings.SplitSeq(header, ",") {
		coding, params, _ := strings.Cut(part, ";")
		coding = strings.ToLower(strings.TrimSpace(coding))
		if coding != "gzip" && coding != "*" {
			continue
		}
		for param := range strings.SplitSeq(params, ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(param), "=")
			if q, err := strconv.ParseFloat(v, 64); strings.EqualFold(k, "q") && err == nil && q == 0 {
				return false
			}
		}
		return true
	}
	return false
}

// problem is an RFC 9457 problem document, shaped like the API's (see the
// Problem schema of openapi.json).
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Code   string `json:"code"`
}

func writeProblem(w http.ResponseWriter, status int, code, detail string) {
	body, err := json.Marshal(problem{Type: "urn:ledgerq:problem:" + code, Title: http.StatusText(status), Status: status, Detail: detail, Code: code})
	if err != nil {
		http.Error(w, detail, status)
		return
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
