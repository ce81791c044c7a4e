package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ledgerq/ledgerq/eventstore"
)

// runAuditVerify checks the hash chain of a data directory's log offline:
// exit 0 when intact, exit 1 naming the first bad position otherwise.
func runAuditVerify(ctx context.Context, args []string, env envFunc, stdout, stderr io.Writer) error {
	fs := newFlagSet("audit verify", stderr)
	data := fs.String("data", "./data", "data directory holding events.db")
	from := fs.Int64("from", 0, "first position to check (default: the start)")
	to := fs.Int64("to", 0, "last position to check (default: the end)")
	if err := parseFlags(fs, args, env); err != nil {
		return err
	}
	path := filepath.Join(*data, eventsFile)
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("no event log at %s: %w", path, err)
	}
	// VerifyFile opens the file read-only: it works beside a running server.
	r, err := eventstore.VerifyFile(ctx, path, *from, *to)
	if err != nil {
		return err
	}
	if err := printJSON(stdout, r); err != nil {
		return err
	}
	if !r.OK {
		fmt.Fprintf(stderr, "ledgerq: hash chain broken at position %d: %s\n", r.FirstBadPosition, r.Reason)
		return exitCode(1)
	}
	return nil
}
