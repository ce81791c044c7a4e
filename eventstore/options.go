package eventstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
)

// Upcaster turns a stored payload of one event type into its current shape.
// It gets the stored schema version and data and returns the version and
// data to hand to readers; it must return its input unchanged for versions
// that are already current. It must not modify data in place.
type Upcaster func(schemaVersion int, data json.RawMessage) (int, json.RawMessage, error)

// Upcasters maps an event type to its upcaster.
type Upcasters map[string]Upcaster

// UpcastersOf turns a map of plain upcaster functions (such as
// domain.Upcasters(), which knows nothing of the store) into Upcasters.
func UpcastersOf(fns map[string]func(int, json.RawMessage) (int, json.RawMessage, error)) Upcasters {
	out := make(Upcasters, len(fns))
	for typ, fn := range fns {
		out[typ] = fn
	}
	return out
}

// Defaults of Options.
const (
	// DefaultMaxBatch is the number of append requests one group commit takes.
	DefaultMaxBatch = 256
	// DefaultReadConns is the size of the read-only connection pool.
	DefaultReadConns = 4
	// DefaultCommitDelay is the longest a small group commit waits for more
	// requests while such waits pay (see Options.CommitDelay).
	DefaultCommitDelay = time.Millisecond
	// DefaultBusyTimeout is how long a connection waits for a lock held by
	// another connection before SQLite gives up with SQLITE_BUSY.
	DefaultBusyTimeout = 5 * time.Second
)

// Options configure a Store. The zero value is valid.
type Options struct {
	// MaxBatch caps the append requests applied in one transaction (one
	// fsync). Larger batches amortise the fsync over more requests; smaller
	// ones bound the latency a request waits behind others. Default
	// DefaultMaxBatch.
	MaxBatch int
	// CommitDelay is the longest the writer waits, before committing fewer
	// than 24 requests (pacerTarget), for more to arrive: one commit then
	// serves them all.
	// It waits only while recent waits gained requests (a steady stream of
	// appends); a lone sequential appender, which nothing can join, gets
	// one trial wait in 64 commits. Default DefaultCommitDelay; negative:
	// never wait.
	CommitDelay time.Duration
	// ReadConns is the size of the read-only pool used by every read and by
	// Verify. Default DefaultReadConns.
	ReadConns int
	// BusyTimeout bounds how long a connection waits on a lock held by
	// another process (an auditor's tool, a backup). Default
	// DefaultBusyTimeout.
	BusyTimeout time.Duration
	// Logger receives failures of the writer (failed commits, resyncs).
	// Default logrus.StandardLogger().
	Logger logrus.FieldLogger
	// Upcasters are applied by ReadStream, ReadAll and Upcast; Scan and
	// ReadPositions return the stored bytes.
	Upcasters Upcasters
	// Now is the store's clock; tests replace it. Default time.Now.
	Now func() time.Time
	// ObserveCommit, if set, is told of every group commit that made
	// appends durable: how many requests and events it held and how long
	// it took, from the start of its transaction to the end of the
	// fdatasync that made it durable. It runs on the syncer, before the
	// answers, and must not block.
	ObserveCommit func(requests, events int, took time.Duration)
}

func (o *Options) setDefaults() {
	if o.MaxBatch == 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.CommitDelay == 0 {
		o.CommitDelay = DefaultCommitDelay
	}
	if o.ReadConns == 0 {
		o.ReadConns = DefaultReadConns
	}
	if o.BusyTimeout == 0 {
		o.BusyTimeout = DefaultBusyTimeout
	}
	if o.Logger == nil {
		o.Logger = logrus.StandardLogger()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Validate reports every problem of the options at once.
func (o Options) Validate() error {
	var errs []error
	if o.MaxBatch < 0 {
		errs = append(errs, fmt.Errorf("MaxBatch must not be negative, got %d", o.MaxBatch))
	}
	if o.ReadConns < 0 {
		errs = append(errs, fmt.Errorf("ReadConns must not be negative, got %d", o.ReadConns))
	}
	if o.BusyTimeout < 0 {
		errs = append(errs, fmt.Errorf("BusyTimeout must not be negative, got %s", o.BusyTimeout))
	}
	for typ, up := range o.Upcasters {
		if up == nil {
			errs = append(errs, fmt.Errorf("upcaster for %q is nil", typ))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: options: %w", ErrInvalid, err)
	}
	return nil
}
