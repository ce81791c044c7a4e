package security

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ledgerq/ledgerq/tests/harness"
)

// claims are the claims of a good token for sub, to be spoiled one by one.
func claims(sub string, edit func(jwt.MapClaims)) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{"sub": sub, "scope": "admin", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"iss": "https://issuer.test", "aud": "ledgerq"}
	if edit != nil {
		edit(c)
	}
	return c
}

// unsigned builds a token from raw header and claims JSON and a signature
// part, without any library: what an attacker writes by hand.
func unsigned(header, payload, sig string) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload)) + "." + sig
}

// TestForgedAndMalformedTokensHS256: against a server that pins HS256 and
// checks iss and aud, every spoiled token is a 401 with the Bearer
// challenge, the answer never echoes it, and the log never holds it.
func TestForgedAndMalformedTokensHS256(t *testing.T) {
	t.Parallel()
	s := startServer(t, harness.Options{Args: []string{"--jwt-issuer", "https://issuer.test", "--jwt-audience", "ledgerq"}})
	secret := s.secret()
	hs := func(c jwt.MapClaims) string { return s.sign(jwt.SigningMethodHS256, secret, c) }
	now := time.Now()

	good := hs(claims("hs-user", nil))
	harness.MustStatus(t, s.Call("GET", "/v1/queues", good, nil), 200, "the control token")
	harness.MustStatus(t, s.Call("GET", "/v1/queues", hs(claims("hs-user", func(c jwt.MapClaims) { c["aud"] = []string{"other", "ledgerq"} })), nil),
		200, "aud as a list that holds ours")

	otherKey := []byte("an-attacker-secret-of-32-bytes!!")
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	goodParts := strings.Split(good, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(goodParts[1])
	exp := now.Add(time.Hour).Unix()
	pad := strings.Repeat("x", 9000)

	bad := map[string]string{
		"alg none":                  unsigned(`{"alg":"none","typ":"JWT"}`, string(payload), ""),
		"alg None":                  unsigned(`{"alg":"None","typ":"JWT"}`, string(payload), ""),
		"alg NONE with a signature": unsigned(`{"alg":"NONE"}`, string(payload), goodParts[2]),
		"alg none via the library":  s.sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims("hs-user", nil)),
		"HS512 with the secret":     s.sign(jwt.SigningMethodHS512, secret, claims("hs-user", nil)),
		"HS384 with the secret":     s.sign(jwt.SigningMethodHS384, secret, claims("hs-user", nil)),
		"HS256 with another secret": s.sign(jwt.SigningMethodHS256, otherKey, claims("hs-user", nil)),
		"HS256 with an empty-ish key": unsigned(`{"alg":"HS256","kid":"../../../../dev/null"}`, string(payload),
			goodParts[2][:len(goodParts[2])-4]+"AAAA"),
		"RS256":                                 s.sign(jwt.SigningMethodRS256, rsaKey, claims("hs-user", nil)),
		"ES256":                                 s.sign(jwt.SigningMethodES256, ecKey, claims("hs-user", nil)),
		"EdDSA":                                 s.sign(jwt.SigningMethodEdDSA, edKey, claims("hs-user", nil)),
		"claims swapped under a good signature": goodParts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), `"hs-user"`, `"root"`, 1))) + "." + goodParts[2],
		"signature removed":                     goodParts[0] + "." + goodParts[1] + ".",
		"signature truncated":                   good[:len(good)-8],
		"expired":                               hs(claims("hs-user", func(c jwt.MapClaims) { c["exp"] = now.Add(-2 * time.Minute).Unix() })),
		"not valid yet":                         hs(claims("hs-user", func(c jwt.MapClaims) { c["nbf"] = now.Add(2 * time.Minute).Unix() })),
		"issued in the future":                  hs(claims("hs-user", func(c jwt.MapClaims) { c["iat"] = now.Add(2 * time.Minute).Unix() })),
		"missing exp":                           hs(claims("hs-user", func(c jwt.MapClaims) { delete(c, "exp") })),
		// golang-jwt reads a numeric string as a NumericDate, so a string
		// exp is honoured, never ignored: in the past it expires the token.
		"expired exp as a string":    hs(claims("hs-user", func(c jwt.MapClaims) { c["exp"] = "1000" })),
		"exp not a number":           hs(claims("hs-user", func(c jwt.MapClaims) { c["exp"] = "never" })),
		"exp null":                   hs(claims("hs-user", func(c jwt.MapClaims) { c["exp"] = nil })),
		"wrong iss":                  hs(claims("hs-user", func(c jwt.MapClaims) { c["iss"] = "https://evil.test" })),
		"missing iss":                hs(claims("hs-user", func(c jwt.MapClaims) { delete(c, "iss") })),
		"wrong aud":                  hs(claims("hs-user", func(c jwt.MapClaims) { c["aud"] = "other" })),
		"missing aud":                hs(claims("hs-user", func(c jwt.MapClaims) { delete(c, "aud") })),
		"missing sub":                hs(claims("hs-user", func(c jwt.MapClaims) { delete(c, "sub") })),
		"sub too long":               hs(claims(strings.Repeat("s", 300), nil)),
		"queues claim not a list":    hs(claims("hs-user", func(c jwt.MapClaims) { c["queues"] = "orders.*" })),
		"queues claim with a slash":  hs(claims("hs-user", func(c jwt.MapClaims) { c["queues"] = []string{"orders/*"} })),
		"queues claim with a class":  hs(claims("hs-user", func(c jwt.MapClaims) { c["queues"] = []string{"[a-z]*"} })),
		"scope as a list":            hs(claims("hs-user", func(c jwt.MapClaims) { c["scope"] = []string{"admin"} })),
		"oversized (9 KB of claims)": hs(claims("hs-user", func(c jwt.MapClaims) { c["pad"] = pad })),
		"garbage":                    "not.a.jwt",
		"three empty parts":          "..",
		"many dots":                  strings.Repeat(".", 200),
		"random base64":              base64.RawURLEncoding.EncodeToString([]byte("header")) + "." + base64.RawURLEncoding.EncodeToString([]byte("claims")) + "." + base64.RawURLEncoding.EncodeToString([]byte("sig")),
		"JSON instead of a JWT":      `{"sub":"root","scope":"admin","exp":` + jsonNumber(float64(exp)) + `}`,
		"the good token twice":       good + good,
		"a good token with a suffix": good + ".extra",
	}
	for name, tok := range bad {
		s.remember(tok)
		r := s.Call("GET", "/v1/queues", "", nil, "Authorization", "Bearer "+tok)
		mustUnauthorized(t, r, tok, name)
	}

	// Other shapes of the header: wrong schemes and stray spaces.
	for name, h := range map[string]string{
		"Basic credentials": "Basic dXNlcjpwYXNzd29yZA==",
		"scheme only":       "Bearer",
		"scheme and space":  "Bearer ",
		"token only":        good,
		"Token scheme":      "Token " + good,
		"two tokens":        "Bearer " + good + " Bearer " + good,
	} {
		r := s.Call("GET", "/v1/queues", "", nil, "Authorization", h)
		mustUnauthorized(t, r, good, name)
	}
	// A query-string token is only for subscribe (EventSource); elsewhere it
	// is no token at all.
	mustUnauthorized(t, s.Call("GET", "/v1/queues?access_token="+good, "", nil), good, "access_token on a query route")
	mustUnauthorized(t, s.Call("POST", "/v1/queues?access_token="+good, "", map[string]any{"name": "q"}), good, "access_token on a command route")

	// A header past the server's header limit is refused before any token
	// parsing (431), never let through.
	huge := hs(claims("hs-user", func(c jwt.MapClaims) { c["pad"] = strings.Repeat("y", 70<<10) }))
	if r := s.Call("GET", "/v1/queues", huge, nil); r.Status != http.StatusRequestHeaderFieldsTooLarge && r.Status != http.StatusUnauthorized {
		t.Fatalf("a 94 KB token: %s, want 431 or 401", r)
	}
	harness.MustStatus(t, s.Call("GET", "/v1/queues", good, nil), 200, "the control token after the attacks")
	s.alive()
}

// TestAlgorithmConfusionRS256: a server verifying RS256 with a public key
// refuses HS256 tokens whose HMAC key is that public key (PEM or DER),
// tokens that carry their own key in the header, other algorithms and
// other RSA keys.
func TestAlgorithmConfusionRS256(t *testing.T) {
	t.Parallel()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	pubFile := filepath.Join(t.TempDir(), "jwt.pub.pem")
	if err := os.WriteFile(pubFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, harness.Options{Args: []string{"--jwt-public-key", pubFile}})
	plain := func(sub string) jwt.MapClaims {
		return claims(sub, func(c jwt.MapClaims) { delete(c, "iss"); delete(c, "aud") })
	}
	good := s.sign(jwt.SigningMethodRS256, key, plain("rs-user"))
	harness.MustStatus(t, s.Call("GET", "/v1/queues", good, nil), 200, "the control RS256 token")

	attacker, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	// A header that embeds the attacker's key as a JWK (CVE-2018-0114
	// style): a verifier must never take the key from the token.
	jwkToken := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, plain("rs-user"))
		tok.Header["jwk"] = map[string]any{"kty": "RSA", "e": "AQAB",
			"n": base64.RawURLEncoding.EncodeToString(attacker.N.Bytes())}
		signed, err := tok.SignedString(attacker)
		if err != nil {
			t.Fatal(err)
		}
		s.remember(signed)
		return signed
	}()
	bad := map[string]string{
		"HS256 keyed with the PEM public key":             s.sign(jwt.SigningMethodHS256, pemBytes, plain("rs-user")),
		"HS256 keyed with the PEM without its newline":    s.sign(jwt.SigningMethodHS256, []byte(strings.TrimSpace(string(pemBytes))), plain("rs-user")),
		"HS256 keyed with the DER public key":             s.sign(jwt.SigningMethodHS256, der, plain("rs-user")),
		"HS256 keyed with the modulus":                    s.sign(jwt.SigningMethodHS256, key.N.Bytes(), plain("rs-user")),
		"HS512 keyed with the PEM public key":             s.sign(jwt.SigningMethodHS512, pemBytes, plain("rs-user")),
		"RS256 by another key":                            s.sign(jwt.SigningMethodRS256, attacker, plain("rs-user")),
		"RS256 by another key with its JWK in the header": jwkToken,
		"PS256 by the right key":                          s.sign(jwt.SigningMethodPS256, key, plain("rs-user")),
		"RS512 by the right key":                          s.sign(jwt.SigningMethodRS512, key, plain("rs-user")),
		"alg none":                                        s.sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, plain("rs-user")),
		"RS256 expired":                                   s.sign(jwt.SigningMethodRS256, key, claims("rs-user", func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() })),
		"RS256 without exp":                               s.sign(jwt.SigningMethodRS256, key, claims("rs-user", func(c jwt.MapClaims) { delete(c, "exp") })),
		"RS256 with a zero signature": strings.Join(strings.Split(good, ".")[:2], ".") + "." +
			base64.RawURLEncoding.EncodeToString(make([]byte, 256)),
		"RS256 with signature 1": strings.Join(strings.Split(good, ".")[:2], ".") + "." +
			base64.RawURLEncoding.EncodeToString(big.NewInt(1).Bytes()),
	}
	for name, tok := range bad {
		mustUnauthorized(t, s.Call("GET", "/v1/queues", tok, nil), tok, name)
	}
	// `ledgerq token` signs HS256 from a secret; this server has none, so
	// even a token minted with a secret planted in the data directory is
	// refused.
	planted := []byte("planted-secret-planted-secret-32b")
	if err := os.WriteFile(filepath.Join(s.Data, "jwt-secret"), planted, 0o600); err != nil {
		t.Fatal(err)
	}
	tok := s.sign(jwt.SigningMethodHS256, planted, plain("rs-user"))
	mustUnauthorized(t, s.Call("GET", "/v1/queues", tok, nil), tok, "HS256 with a secret planted in the data directory")
	harness.MustStatus(t, s.Call("GET", "/v1/queues", good, nil), 200, "the control token after the attacks")
}

// TestTokenGuessingIsRateLimited: refused tokens are counted against the
// caller's address, so guessing is throttled (429, not endless 401s),
// while a valid subject keeps its own budget.
func TestTokenGuessingIsRateLimited(t *testing.T) {
	t.Parallel()
	s := startServer(t, harness.Options{Args: []string{"--rate-limit", "5/s"}})
	good := s.token("patient", "queues:read")
	limited := false
	for i := 0; i < 60 && !limited; i++ {
		guess := "guess." + base64.RawURLEncoding.EncodeToString([]byte{byte(i)}) + ".sig"
		r := s.Call("GET", "/v1/queues", guess, nil)
		switch r.Status {
		case http.StatusTooManyRequests:
			limited = true
			harness.MustProblem(t, r, 429, "rate_limited", "guessing")
			if r.Header.Get("Retry-After") == "" {
				t.Fatalf("429 without Retry-After")
			}
		case http.StatusUnauthorized:
		default:
			t.Fatalf("guess %d: %s", i, r)
		}
	}
	if !limited {
		t.Fatalf("60 bad tokens at 5/s were never throttled")
	}
	harness.MustStatus(t, s.Call("GET", "/v1/queues", good, nil), 200, "a valid subject while guesses are throttled")
}
