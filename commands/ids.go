package commands

import (
	"crypto/rand"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/ledgerq/ledgerq/domain"
)

// entropy makes message ids unique and increasing within a millisecond;
// it is seeded from crypto/rand so that ids of different processes (or of
// a restarted one whose clock went back) do not collide.
var entropy = &ulid.LockedMonotonicReader{MonotonicReader: ulid.Monotonic(rand.Reader, 0)}

// newID returns a new message id for the time now.
func newID(now time.Time) (string, error) {
	id, err := ulid.New(ulid.Timestamp(now), entropy)
	if err != nil {
		return "", fmt.Errorf("commands: new message id: %w", err)
	}
	return id.String(), nil
}

// newNonces draws n receipt nonces from the system's cryptographic source.
func newNonces(n int) [][domain.ReceiptNonceSize]byte {
	out := make([][domain.ReceiptNonceSize]byte, n)
	buf := make([]byte, n*domain.ReceiptNonceSize)
	// crypto/rand.Read never fails: it aborts the program rather than
	// return predictable bytes.
	_, _ = rand.Read(buf)
	for i := range out {
		copy(out[i][:], buf[i*domain.ReceiptNonceSize:])
	}
	return out
}
