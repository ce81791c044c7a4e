package security

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/tests/harness"
)

// selfSigned writes a fresh self-signed certificate for 127.0.0.1 and its
// key as PEM files, and returns their paths and a pool trusting it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "ledgerq security test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestTLS starts the server with --tls-cert/--tls-key and talks HTTPS to
// it with a client that trusts that certificate: operations and the API
// answer over TLS 1.2 or later. A client that does not trust the
// certificate, one limited to TLS 1.1, and plain HTTP on the same port all
// fail to get an answer.
func TestTLS(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := selfSigned(t)
	s := startServer(t, harness.Options{
		Args: []string{"--tls-cert", certFile, "--tls-key", keyFile},
		TLS:  &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	})
	if !strings.HasPrefix(s.URL, "https://") {
		t.Fatalf("harness URL %s", s.URL)
	}
	admin := s.token("tls-admin", "admin")
	resp, err := s.Client().Get(s.URL + "/healthz")
	if err != nil {
		t.Fatalf("HTTPS health check: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Fatalf("HTTPS health check: %d, TLS %+v", resp.StatusCode, resp.TLS)
	}
	harness.MustStatus(t, s.Call("POST", "/v1/queues", admin, map[string]any{"name": "tls.q"}), 201, "create over HTTPS")
	harness.MustStatus(t, s.Call("POST", "/v1/queues/tls.q/messages", admin, map[string]any{"body": "over TLS"}), 201, "publish over HTTPS")
	recv := s.Call("POST", "/v1/queues/tls.q/receive", admin, map[string]any{})
	harness.MustStatus(t, recv, 200, "receive over HTTPS")
	if msgs, _ := recv.JSON["messages"].([]any); len(msgs) != 1 || msgs[0].(map[string]any)["body"] != "over TLS" {
		t.Fatalf("receive over HTTPS: %s", recv)
	}
	mustUnauthorized(t, s.Call("GET", "/v1/queues", "", nil), "", "no token over HTTPS")

	get := func(c *http.Client, url string) error {
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusOK {
			return nil
		}
		return errors.New(resp.Status + " " + strings.TrimSpace(string(body)))
	}
	untrusting := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{}}}
	if err := get(untrusting, s.URL+"/healthz"); err == nil {
		t.Fatalf("a client that does not trust the certificate got an answer")
	} else {
		var unknown x509.UnknownAuthorityError
		if !errors.As(err, &unknown) {
			t.Logf("untrusting client: %v", err)
		}
	}
	old := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11}}}
	if err := get(old, s.URL+"/healthz"); err == nil {
		t.Fatalf("a TLS 1.1 client got an answer")
	}
	plain := &http.Client{Timeout: 5 * time.Second}
	err = get(plain, "http://"+s.Addr+"/healthz")
	if err == nil {
		t.Fatalf("plain HTTP on the TLS port got 200")
	}
	t.Logf("plain HTTP on the TLS port: %v", err)
	// The listener still serves TLS after the failed handshakes.
	harness.MustStatus(t, s.Call("GET", "/v1/queues", admin, nil), 200, "list over HTTPS afterwards")
	s.responsive(admin, 2*time.Second)
	s.alive()
	// Failed handshakes are reported by net/http's own logger, outside the
	// JSON log: count such lines so that the report can mention them.
	var plainLines int
	for _, line := range strings.Split(strings.TrimSpace(s.Logs()), "\n") {
		if line != "" && !strings.HasPrefix(line, "{") {
			plainLines++
			t.Logf("not JSON: %.120s", line)
		}
	}
	t.Logf("non-JSON lines in the server's log after the failed handshakes: %d", plainLines)
}
