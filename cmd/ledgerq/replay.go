package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/eventstore"
	"github.com/ledgerq/ledgerq/projections"
	"github.com/ledgerq/ledgerq/queries"
	"github.com/ledgerq/ledgerq/transport"
)

// runReplay rebuilds the state of every queue from the log offline, up to a
// position or a time, and prints it as JSON: the same reconstruction as
// GET /v1/audit/state.
func runReplay(ctx context.Context, args []string, env envFunc, stdout, stderr io.Writer) error {
	fs := newFlagSet("replay", stderr)
	data := fs.String("data", "./data", "data directory holding events.db")
	atPos := fs.Int64("at-position", 0, "replay up to and including this global position (default: the head)")
	atTime := fs.String("at-time", "", "replay the events recorded up to this RFC 3339 time")
	if err := parseFlags(fs, args, env); err != nil {
		return err
	}
	var at time.Time
	if *atTime != "" {
		t, err := time.Parse(time.RFC3339Nano, *atTime)
		if err != nil {
			return fmt.Errorf("--at-time %q: want RFC 3339, e.g. 2026-11-29T23:00:00Z", *atTime)
		}
		at = t
	}
	if *atPos < 0 || (*atPos > 0 && !at.IsZero()) {
		return errors.New("give --at-position N or --at-time T, not both")
	}
	store, err := openLogOffline(*data)
	if err != nil {
		return err
	}
	defer store.Close()
	audit := queries.NewAudit(store, func(ctx context.Context, upTo int64, at time.Time) (queries.StateView, error) {
		return projections.StateAt(ctx, store, upTo, at)
	})
	view, err := audit.StateAt(ctx, queries.StateAt{Position: *atPos, Time: at})
	if err != nil {
		return err
	}
	return printJSON(stdout, transport.StateJSON(view))
}

// openLogOffline opens the event log of a data directory for reading with
// the domain's upcasters. It refuses a directory without a log rather than
// creating an empty one.
func openLogOffline(dataDir string) (*eventstore.Store, error) {
	path := filepath.Join(dataDir, eventsFile)
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("no event log at %s: %w", path, err)
	}
	s, err := eventstore.Open(path, eventstore.Options{Upcasters: eventstore.UpcastersOf(domain.Upcasters())})
	if err != nil {
		return nil, fmt.Errorf("open %s (is a server running on it? stop it, or copy the directory): %w", path, err)
	}
	return s, nil
}
