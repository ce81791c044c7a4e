package limits

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// The durable limit: the HTTP + JSON + JWT handler that, before its 201,
// also commits the MessagePublished row to the events schema with group
// commit and waits for the fsync. It is the least work that gives ledgerq's
// durable answer (the row on disk, in the queue's stream, in the hash
// chain), without what ledgerq adds on top: the command model, the relay,
// the read model, the metrics and the access log. ledgerq ÷ this limit is
// the share of a durable publish's cost that is ledgerq's own.

// maxDurableBatch bounds one group commit, as the store's MaxBatch does.
const maxDurableBatch = 256

type durableRow struct {
	stream string
	data   string
	done   chan durableResult
}

type durableResult struct {
	pos int64
	err error
}

// durableWriter is the group commit: every row queued while the previous
// transaction committed goes into the next one, and each transaction's
// COMMIT syncs the WAL (synchronous=FULL) before its rows are answered.
type durableWriter struct {
	db       *sql.DB
	stmt     *sql.Stmt
	mu       sync.Mutex
	queue    []*durableRow
	wake     chan struct{}
	versions map[string]int64
	head     int64 // the last position written (a fresh database: 0)
	prev     string
	closed   chan struct{}
	done     chan struct{}
}

func newDurableWriter(path string) (*durableWriter, error) {
	db, err := OpenEventsDB(path)
	if err != nil {
		return nil, err
	}
	stmt, err := db.Prepare(`INSERT INTO events
		(position, stream_id, version, type, schema_version, data, metadata, recorded_at, prev_hash, hash)
		VALUES (?, ?, ?, 'MessagePublished', 1, ?, ?, ?, ?, ?)`)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("limits: prepare: %w", err)
	}
	w := &durableWriter{
		db: db, stmt: stmt,
		wake:     make(chan struct{}, 1),
		versions: make(map[string]int64),
		prev:     hex.EncodeToString(make([]byte, sha256.Size)),
		closed:   make(chan struct{}),
		done:     make(chan struct{}),
	}
	go w.run()
	return w, nil
}

// append queues a row and waits until it is durable.
func (w *durableWriter) append(ctx context.Context, stream, data string) (int64, error) {
	row := &durableRow{stream: stream, data: data, done: make(chan durableResult, 1)}
	w.mu.Lock()
	w.queue = append(w.queue, row)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	select {
	case res := <-row.done:
		return res.pos, res.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (w *durableWriter) run() {
	defer close(w.done)
	for {
		select {
		case <-w.wake:
		case <-w.closed:
			return
		}
		for {
			w.mu.Lock()
			batch := w.queue
			if len(batch) > maxDurableBatch {
				batch = batch[:maxDurableBatch:maxDurableBatch]
			}
			w.queue = w.queue[len(batch):]
			w.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			w.commit(batch)
		}
	}
}

const durableMetadata = `{"subject":"bench","request_id":"01J0000000000000000000BENCH","correlation_id":"01J0000000000000000000BENCH"}`

func (w *durableWriter) commit(batch []*durableRow) {
	fail := func(err error) {
		for _, r := range batch {
			r.done <- durableResult{err: err}
		}
	}
	tx, err := w.db.Begin()
	if err != nil {
		fail(err)
		return
	}
	ins := tx.Stmt(w.stmt)
	now := time.Now().UnixMilli()
	prev := w.prev
	versions := make(map[string]int64, len(batch))
	pos := make([]int64, len(batch))
	for i, r := range batch {
		v, ok := versions[r.stream]
		if !ok {
			v = w.versions[r.stream]
		}
		v++
		next := chainHash(prev, r.stream, v, r.data)
		pos[i] = w.head + int64(i) + 1
		if _, err := ins.Exec(pos[i], r.stream, v, r.data, durableMetadata, now, prev, next); err != nil {
			_ = tx.Rollback()
			fail(err)
			return
		}
		versions[r.stream], prev = v, next
	}
	if err := tx.Commit(); err != nil {
		fail(err)
		return
	}
	for s, v := range versions {
		w.versions[s] = v
	}
	w.prev, w.head = prev, w.head+int64(len(batch))
	for i, r := range batch {
		r.done <- durableResult{pos: pos[i]}
	}
}

func (w *durableWriter) Close() error {
	close(w.closed)
	<-w.done
	return errors.Join(w.stmt.Close(), w.db.Close())
}

// DurableHandler is NewDurableHTTPHandler's handler; Close stops its writer
// and closes the database.
type DurableHandler struct {
	http.Handler
	w *durableWriter
}

// Close stops the writer; requests still waiting get no answer.
func (d *DurableHandler) Close() error { return d.w.Close() }

// NewDurableHTTPHandler is NewHTTPHandler whose publish also appends the
// message's MessagePublished row to a fresh events database at dbPath (the
// schema of EventsSchema, stream queue-NAME, versions and the hash chain
// kept in memory) with group commit, and answers 201 only once the row's
// transaction is committed and synced, with the row's position.
func NewDurableHTTPHandler(secret []byte, dbPath string) (*DurableHandler, error) {
	w, err := newDurableWriter(dbPath)
	if err != nil {
		return nil, err
	}
	l, err := newHTTPLimit(secret)
	if err != nil {
		w.Close()
		return nil, err
	}
	l.store = func(ctx context.Context, queue, id, body string) (int64, error) {
		data, err := PublishedData(queue, id, body, time.Now())
		if err != nil {
			return 0, err
		}
		return w.append(ctx, "queue-"+queue, string(data))
	}
	return &DurableHandler{Handler: l.mux(), w: w}, nil
}
