package eventstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// Store is the event log in one SQLite file. It is safe for concurrent use.
// Writes go through one writer goroutine that group-commits queued append
// requests on the single writer connection; reads use a separate read-only
// pool and never wait for the writer.
type Store struct {
	path string
	opts Options
	log  logrus.FieldLogger
	lock *fileLock

	wdb         *sql.DB      // the writer connection: the writer goroutine, and CheckpointWAL's last step between its commits
	ckdb        *sql.DB      // CheckpointWAL's connection for the bulk of the copy
	rdb         *sql.DB      // read-only pool
	insert      *sql.Stmt    // one row, prepared on wdb
	insertMulti *sql.Stmt    // multiRows rows, prepared on wdb
	payloads    *sql.Stmt    // ReadPayloads of up to payloadArgs positions, prepared on rdb
	walFrames   atomic.Int64 // the WAL's frames at the last CheckpointWAL, to see how fast it grows

	// The durable state: changed by the syncer, under mu, once the WAL's
	// fdatasync covered a batch (and by loadHeads). Everything outside the
	// store goes by it.
	mu       sync.RWMutex
	head     int64
	headHash string
	headMS   int64
	streams  map[string]int64
	// Batches committed and not yet durable, oldest first: the writer
	// appends, the syncer removes. Under mu; synced is signalled at each
	// removal.
	inflight []*committed
	synced   *sync.Cond
	syncErr  error // a failed fdatasync: every later append fails with it

	// The head as the writer builds on it (durable or not); the writer's
	// alone.
	wpos  int64
	whash string
	wms   int64

	wal        *walFile                     // the WAL, fdatasync'd by the syncer
	syncHook   atomic.Pointer[func() error] // tests: runs before each fdatasync
	syncWake   chan struct{}                // cap 1: "a batch was handed over"
	syncerDone chan struct{}

	// The append queue. Submit never waits for I/O: it appends here.
	qmu        sync.Mutex
	queue      []*Pending
	closing    bool
	wake       chan struct{} // cap 1: "the queue may be non-empty"
	pacer      *commitPacer  // the writer's alone
	writerDone chan struct{}

	watchMu  sync.Mutex
	watchers map[chan struct{}]struct{}

	closeOnce sync.Once
	closed    atomic.Bool
	closeErr  error

	stats struct {
		commits, requests, events, conflicts, failedCommits, waits, syncs atomic.Int64
		// lastFailure is the unix nanoseconds of the latest failed batch
		// while the latest attempt failed, 0 once a batch commits again.
		lastFailure atomic.Int64
	}
}

// Open opens (creating if needed) the store in the SQLite file at path,
// loads the stream heads and the head position and hash into memory, and
// starts the writer. Only one Store may have a file open at a time; a second
// Open of the same file, in this or another process, fails with an error
// wrapping ErrUnavailable.
func Open(path string, opts Options) (*Store, error) {
	if path == "" {
		return nil, invalidf("empty path")
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()

	lock, err := lockFile(path)
	if err != nil {
		return nil, fmt.Errorf("eventstore: open: %w", unavailable("lock", err))
	}
	s := &Store{
		path:       path,
		opts:       opts,
		log:        opts.Logger,
		lock:       lock,
		streams:    make(map[string]int64),
		wake:       make(chan struct{}, 1),
		pacer:      newCommitPacer(opts.CommitDelay),
		writerDone: make(chan struct{}),
		syncWake:   make(chan struct{}, 1),
		syncerDone: make(chan struct{}),
		watchers:   make(map[chan struct{}]struct{}),
	}
	s.synced = sync.NewCond(&s.mu)
	if err := s.open(); err != nil {
		s.closeHandles()
		return nil, fmt.Errorf("eventstore: open %s: %w", path, err)
	}
	go s.runWriter()
	go s.runSyncer()
	return s, nil
}

func (s *Store) open() error {
	ctx := context.Background()
	var err error
	if s.wdb, err = openWriter(s.path, s.opts.BusyTimeout); err != nil {
		return unavailable("writer", err)
	}
	if err := initSchema(ctx, s.wdb); err != nil {
		if errors.Is(err, ErrInvalid) {
			return err
		}
		return unavailable("schema", err)
	}
	// The read pool opens read-only, so it can only be opened once the file
	// and its schema exist.
	if s.rdb, err = openReader(s.path, s.opts.ReadConns, s.opts.BusyTimeout); err != nil {
		return unavailable("reader", err)
	}
	if s.ckdb, err = openCheckpointer(s.path, s.opts.BusyTimeout); err != nil {
		return unavailable("checkpointer", err)
	}
	if s.insert, err = s.wdb.PrepareContext(ctx, insertColumns+insertRow); err != nil {
		return unavailable("prepare insert", err)
	}
	multi := insertColumns + insertRow + strings.Repeat(", "+insertRow, multiRows-1)
	if s.insertMulti, err = s.wdb.PrepareContext(ctx, multi); err != nil {
		return unavailable("prepare insert", err)
	}
	if s.payloads, err = s.rdb.PrepareContext(ctx, positionsQuery(payloadColumns, payloadArgs)); err != nil {
		return unavailable("prepare payload read", err)
	}
	if err := s.loadHeads(ctx); err != nil {
		return unavailable("load heads", err)
	}
	// The schema's transaction made the WAL exist, and the connections
	// kept open until Close keep it.
	if s.wal, err = openWALFile(s.path + "-wal"); err != nil {
		return unavailable("open the WAL", err)
	}
	return nil
}

// loadHeads reads the head event and every stream's version from the file.
// It runs at Open and after the writer found the file changed behind its
// back; the writer goroutine is not running or is the caller.
func (s *Store) loadHeads(ctx context.Context) error {
	var (
		head, headMS int64
		headHash     = GenesisHash
	)
	err := s.wdb.QueryRowContext(ctx,
		`SELECT position, hash, recorded_at FROM events ORDER BY position DESC LIMIT 1`).
		Scan(&head, &headHash, &headMS)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	rows, err := s.wdb.QueryContext(ctx, `SELECT stream_id, MAX(version) FROM events GROUP BY stream_id`)
	if err != nil {
		return err
	}
	defer rows.Close()
	streams := make(map[string]int64)
	for rows.Next() {
		var id string
		var v int64
		if err := rows.Scan(&id, &v); err != nil {
			return err
		}
		streams[id] = v
	}
	if err := rows.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	s.head, s.headHash, s.headMS, s.streams = head, headHash, headMS, streams
	s.mu.Unlock()
	s.wpos, s.whash, s.wms = head, headHash, headMS
	return nil
}

// Close stops accepting appends, lets the writer commit every request
// already queued, then closes the file. Requests submitted after Close began
// fail with ErrClosed. Close is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.qmu.Lock()
		s.closing = true
		s.qmu.Unlock()
		s.signalWriter()
		<-s.writerDone
		<-s.syncerDone
		s.closed.Store(true)
		if err := s.closeHandles(); err != nil {
			s.closeErr = fmt.Errorf("eventstore: close: %w", err)
		}
	})
	return s.closeErr
}

func (s *Store) closeHandles() error {
	var errs []error
	for _, stmt := range []*sql.Stmt{s.insert, s.insertMulti, s.payloads} {
		if stmt != nil {
			errs = append(errs, stmt.Close())
		}
	}
	if s.rdb != nil {
		errs = append(errs, s.rdb.Close())
	}
	if s.ckdb != nil {
		errs = append(errs, s.ckdb.Close())
	}
	if s.wdb != nil {
		errs = append(errs, s.wdb.Close())
	}
	errs = append(errs, s.wal.close())
	if s.lock != nil {
		errs = append(errs, s.lock.release())
	}
	return errors.Join(errs...)
}

// Path is the file the store was opened on, as given to Open.
func (s *Store) Path() string { return s.path }

// Head is the position of the last committed event (0 for an empty log).
func (s *Store) Head() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.head
}

// HeadHash is the hash of the last committed event (GenesisHash for an
// empty log). Recording it elsewhere lets a later Verify prove that nothing
// up to that point was changed, truncation included.
func (s *Store) HeadHash() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.headHash
}

// StreamVersion is the committed version of a stream (0 if it has none).
func (s *Store) StreamVersion(streamID string) int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.streams[streamID]
}

// Watch returns a channel that receives a signal after every commit, and a
// function that stops the signals. The channel has capacity 1, so a slow
// watcher sees one signal for any number of commits it missed: after a
// signal, read up to Head(). The channel is never closed.
func (s *Store) Watch() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.watchMu.Lock()
	s.watchers[ch] = struct{}{}
	s.watchMu.Unlock()
	return ch, sync.OnceFunc(func() {
		s.watchMu.Lock()
		delete(s.watchers, ch)
		s.watchMu.Unlock()
	})
}

func (s *Store) notifyWatchers() {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	for ch := range s.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Stats are counters of the writer since Open.
type Stats struct {
	// Head is the last committed position.
	Head int64
	// Streams is the number of streams with at least one event.
	Streams int
	// Commits counts transactions committed and made durable.
	Commits int64
	// Syncs counts the WAL's fdatasyncs: one makes durable every commit
	// made while the one before it ran.
	Syncs int64
	// Requests and Events count committed append requests and their events.
	Requests, Events int64
	// Conflicts counts requests refused with a ConflictError.
	Conflicts int64
	// FailedCommits counts batches that failed as a whole (ErrUnavailable).
	FailedCommits int64
	// Queued is the number of requests waiting for the writer.
	Queued int
	// CommitWaits counts the times a small batch waited for more requests
	// before its commit (see Options.CommitDelay).
	CommitWaits int64
	// FailingSince is when the latest commit attempt failed, while no
	// commit has succeeded after it (zero otherwise): the disk is full,
	// read-only or failing right now, as far as the store knows.
	FailingSince time.Time
	// SyncFailed: an fdatasync of the WAL failed, and the store refuses
	// every append until it is reopened (see syncer.go).
	SyncFailed bool
}

// Stats returns the writer's counters.
func (s *Store) Stats() Stats {
	s.mu.RLock()
	st := Stats{Head: s.head, Streams: len(s.streams), SyncFailed: s.syncErr != nil}
	s.mu.RUnlock()
	s.qmu.Lock()
	st.Queued = len(s.queue)
	s.qmu.Unlock()
	st.Commits = s.stats.commits.Load()
	st.Syncs = s.stats.syncs.Load()
	st.Requests = s.stats.requests.Load()
	st.Events = s.stats.events.Load()
	st.Conflicts = s.stats.conflicts.Load()
	st.FailedCommits = s.stats.failedCommits.Load()
	st.CommitWaits = s.stats.waits.Load()
	if ns := s.stats.lastFailure.Load(); ns != 0 {
		st.FailingSince = time.Unix(0, ns).UTC()
	}
	return st
}
