package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// MainPackage is the import path Build compiles.
const MainPackage = "github.com/ledgerq/ledgerq/cmd/ledgerq"

// BinEnv names a prebuilt binary to test instead of building one: the
// artifact a release ships, or a run as a user without a Go toolchain.
const BinEnv = "LEDGERQ_BIN"

// bin is the binary of this test process, set by Main before any test runs.
var bin string

// Main is a package's TestMain: it builds the binary once (or takes
// LEDGERQ_BIN), runs the tests, removes the build and exits with the
// tests' code.
//
//	func TestMain(m *testing.M) { harness.Main(m) }
func Main(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	path, cleanup, err := Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, "harness:", err)
		return 1
	}
	defer cleanup()
	bin = path
	return m.Run()
}

// Build compiles cmd/ledgerq into a fresh temporary directory and returns
// its path and a cleanup that removes the directory. When LEDGERQ_BIN is
// set it builds nothing and returns that path (which must exist; an
// absolute path, since tests run in their package's directory) with a
// cleanup that does nothing.
func Build() (path string, cleanup func(), err error) {
	if p := os.Getenv(BinEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", nil, fmt.Errorf("%s=%s: %w", BinEnv, p, err)
		}
		return p, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "ledgerq-bin")
	if err != nil {
		return "", nil, fmt.Errorf("build directory: %w", err)
	}
	path = filepath.Join(dir, "ledgerq")
	cmd := exec.Command("go", "build", "-o", path, MainPackage)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		_ = os.RemoveAll(dir)
		return "", nil, fmt.Errorf("building %s: %w", MainPackage, err)
	}
	return path, func() { _ = os.RemoveAll(dir) }, nil
}

// Bin is the path of the binary under test, or "" when Main did not run
// (a package that runs its own commands, such as `ledgerq bench`, uses it).
func Bin() string { return bin }

// binary is Bin for a test that cannot go on without it.
func binary(t testing.TB) string {
	t.Helper()
	if bin == "" {
		t.Fatal("harness: no ledgerq binary; the package's TestMain must call harness.Main(m)")
	}
	return bin
}
