package limits

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

// startLimit serves the limit handler for one test and returns it with an
// expiry an hour away for the test's tokens.
func startLimit(t *testing.T) (*httptest.Server, int64) {
	t.Helper()
	h, err := NewHTTPHandler(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, time.Now().Add(time.Hour).Unix()
}

func TestHTTPHandlerPublish(t *testing.T) {
	srv, exp := startLimit(t)
	good := sign(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "b", "scope": "messages:publish", "exp": exp})
	admin := sign(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "b", "scope": "admin", "exp": exp})
	body := `{"body":"` + Body(BodyBytes) + `"}`

	var lastPos int64
	for i, tok := range []string{good, admin} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/queues/orders/messages", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var out publishResponse
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("request %d: status %d, want 201", i, resp.StatusCode)
		}
		if out.Queue != "orders" || len(out.ID) != 26 || out.Position <= lastPos {
			t.Fatalf("request %d: answer %+v (previous position %d)", i, out, lastPos)
		}
		lastPos = out.Position
	}
}

func TestHTTPHandlerRefuses(t *testing.T) {
	srv, exp := startLimit(t)
	good := sign(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "b", "scope": "messages:publish", "exp": exp})
	none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"sub": "b", "scope": "admin", "exp": exp})
	cases := []struct {
		name, token, ctype, body string
		status                   int
	}{
		{"no token", "", "application/json", `{"body":"x"}`, 401},
		{"wrong secret", sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-xx"), jwt.MapClaims{"scope": "admin", "exp": exp}), "application/json", `{"body":"x"}`, 401},
		{"alg none", none, "application/json", `{"body":"x"}`, 401},
		{"HS384", sign(t, jwt.SigningMethodHS384, testSecret, jwt.MapClaims{"scope": "admin", "exp": exp}), "application/json", `{"body":"x"}`, 401},
		{"no exp", sign(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"scope": "admin"}), "application/json", `{"body":"x"}`, 401},
		{"expired", sign(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"scope": "admin", "exp": time.Now().Add(-time.Minute).Unix()}), "application/json", `{"body":"x"}`, 401},
		{"read-only scope", sign(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"scope": "queues:read", "exp": exp}), "application/json", `{"body":"x"}`, 403},
		{"text body", good, "text/plain", `{"body":"x"}`, 415},
		{"unknown field", good, "application/json", `{"body":"x","bodyy":1}`, 400},
		{"not JSON", good, "application/json", `{"body":`, 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/queues/q/messages", strings.NewReader(c.body))
			if c.token != "" {
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			req.Header.Set("Content-Type", c.ctype)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.status)
			}
			if got := resp.Header.Get("Content-Type"); got != "application/problem+json" {
				t.Fatalf("content type %q, want application/problem+json", got)
			}
			if c.status == 401 && resp.Header.Get("WWW-Authenticate") != "Bearer" {
				t.Fatalf("401 without WWW-Authenticate: Bearer")
			}
		})
	}
}

func TestNewHTTPHandlerNeedsSecret(t *testing.T) {
	if _, err := NewHTTPHandler(nil); err == nil {
		t.Fatal("NewHTTPHandler(nil) succeeded, want an error")
	}
}
