package eventstore

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// The writer goroutine: group commit.
//
// Durability costs one fsync per transaction, and an fsync costs as much as
// dozens of inserts, so the writer applies every request that queued up
// while the previous commit ran in one transaction: BEGIN IMMEDIATE, then
// per request a check of its expected versions against the in-memory stream
// heads and its INSERTs, then one COMMIT. The COMMIT does not sync: the
// batch goes to the syncer (syncer.go), which fdatasyncs the WAL and
// answers, while the writer goes on with the next batch. Under light load a
// batch holds one request and costs what a plain transaction would; under a
// steady stream of requests a small batch may wait up to CommitDelay for
// more (pacer.go).
//
// A request that fails (a version conflict) must not take the batch down
// with it, so its inserts run inside a SAVEPOINT that is rolled back on
// failure. A request inserted by a single statement (one event, the common
// case), which SQLite already undoes on its own when it fails, skips the
// SAVEPOINT and its two extra statements (about 15% more appends per second
// with 64 concurrent single-event appenders).
//
// The stream heads, head position and head hash live in memory: reading
// MAX(version) per append would cost a query per request inside the write
// lock. The UNIQUE (stream_id, version) index remains the safety net: if it
// ever refuses a row, the request fails with a ConflictError and the head
// of that stream is re-read.

func (s *Store) runWriter() {
	defer close(s.writerDone)
	for {
		batch, stop := s.nextBatch()
		if len(batch) > 0 {
			s.commitBatch(batch)
		}
		if stop {
			return
		}
	}
}

// nextBatch waits for queued requests and takes up to MaxBatch of them. stop
// is true once the store is closing and the queue is drained. A small batch
// may first wait for more (see commitPacer).
func (s *Store) nextBatch() (batch []*Pending, stop bool) {
	for {
		s.qmu.Lock()
		if n := len(s.queue); n > 0 && !s.closing && s.pacer.shouldWait(n) {
			s.qmu.Unlock()
			s.pacer.waited(s.waitForMore() - n)
			s.stats.waits.Add(1)
			s.qmu.Lock()
		}
		if n := len(s.queue); n > 0 {
			if n <= s.opts.MaxBatch {
				batch, s.queue = s.queue, nil
			} else {
				batch = s.queue[:s.opts.MaxBatch:s.opts.MaxBatch]
				s.queue = s.queue[s.opts.MaxBatch:]
			}
			s.qmu.Unlock()
			return batch, false
		}
		closing := s.closing
		s.qmu.Unlock()
		if closing {
			return nil, true
		}
		<-s.wake
	}
}

// waitForMore waits up to CommitDelay for the queue to reach pacerTarget
// requests, or for Close, and returns the queue's length.
func (s *Store) waitForMore() int {
	t := time.NewTimer(s.opts.CommitDelay)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.qmu.Lock()
			n := len(s.queue)
			s.qmu.Unlock()
			return n
		case <-s.wake:
			s.qmu.Lock()
			n := len(s.queue)
			closing := s.closing
			s.qmu.Unlock()
			if n >= pacerTarget || closing {
				return n
			}
		}
	}
}

// batchState is the head of the log as the batch being built sees it: the
// committed state plus the requests applied so far in this transaction.
type batchState struct {
	s        *Store
	pos      int64
	hash     string
	lastMS   int64
	versions map[string]int64 // streams changed in this batch
	hasher   *chainHasher
}

func (b *batchState) version(stream string) int64 {
	if v, ok := b.versions[stream]; ok {
		return v
	}
	return b.s.writerVersion(stream)
}

// writerVersion is a stream's version as the writer builds on it: the
// batches committed and not yet durable first, then the durable heads.
func (s *Store) writerVersion(stream string) int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for i := len(s.inflight) - 1; i >= 0; i-- {
		if v, ok := s.inflight[i].versions[stream]; ok {
			return v
		}
	}
	return s.streams[stream]
}

// batchError is a failure of the whole transaction.
type batchError struct {
	err    error
	resync bool // the file changed behind the store's back: reload the heads
}

// Error and Unwrap expose the wrapped cause (always an ErrUnavailable).
func (e *batchError) Error() string { return e.err.Error() }
func (e *batchError) Unwrap() error { return e.err }

func (s *Store) commitBatch(batch []*Pending) {
	ctx := context.Background() // a batch serves many callers; none may cancel it
	if err := s.syncFailure(); err != nil {
		for _, p := range batch {
			p.finish(AppendResult{}, err)
		}
		return
	}
	start := time.Now()
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		s.failBatch(batch, &batchError{err: unavailable("begin", err)})
		return
	}
	b := batchState{
		s:        s,
		pos:      s.wpos,
		hash:     s.whash,
		lastMS:   s.wms,
		versions: make(map[string]int64),
		hasher:   newChainHasher(),
	}
	applied := 0
	for _, p := range batch {
		res, err := s.apply(ctx, tx, &b, &p.req)
		var be *batchError
		if errors.As(err, &be) {
			_ = tx.Rollback() // the transaction may already be gone; the error that matters is be
			s.failBatch(batch, be)
			return
		}
		p.res, p.err = res, err
		if err == nil {
			applied++
		}
	}
	if applied == 0 {
		// Every request conflicted: nothing to make durable.
		_ = tx.Rollback()
	} else if err := tx.Commit(); err != nil {
		s.failBatch(batch, &batchError{err: unavailable("commit", err)})
		return
	}

	var events int64
	for _, p := range batch {
		if p.err == nil {
			events += int64(len(p.res.Events))
		}
	}
	s.wpos, s.whash, s.wms = b.pos, b.hash, b.lastMS
	s.handOver(&committed{
		batch: batch, pos: b.pos, hash: b.hash, ms: b.lastMS, versions: b.versions,
		applied: applied, events: events, start: start,
	})
}

// failBatch answers every request of a failed transaction with the same
// error. The committed in-memory state was never touched, so it still
// matches the file; positions handed out in the batch are handed out again.
func (s *Store) failBatch(batch []*Pending, be *batchError) {
	s.stats.failedCommits.Add(1)
	s.stats.lastFailure.Store(s.opts.Now().UnixNano())
	s.log.WithError(be.err).WithField("requests", len(batch)).Error("eventstore: group commit failed")
	if be.resync {
		s.waitSynced() // loadHeads replaces the durable heads
		if err := s.loadHeads(context.Background()); err != nil {
			s.log.WithError(err).Error("eventstore: reloading stream heads failed")
		}
	}
	for _, p := range batch {
		p.finish(AppendResult{}, be.err)
	}
}

// apply checks one request against the heads and inserts its events. It
// returns a *ConflictError for a request-level failure (the batch goes on)
// or a *batchError when the transaction cannot continue.
func (s *Store) apply(ctx context.Context, tx *sql.Tx, b *batchState, r *preparedRequest) (AppendResult, error) {
	for _, st := range r.streams {
		if cur := b.version(st.StreamID); st.ExpectedVersion != AnyVersion && st.ExpectedVersion != cur {
			return AppendResult{}, &ConflictError{StreamID: st.StreamID, ExpectedVersion: st.ExpectedVersion, ActualVersion: cur}
		}
	}

	// Assign positions, versions, the time and the hashes in memory first.
	// The store's clock is clamped so recorded_at never decreases with
	// position even when the wall clock steps back.
	ms := max(s.opts.Now().UnixMilli(), b.lastMS)
	recordedAt := time.UnixMilli(ms).UTC()
	res := AppendResult{Events: make([]Event, 0, r.events)}
	newVersions := make([]int64, len(r.streams))
	pos, prev := b.pos, b.hash
	for i, st := range r.streams {
		v := b.version(st.StreamID)
		for _, ev := range st.Events {
			v++
			pos++
			hash, ok := b.hasher.sum(hashInput{
				prevHash:      prev,
				position:      pos,
				streamID:      st.StreamID,
				version:       v,
				eventType:     ev.Type,
				schemaVersion: int64(ev.SchemaVersion),
				data:          ev.Data,
				metadata:      r.metadataJSON,
				recordedAtMS:  ms,
			})
			if !ok {
				// Only a head row edited in the file gets here; chaining onto
				// it would make the damage permanent.
				return AppendResult{}, &batchError{err: unavailable("hash", errors.New("the head event's hash in the file is not a SHA-256 hex digest; run Verify"))}
			}
			res.Events = append(res.Events, Event{
				Position:      pos,
				StreamID:      st.StreamID,
				Version:       v,
				Type:          ev.Type,
				SchemaVersion: ev.SchemaVersion,
				Data:          ev.Data,
				Metadata:      r.metadata,
				RecordedAt:    recordedAt,
				Hash:          hash,
				PrevHash:      prev,
			})
			prev = hash
		}
		newVersions[i] = v
	}

	// One statement is atomic on its own; more need a savepoint so that a
	// failure undoes the ones before it.
	savepoint := statements(len(res.Events)) > 1
	if savepoint {
		if _, err := tx.ExecContext(ctx, "SAVEPOINT req"); err != nil {
			return AppendResult{}, &batchError{err: unavailable("savepoint", err)}
		}
	}
	if err := s.insertEvents(ctx, tx, res.Events, string(r.metadataJSON), ms); err != nil {
		return AppendResult{}, s.insertFailed(ctx, tx, b, savepoint, r, err)
	}
	if savepoint {
		if _, err := tx.ExecContext(ctx, "RELEASE req"); err != nil {
			return AppendResult{}, &batchError{err: unavailable("release savepoint", err)}
		}
	}
	b.pos, b.hash, b.lastMS = pos, prev, ms
	for i, st := range r.streams {
		b.versions[st.StreamID] = newVersions[i]
	}
	return res, nil
}

// multiRows is the row count of the multi-row INSERT: a request with many
// events (a batch publish) inserts them multiRows at a time, which saves a
// statement execution (argument conversion, a cgo call, a VM reset) per
// row.
const multiRows = 16

// statements is the number of INSERT executions for n events.
func statements(n int) int { return n/multiRows + n%multiRows }

const insertColumns = `INSERT INTO events
	(position, stream_id, version, type, schema_version, data, metadata, recorded_at, prev_hash, hash) VALUES `

const insertRow = `(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

func (s *Store) insertEvents(ctx context.Context, tx *sql.Tx, events []Event, meta string, ms int64) error {
	var one, multi *sql.Stmt
	args := make([]any, 0, 10*multiRows)
	for len(events) > 0 {
		stmt := &one
		prepared := s.insert
		n := 1
		if len(events) >= multiRows {
			stmt, prepared, n = &multi, s.insertMulti, multiRows
		}
		if *stmt == nil {
			*stmt = tx.StmtContext(ctx, prepared)
		}
		args = args[:0]
		for _, e := range events[:n] {
			args = append(args, e.Position, e.StreamID, e.Version, e.Type, e.SchemaVersion,
				string(e.Data), meta, ms, e.PrevHash, e.Hash)
		}
		if _, err := (*stmt).ExecContext(ctx, args...); err != nil {
			return err
		}
		events = events[n:]
	}
	return nil
}

// insertFailed undoes a request whose INSERT failed and classifies the
// failure.
func (s *Store) insertFailed(ctx context.Context, tx *sql.Tx, b *batchState, savepoint bool, r *preparedRequest, err error) error {
	if !isVersionConflict(err) {
		// SQLITE_FULL, SQLITE_IOERR and the like may have rolled back the
		// whole transaction already; only failing the batch is safe.
		return &batchError{err: unavailable("insert", err), resync: isPositionCollision(err)}
	}
	if savepoint {
		if _, rerr := tx.ExecContext(ctx, "ROLLBACK TO req"); rerr != nil {
			return &batchError{err: unavailable("rollback to savepoint", rerr)}
		}
		if _, rerr := tx.ExecContext(ctx, "RELEASE req"); rerr != nil {
			return &batchError{err: unavailable("release savepoint", rerr)}
		}
	}
	// The in-memory head of some stream was behind the file: someone wrote
	// it behind the store's back. Find which, and take the file's word for
	// it from now on.
	for _, st := range r.streams {
		var actual int64
		if qerr := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = ?`, st.StreamID).Scan(&actual); qerr != nil {
			return &batchError{err: unavailable("read stream head", qerr)}
		}
		if actual == b.version(st.StreamID) {
			continue
		}
		b.versions[st.StreamID] = actual
		s.log.WithField("stream", st.StreamID).WithField("version", actual).
			Warn("eventstore: stream head in memory was stale; the unique index refused the append")
		return &ConflictError{StreamID: st.StreamID, ExpectedVersion: st.ExpectedVersion, ActualVersion: actual}
	}
	return &batchError{err: unavailable("insert", err)}
}
