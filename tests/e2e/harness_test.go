package e2e

import (
	"testing"

	"github.com/ledgerq/ledgerq/tests/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// startServer runs `ledgerq serve` with extra flags on a free port and a
// fresh data directory, with the directory's generated secret, and waits
// until /readyz answers 200.
func startServer(t *testing.T, extra ...string) *harness.Server {
	t.Helper()
	return harness.Start(t, harness.Options{Args: extra})
}
