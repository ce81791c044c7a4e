package transport

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Scopes a token can carry in its space-separated "scope" claim.
const (
	ScopeQueuesManage    = "queues:manage"    // create, configure, delete, purge, redrive
	ScopeMessagesPublish = "messages:publish" // publish, batch publish
	ScopeMessagesConsume = "messages:consume" // receive, ack, nack, extend
	ScopeQueuesRead      = "queues:read"      // queries and subscribe
	ScopeAuditRead       = "audit:read"       // event log, verify, point-in-time state
	ScopeAdmin           = "admin"            // everything
)

// Scopes lists every scope a token may carry.
var Scopes = []string{ScopeQueuesManage, ScopeMessagesPublish, ScopeMessagesConsume, ScopeQueuesRead, ScopeAuditRead, ScopeAdmin}

// Limits of token verification.
const (
	// MaxLeeway is the most clock skew allowed on exp, nbf and iat.
	MaxLeeway = 30 * time.Second
	// DefaultMaxTokenBytes bounds a token before any parsing.
	DefaultMaxTokenBytes = 8 << 10
	// MinHS256SecretBytes is the shortest HS256 secret accepted (RFC 7518
	// §3.2: a key at least as long as the hash).
	MinHS256SecretBytes = 32
	maxSubjectBytes     = 256
	maxQueuePatterns    = 100
)

// AuthConfig configures bearer-token verification. Exactly one of
// HS256Secret and PublicKey is set; the key decides the only algorithm
// accepted, so "alg: none" and algorithm confusion (an HS256 token signed
// with a public key as secret) are refused.
type AuthConfig struct {
	// HS256Secret verifies HS256 tokens; at least MinHS256SecretBytes long.
	HS256Secret []byte
	// PublicKey verifies RS256 (*rsa.PublicKey, 2048 bits or more), ES256,
	// ES384 or ES512 (*ecdsa.PublicKey on P-256, P-384, P-521) or EdDSA
	// (ed25519.PublicKey) tokens. ParsePublicKeyPEM reads one from PEM.
	PublicKey crypto.PublicKey
	// Issuer, when set, must equal the token's "iss".
	Issuer string
	// Audience, when set, must be one of the token's "aud".
	Audience string
	// Leeway is the clock skew allowed on exp, nbf and iat.
	// Default and maximum MaxLeeway.
	Leeway time.Duration
	// MaxTokenBytes bounds the token; default DefaultMaxTokenBytes.
	MaxTokenBytes int
}

// Validate reports whether the configuration names exactly one usable key.
func (c AuthConfig) Validate() error {
	_, _, err := c.key()
	return err
}

// key returns the verification key and the single algorithm it pins.
func (c AuthConfig) key() (any, string, error) {
	switch {
	case len(c.HS256Secret) > 0 && c.PublicKey != nil:
		return nil, "", errors.New("auth: set either an HS256 secret or a public key, not both")
	case len(c.HS256Secret) > 0:
		if len(c.HS256Secret) < MinHS256SecretBytes {
			return nil, "", fmt.Errorf("auth: the HS256 secret has %d bytes, want at least %d", len(c.HS256Secret), MinHS256SecretBytes)
		}
		return c.HS256Secret, jwt.SigningMethodHS256.Alg(), nil
	case c.PublicKey != nil:
		alg, err := algorithmOf(c.PublicKey)
		return c.PublicKey, alg, err
	default:
		return nil, "", errors.New("auth: no verification key (HS256 secret or public key) configured")
	}
}

func algorithmOf(k crypto.PublicKey) (string, error) {
	switch k := k.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return "", fmt.Errorf("auth: RSA key has %d bits, want at least 2048", k.N.BitLen())
		}
		return jwt.SigningMethodRS256.Alg(), nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return jwt.SigningMethodES256.Alg(), nil
		case elliptic.P384():
			return jwt.SigningMethodES384.Alg(), nil
		case elliptic.P521():
			return jwt.SigningMethodES512.Alg(), nil
		}
		return "", errors.New("auth: ECDSA key on an unsupported curve")
	case ed25519.PublicKey:
		return jwt.SigningMethodEdDSA.Alg(), nil
	}
	return "", fmt.Errorf("auth: unsupported public key type %T", k)
}

// ParsePublicKeyPEM reads an RSA, ECDSA or Ed25519 public key from PEM
// ("PUBLIC KEY", "RSA PUBLIC KEY" or a "CERTIFICATE"). A private key is
// refused: the server only ever needs the public half.
func ParsePublicKeyPEM(data []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("auth: no PEM block found")
	}
	switch block.Type {
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("auth: parse public key: %w", err)
		}
		return k, nil
	case "RSA PUBLIC KEY":
		k, err := x509.ParsePKCS1PublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("auth: parse RSA public key: %w", err)
		}
		return k, nil
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("auth: parse certificate: %w", err)
		}
		return cert.PublicKey, nil
	}
	if strings.Contains(block.Type, "PRIVATE KEY") {
		return nil, errors.New("auth: got a private key; configure the public key only")
	}
	return nil, fmt.Errorf("auth: unsupported PEM block %q", block.Type)
}

// tokenClaims are the claims ledgerq reads: the registered ones, the
// space-separated scopes and the optional queue patterns.
type tokenClaims struct {
	jwt.RegisteredClaims
	Scope string `json:"scope"`
	// Queues nil (claim absent) allows every queue; an empty list none.
	Queues []string `json:"queues,omitempty"`
}

// principal is the verified caller of a request.
type principal struct {
	subject  string
	scopes   []string
	patterns []string // nil: every queue
}

// has reports whether the caller holds scope (admin holds them all).
func (p *principal) has(scope string) bool {
	return slices.Contains(p.scopes, ScopeAdmin) || slices.Contains(p.scopes, scope)
}

// allows reports whether the caller may touch queue.
func (p *principal) allows(queue string) bool {
	if p.patterns == nil {
		return true
	}
	for _, pat := range p.patterns {
		if matchQueuePattern(pat, queue) {
			return true
		}
	}
	return false
}

// allowedFunc is the filter queries use to hide queues; nil when every
// queue is visible, so the read side can skip filtering.
func (p *principal) allowedFunc() func(string) bool {
	if p.patterns == nil {
		return nil
	}
	return p.allows
}

// authenticator verifies bearer tokens with a pinned algorithm.
type authenticator struct {
	key      any
	parser   *jwt.Parser
	maxBytes int
	leeway   time.Duration
	now      func() time.Time

	// verified remembers tokens whose signature and claims checked out,
	// keyed by the SHA-256 of the token (the raw token is not kept), with
	// the window in which they stay valid. A client sends the same token
	// with every request; parsing and verifying it again cost a fifth of
	// a publish's CPU. Failures are never remembered.
	mu       sync.Mutex
	verified map[[sha256.Size]byte]verifiedToken
}

type verifiedToken struct {
	p         *principal
	from, end time.Time // valid while from <= now < end (leeway applied)
}

// maxVerifiedTokens bounds the cache; when it is full an arbitrary entry
// makes room.
const maxVerifiedTokens = 4096

func newAuthenticator(c AuthConfig) (*authenticator, error) {
	key, alg, err := c.key()
	if err != nil {
		return nil, err
	}
	leeway := c.Leeway
	if leeway <= 0 || leeway > MaxLeeway {
		leeway = MaxLeeway
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{alg}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
	}
	if c.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(c.Issuer))
	}
	if c.Audience != "" {
		opts = append(opts, jwt.WithAudience(c.Audience))
	}
	maxBytes := c.MaxTokenBytes
	if maxBytes <= 0 {
		maxBytes = DefaultMaxTokenBytes
	}
	a := &authenticator{key: key, maxBytes: maxBytes, leeway: leeway, now: time.Now,
		verified: make(map[[sha256.Size]byte]verifiedToken)}
	// The parser and the cache read the same clock.
	opts = append(opts, jwt.WithTimeFunc(func() time.Time { return a.now() }))
	a.parser = jwt.NewParser(opts...)
	return a, nil
}

// authenticate verifies a raw token and returns its caller, or an
// unauthorized error whose detail says what a client can fix without
// revealing how verification works.
func (a *authenticator) authenticate(raw string) (*principal, error) {
	if raw == "" {
		return nil, unauthorized("missing bearer token")
	}
	if len(raw) > a.maxBytes {
		return nil, unauthorized("token too large")
	}
	sum := sha256.Sum256([]byte(raw))
	now := a.now()
	a.mu.Lock()
	v, ok := a.verified[sum]
	a.mu.Unlock()
	if ok && !now.Before(v.from) && now.Before(v.end) {
		return v.p, nil
	}
	var claims tokenClaims
	_, err := a.parser.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return a.key, nil })
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, unauthorized("token expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return nil, unauthorized("token not valid yet")
	case err != nil:
		return nil, unauthorized("invalid token")
	}
	if claims.Subject == "" || len(claims.Subject) > maxSubjectBytes {
		return nil, unauthorized("invalid token: sub claim missing or too long")
	}
	if claims.Queues != nil {
		if err := validatePatterns(claims.Queues); err != nil {
			return nil, unauthorized("invalid token: " + err.Error())
		}
	}
	p := &principal{subject: claims.Subject, scopes: strings.Fields(claims.Scope), patterns: claims.Queues}
	a.remember(sum, p, claims)
	return p, nil
}

// remember caches a verified token for the window its claims allow (the
// parser requires exp; nbf and iat are optional).
func (a *authenticator) remember(sum [sha256.Size]byte, p *principal, c tokenClaims) {
	if c.ExpiresAt == nil {
		return
	}
	v := verifiedToken{p: p, end: c.ExpiresAt.Add(a.leeway)}
	for _, t := range []*jwt.NumericDate{c.NotBefore, c.IssuedAt} {
		if t != nil && t.Add(-a.leeway).After(v.from) {
			v.from = t.Add(-a.leeway)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.verified) >= maxVerifiedTokens {
		for k := range a.verified {
			delete(a.verified, k)
			break
		}
	}
	a.verified[sum] = v
}

// bearerToken extracts the token of an "Authorization: Bearer …" header.
func bearerToken(header string) (string, bool) {
	scheme, tok, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// Queue patterns.
//
// A pattern is a queue name in which '*' matches any run of characters,
// the empty run included, dots included: queue names are flat (the dot has
// no meaning to ledgerq), so "orders.*" allows "orders.eu" and
// "orders.eu.retry" but not "orders" (the literal dot must be there) nor
// "ordersx". No other character is special: there is no '?', no class, no
// escape, unlike path.Match, so a pattern can never mean more than it shows.
// Matching is on the decoded queue name after the name rule was checked,
// byte for byte, so look-alike Unicode never matches an ASCII pattern.

// validatePatterns checks the queues claim: bounded and made only of queue
// name characters and '*'.
func validatePatterns(patterns []string) error {
	if len(patterns) > maxQueuePatterns {
		return fmt.Errorf("queues claim has %d patterns, at most %d", len(patterns), maxQueuePatterns)
	}
	for _, p := range patterns {
		if p == "" || len(p) > maxQueueNameLen {
			return fmt.Errorf("queue pattern %q: want 1 to %d characters", p, maxQueueNameLen)
		}
		for i := 0; i < len(p); i++ {
			if c := p[i]; c != '*' && !isNameChar(c) {
				return fmt.Errorf("queue pattern %q: only A-Z a-z 0-9 . _ - and * are allowed", p)
			}
		}
	}
	return nil
}

// matchQueuePattern reports whether name matches pattern, where '*' matches
// any run of bytes. It backtracks only to the last star, so it runs in
// O(len(pattern)·len(name)) at worst.
func matchQueuePattern(pattern, name string) bool {
	p, n := 0, 0
	star, mark := -1, 0
	for n < len(name) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, n
			p++
		case p < len(pattern) && pattern[p] == name[n]:
			p++
			n++
		case star >= 0:
			p = star + 1
			mark++
			n = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// TokenSpec describes a token to mint.
type TokenSpec struct {
	// Subject is the "sub" claim: who the caller is; required.
	Subject string
	// Scopes are the granted scopes (see Scopes); at least one.
	Scopes []string
	// Queues are queue patterns the token is limited to; empty: all queues.
	Queues []string
	// TTL is the lifetime; required.
	TTL time.Duration
	// Issuer and Audience become "iss" and "aud" when set.
	Issuer   string
	Audience string
}

// MintToken signs an HS256 token for sub with the given scopes and queue
// patterns (empty: all queues), valid for ttl. It is what `ledgerq token`
// and tests use.
func MintToken(secret []byte, sub string, scopes, queues []string, ttl time.Duration) (string, error) {
	return MintTokenFor(secret, TokenSpec{Subject: sub, Scopes: scopes, Queues: queues, TTL: ttl})
}

// MintTokenFor signs an HS256 token described by spec.
func MintTokenFor(secret []byte, spec TokenSpec) (string, error) {
	if len(secret) < MinHS256SecretBytes {
		return "", fmt.Errorf("token: the secret has %d bytes, want at least %d", len(secret), MinHS256SecretBytes)
	}
	if spec.Subject == "" || len(spec.Subject) > maxSubjectBytes {
		return "", fmt.Errorf("token: subject must have 1 to %d bytes", maxSubjectBytes)
	}
	if spec.TTL <= 0 {
		return "", errors.New("token: ttl must be positive")
	}
	if len(spec.Scopes) == 0 {
		return "", errors.New("token: at least one scope is required")
	}
	for _, sc := range spec.Scopes {
		if !slices.Contains(Scopes, sc) {
			return "", fmt.Errorf("token: unknown scope %q (known: %s)", sc, strings.Join(Scopes, ", "))
		}
	}
	var queues []string
	if len(spec.Queues) > 0 {
		if err := validatePatterns(spec.Queues); err != nil {
			return "", fmt.Errorf("token: %w", err)
		}
		queues = spec.Queues
	}
	now := time.Now()
	claims := tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   spec.Subject,
			Issuer:    spec.Issuer,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(spec.TTL)),
		},
		Scope:  strings.Join(spec.Scopes, " "),
		Queues: queues,
	}
	if spec.Audience != "" {
		claims.Audience = jwt.ClaimStrings{spec.Audience}
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("token: sign: %w", err)
	}
	return tok, nil
}
