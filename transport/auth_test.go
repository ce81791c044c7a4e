package transport

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func signed(t *testing.T, m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return tok
}

// claimsFor are valid claims for sub; edit them per case.
func claimsFor(sub string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{"sub": sub, "scope": ScopeQueuesRead, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
}

func getQueue(hx *harness, tok string) int {
	return hx.do(req{method: "GET", path: "/v1/queues/orders", token: tok}).Code
}

func TestHS256Tokens(t *testing.T) {
	hx := newHarness(t, func(d *Deps) { d.Auth.Issuer, d.Auth.Audience = "ledgerq-test", "brokers" })
	good := func() jwt.MapClaims {
		c := claimsFor("alice")
		c["iss"], c["aud"] = "ledgerq-test", []string{"brokers", "other"}
		return c
	}
	with := func(edit func(jwt.MapClaims)) jwt.MapClaims { c := good(); edit(c); return c }
	now := time.Now()

	noneTok := func() string {
		// alg "none" with an empty signature, as an attacker would send it.
		h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
		b, _ := json.Marshal(good())
		return h + "." + base64.RawURLEncoding.EncodeToString(b) + "."
	}()
	cases := []struct {
		name   string
		tok    string
		status int
		detail string
	}{
		{"valid", signed(t, jwt.SigningMethodHS256, testSecret, good()), 200, ""},
		{"expired within leeway", signed(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) { c["exp"] = now.Add(-10 * time.Second).Unix() })), 200, ""},
		{"expired", signed(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() })), 401, "expired"},
		{"nbf in the future", signed(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) { c["nbf"] = now.Add(2 * time.Minute).Unix() })), 401, "not valid yet"},
		{"iat in the future", signed(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) { c["iat"] = now.Add(2 * time.Minute).Unix() })), 401, "not valid yet"},
		{"missing exp", signed(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) { delete(c, "exp") })), 401, "invalid token"},
		{"wrong issuer", signed(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) { c["iss"] = "evil" })), 401, "invalid token"},
		{"missing issuer", signed(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) { delete(c, "iss") })), 401, "invalid token"},
		{"wrong audience", signed(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) { c["aud"] = "others" })), 401, "invalid token"},
		{"missing sub", signed(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) { delete(c, "sub") })), 401, "sub"},
		{"other secret", signed(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-123"), good()), 401, "invalid token"},
		{"HS512 with the right secret", signed(t, jwt.SigningMethodHS512, testSecret, good()), 401, "invalid token"},
		{"alg none", noneTok, 401, "invalid token"},
		{"bad queue pattern", signed(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) { c["queues"] = []string{"orders/*"} })), 401, "queue pattern"},
		{"scope of the wrong type", signed(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) { c["scope"] = []string{"admin"} })), 401, "invalid token"},
		{"oversized", signed(t, jwt.SigningMethodHS256, testSecret, with(func(c jwt.MapClaims) { c["pad"] = strings.Repeat("x", 9000) })), 401, "too large"},
		{"garbage", "abc.def.ghi", 401, "invalid token"},
		{"not a JWT", "hello", 401, "invalid token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := hx.do(req{method: "GET", path: "/v1/queues/orders", token: tc.tok})
			if tc.status == 200 {
				if rec.Code != 200 {
					t.Fatalf("status = %d, want 200; %s", rec.Code, rec.Body)
				}
				return
			}
			p := expectProblem(t, rec, http.StatusUnauthorized, "unauthorized")
			if !strings.Contains(p.Detail, tc.detail) {
				t.Errorf("detail = %q, want it to mention %q", p.Detail, tc.detail)
			}
			if got := rec.Header().Get("WWW-Authenticate"); got != `Bearer realm="ledgerq", error="invalid_token"` {
				t.Errorf("WWW-Authenticate = %q", got)
			}
		})
	}
}

func TestAuthorizationHeaderShapes(t *testing.T) {
	hx := newHarness(t, nil)
	tok := adminToken(t)
	for name, header := range map[string]string{
		"basic":        "Basic " + base64.StdEncoding.EncodeToString([]byte("a:b")),
		"bearer empty": "Bearer ",
		"no scheme":    tok,
	} {
		rec := hx.do(req{method: "GET", path: "/v1/queues", header: map[string]string{"Authorization": header}})
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("%s: status = %d, want 401", name, rec.Code)
		}
	}
	rec := hx.do(req{method: "GET", path: "/v1/queues"})
	expectProblem(t, rec, http.StatusUnauthorized, "unauthorized")
	if got := rec.Header().Get("WWW-Authenticate"); got != `Bearer realm="ledgerq"` {
		t.Errorf("without a token WWW-Authenticate = %q, want a bare Bearer challenge", got)
	}
	if rec := hx.do(req{method: "GET", path: "/v1/queues", header: map[string]string{"Authorization": "bearer " + tok}}); rec.Code != 200 {
		t.Errorf("lower-case scheme: status = %d, want 200", rec.Code)
	}
	// The query parameter is for EventSource on /v1/subscribe only.
	if rec := hx.do(req{method: "GET", path: "/v1/queues?access_token=" + tok}); rec.Code != http.StatusUnauthorized {
		t.Errorf("access_token on a query route: status = %d, want 401", rec.Code)
	}
}

func pemOf(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func TestPublicKeyAlgorithmsArePinned(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		pub     any
		method  jwt.SigningMethod
		private any
	}{
		{"RS256", &rsaKey.PublicKey, jwt.SigningMethodRS256, rsaKey},
		{"ES256", &ecKey.PublicKey, jwt.SigningMethodES256, ecKey},
		{"EdDSA", edPub, jwt.SigningMethodEdDSA, edPriv},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pemBytes := pemOf(t, tc.pub)
			pub, err := ParsePublicKeyPEM(pemBytes)
			if err != nil {
				t.Fatalf("ParsePublicKeyPEM: %v", err)
			}
			hx := newHarness(t, func(d *Deps) { d.Auth = AuthConfig{PublicKey: pub} })
			if code := getQueue(hx, signed(t, tc.method, tc.private, claimsFor("alice"))); code != 200 {
				t.Fatalf("valid %s token: status %d, want 200", tc.name, code)
			}
			// Algorithm confusion: an HS256 token whose secret is the
			// public key the server knows.
			confused := signed(t, jwt.SigningMethodHS256, pemBytes, claimsFor("mallory"))
			if code := getQueue(hx, confused); code != http.StatusUnauthorized {
				t.Fatalf("HS256 token signed with the public key: status %d, want 401", code)
			}
			if code := getQueue(hx, signed(t, jwt.SigningMethodHS256, testSecret, claimsFor("mallory"))); code != http.StatusUnauthorized {
				t.Fatalf("HS256 token on a %s server: status %d, want 401", tc.name, code)
			}
		})
	}
	// A PS256 token from the same RSA key is another algorithm: refused.
	hx := newHarness(t, func(d *Deps) { d.Auth = AuthConfig{PublicKey: &rsaKey.PublicKey} })
	if code := getQueue(hx, signed(t, jwt.SigningMethodPS256, rsaKey, claimsFor("alice"))); code != http.StatusUnauthorized {
		t.Fatalf("PS256 token on an RS256 server: status %d, want 401", code)
	}
}

func TestParsePublicKeyPEMRefusesPrivateKeysAndJunk(t *testing.T) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	priv := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if _, err := ParsePublicKeyPEM(priv); err == nil || !strings.Contains(err.Error(), "private key") {
		t.Errorf("private key: err = %v, want a refusal naming the private key", err)
	}
	if _, err := ParsePublicKeyPEM([]byte("not pem")); err == nil {
		t.Error("junk: no error")
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if err := (AuthConfig{PublicKey: &small.PublicKey}).Validate(); err == nil {
		t.Error("a 1024-bit RSA key was accepted")
	}
	if err := (AuthConfig{PublicKey: &ecKey.PublicKey, HS256Secret: testSecret}).Validate(); err == nil {
		t.Error("two keys were accepted")
	}
}

func TestMintToken(t *testing.T) {
	tok, err := MintTokenFor(testSecret, TokenSpec{Subject: "bob", Scopes: []string{ScopeMessagesPublish, ScopeQueuesRead}, Queues: []string{"orders.*"}, TTL: time.Minute, Issuer: "i", Audience: "a"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := newAuthenticator(AuthConfig{HS256Secret: testSecret, Issuer: "i", Audience: "a"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.authenticate(tok)
	if err != nil {
		t.Fatalf("minted token refused: %v", err)
	}
	if p.subject != "bob" || !p.has(ScopeMessagesPublish) || !p.has(ScopeQueuesRead) || p.has(ScopeQueuesManage) {
		t.Errorf("principal = %+v", p)
	}
	if !p.allows("orders.eu") || p.allows("payments") {
		t.Errorf("patterns not applied: %v", p.patterns)
	}
	for name, spec := range map[string]TokenSpec{
		"no subject":    {Scopes: []string{ScopeAdmin}, TTL: time.Minute},
		"no scope":      {Subject: "x", TTL: time.Minute},
		"unknown scope": {Subject: "x", Scopes: []string{"root"}, TTL: time.Minute},
		"no ttl":        {Subject: "x", Scopes: []string{ScopeAdmin}},
		"bad pattern":   {Subject: "x", Scopes: []string{ScopeAdmin}, TTL: time.Minute, Queues: []string{"a b"}},
	} {
		if _, err := MintTokenFor(testSecret, spec); err == nil {
			t.Errorf("%s: minted", name)
		}
	}
	if _, err := MintToken([]byte("short"), "x", []string{ScopeAdmin}, nil, time.Minute); err == nil {
		t.Error("short secret: minted")
	}
}

func TestMatchQueuePattern(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"orders", "orders", true},
		{"orders", "orders.eu", false},
		{"orders.*", "orders", false},
		{"orders.*", "orders.", true},
		{"orders.*", "orders.eu", true},
		{"orders.*", "orders.a.b", true}, // '*' crosses dots: names are flat
		{"orders.*", "ordersx", false},
		{"orders.*", "xorders.eu", false},
		{"*", "anything", true},
		{"*.dlq", "orders.dlq", true},
		{"*.dlq", "orders.dlq.x", false},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		{"orders.?", "orders.a", false}, // '?' is not special
		{"orders.[ab]", "orders.a", false},
		{"ORDERS.*", "orders.eu", false}, // case-sensitive, like names
	} {
		if got := matchQueuePattern(tc.pattern, tc.name); got != tc.want {
			t.Errorf("match(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}

func TestQueuePatternsOverHTTP(t *testing.T) {
	hx := newHarness(t, nil)
	tok := token(t, "eu-team", []string{ScopeAdmin}, []string{"orders.*"})
	for _, tc := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"GET", "/v1/queues/orders.eu", "", 200, ""},
		{"GET", "/v1/queues/orders%2Eeu", "", 200, ""},               // decoded once: orders.eu
		{"GET", "/v1/queues/orders.a.b", "", 404, "queue_not_found"}, // allowed, absent
		{"GET", "/v1/queues/orders", "", 403, "forbidden"},
		{"GET", "/v1/queues/payments", "", 403, "forbidden"},
		{"GET", "/v1/queues/ordersx", "", 403, "forbidden"},
		{"GET", "/v1/queues/%D0%BErders.eu", "", 400, "invalid_argument"}, // Cyrillic о
		{"GET", "/v1/queues/orders%252Eeu", "", 400, "invalid_argument"},  // decoded once only
		{"GET", "/v1/queues/..", "", 400, "invalid_argument"},
		{"GET", "/v1/queues/%2e%2e", "", 400, "invalid_argument"},
		{"GET", "/v1/queues/orders.eu%2F..%2Fpayments", "", 400, "invalid_argument"},
		{"GET", "/v1/queues/orders%2Fpurge", "", 400, "invalid_argument"},
		{"POST", "/v1/queues/%2e%2e/purge", "", 400, "invalid_argument"},
		{"POST", "/v1/queues/orders%2Feu/messages", `{"body":"x"}`, 400, "invalid_argument"},
		{"POST", "/v1/queues", `{"name":"payments"}`, 403, "forbidden"},
		{"POST", "/v1/queues", `{"name":"orders.new"}`, 201, ""},
		{"POST", "/v1/queues", `{"name":"orders.new","dead_letter_queue":"payments.dlq"}`, 403, "forbidden"},
		{"PATCH", "/v1/queues/orders.eu", `{"dead_letter_queue":"payments"}`, 403, "forbidden"},
		{"POST", "/v1/queues/orders.dlq/redrive", `{"to":"payments"}`, 403, "forbidden"},
		{"GET", "/v1/messages/pay-1", "", 404, "message_not_found"}, // in payments: hidden, not 403
		{"GET", "/v1/subscribe?queues=orders.eu,payments", "", 403, "forbidden"},
	} {
		rec := hx.do(req{method: tc.method, path: tc.path, body: tc.body, token: tok})
		if tc.code == "" {
			if rec.Code != tc.status {
				t.Errorf("%s %s: status %d, want %d; %s", tc.method, tc.path, rec.Code, tc.status, rec.Body)
			}
			continue
		}
		if rec.Code != tc.status {
			t.Errorf("%s %s: status %d, want %d; %s", tc.method, tc.path, rec.Code, tc.status, rec.Body)
			continue
		}
		if p := problemOf(t, rec); p.Code != tc.code {
			t.Errorf("%s %s: code %q, want %q", tc.method, tc.path, p.Code, tc.code)
		}
	}

	// Listing shows only the allowed queues, and events are filtered.
	m := jsonOf(t, hx.do(req{method: "GET", path: "/v1/queues", token: tok}))
	qs := m["queues"].([]any)
	if len(qs) != 1 || qs[0].(map[string]any)["name"] != "orders.eu" {
		t.Fatalf("listing = %v, want only orders.eu", qs)
	}
	hx.do(req{method: "GET", path: "/v1/events", token: tok})
	if allowed := hx.audit.last.Allowed; allowed == nil || !allowed("orders.eu") || allowed("payments") {
		t.Fatal("events were not filtered by the token's patterns")
	}
	hx.do(req{method: "GET", path: "/v1/events", token: adminToken(t)})
	if hx.audit.last.Allowed != nil {
		t.Fatal("an unrestricted token got an events filter")
	}
	st := jsonOf(t, hx.do(req{method: "GET", path: "/v1/audit/state?at_position=3", token: tok}))
	if qs := st["queues"].([]any); len(qs) != 0 {
		t.Fatalf("state at position shows %v to a token limited to orders.*", qs)
	}
}

func TestEmptyQueuesClaimAllowsNothing(t *testing.T) {
	hx := newHarness(t, nil)
	c := claimsFor("nobody")
	c["scope"] = ScopeAdmin
	c["queues"] = []string{}
	tok := signed(t, jwt.SigningMethodHS256, testSecret, c)
	if code := getQueue(hx, tok); code != http.StatusForbidden {
		t.Fatalf("status = %d, want 403", code)
	}
	m := jsonOf(t, hx.do(req{method: "GET", path: "/v1/queues", token: tok}))
	if qs := m["queues"].([]any); len(qs) != 0 {
		t.Fatalf("listing = %v, want empty", qs)
	}
}

func TestVerifiedTokensAreRememberedOnlyWhileValid(t *testing.T) {
	a, err := newAuthenticator(AuthConfig{HS256Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	clock := start
	a.now = func() time.Time { return clock }
	tok := signed(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{
		"sub": "alice", "scope": ScopeQueuesRead, "iat": start.Unix(), "exp": start.Add(time.Minute).Unix()})

	for i := range 2 { // the second call is answered from the cache
		p, err := a.authenticate(tok)
		if err != nil || p.subject != "alice" || !p.has(ScopeQueuesRead) {
			t.Fatalf("call %d: principal %+v, err %v; want alice with queues:read", i, p, err)
		}
	}
	if len(a.verified) != 1 {
		t.Fatalf("%d tokens remembered, want 1", len(a.verified))
	}
	// The same claims with a broken signature are not the remembered token.
	forged := tok[:len(tok)-2] + "AA"
	if forged == tok {
		forged = tok[:len(tok)-2] + "BB"
	}
	if _, err := a.authenticate(forged); err == nil {
		t.Fatal("a token with a changed signature was accepted")
	}
	// Past exp + leeway the cached entry no longer answers.
	clock = start.Add(time.Minute + MaxLeeway + time.Second)
	if _, err := a.authenticate(tok); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("after expiry: err %v, want token expired", err)
	}
	// A token not valid yet fails every time: failures are not remembered.
	early := signed(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{
		"sub": "bob", "scope": ScopeQueuesRead, "nbf": clock.Add(time.Hour).Unix(), "exp": clock.Add(2 * time.Hour).Unix()})
	for i := range 2 {
		if _, err := a.authenticate(early); err == nil || !strings.Contains(err.Error(), "not valid yet") {
			t.Fatalf("call %d: err %v, want not valid yet", i, err)
		}
	}
	// Once nbf - leeway has passed, the same token is good.
	clock = clock.Add(time.Hour)
	if _, err := a.authenticate(early); err != nil {
		t.Fatalf("at nbf: %v", err)
	}
}

func TestVerifiedTokenCacheIsBounded(t *testing.T) {
	a, err := newAuthenticator(AuthConfig{HS256Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := range maxVerifiedTokens + 50 {
		tok := signed(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{
			"sub": "s" + strconv.Itoa(i), "scope": ScopeQueuesRead, "exp": now.Add(time.Hour).Unix()})
		if _, err := a.authenticate(tok); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(a.verified); n > maxVerifiedTokens {
		t.Fatalf("%d tokens remembered, want at most %d", n, maxVerifiedTokens)
	}
}
