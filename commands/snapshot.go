package commands

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ledgerq/ledgerq/domain"
)

// A snapshot is the whole command state, so that a start-up decodes it and
// replays only the log after its position P instead of the whole log. The
// queues are copied one after the other (see capture): each copy holds
// every event of its queue up to P and maybe some after it, up to at most
// position E, and its stream version says how far it goes. The file:
//
//	[8]byte   magic "LQCMDSNP"
//	uint32    format version (big endian)
//	int64     P, where the replay starts (big endian)
//	int64     E ≥ P, no copy holds an event after it (big endian)
//	string    hash of the event at E (uvarint length, bytes; "" when E is 0)
//	uvarint   number of queues, then each queue's domain encoding
//	          (uvarint length, bytes), in name order
//	[32]byte  SHA-256 of everything before it
//
// A snapshot is used only if it is intact (magic, version, checksum), E is
// within the log and the log's event at E has the recorded hash — the
// events are hash-chained, so the log up to E is the one the snapshot was
// taken of: this rules out a snapshot of another log and a log restored
// from an older backup — and every queue decodes. Anything else is a
// warning and a full rebuild: the log is the truth, the snapshot only a
// shortcut, and deleting it is always safe.

const (
	snapshotMagic  = "LQCMDSNP"
	snapshotFormat = 1
	// snapshotFixed is the size of the fixed part of the header.
	snapshotFixed = len(snapshotMagic) + 4 + 8 + 8
	// maxHashLen bounds the recorded hash (hex SHA-256 is 64).
	maxHashLen = 256
)

// StartupReport says how New rebuilt the command state.
type StartupReport struct {
	// SnapshotUsed is true when the state started from the snapshot at
	// SnapshotPosition, holding SnapshotQueues queues.
	SnapshotUsed     bool
	SnapshotPosition int64
	SnapshotQueues   int
	// SnapshotLoad is how long reading, checking and decoding it took.
	SnapshotLoad time.Duration
	// SnapshotProblem says why a configured snapshot was not used; empty
	// when it was used or none is configured.
	SnapshotProblem string
	// Replayed is the number of events read from the log: those after the
	// snapshot, or the whole log.
	Replayed int64
	// Took is the whole rebuild.
	Took time.Duration
}

// Startup says how New rebuilt the command state.
func (a *App) Startup() StartupReport { return a.startup }

// SnapshotStats describes a written snapshot.
type SnapshotStats struct {
	// Position is where a start-up from it replays from; no queue copy
	// holds an event after End.
	Position int64
	End      int64
	Queues   int
	Messages int
	Bytes    int64
	// Locked is the longest time one queue was locked for the snapshot
	// (each is locked only while its own state is copied).
	Locked time.Duration
	// Took is the whole write, file sync included.
	Took time.Duration
}

// rebuild builds every queue's state at start-up: from the snapshot and
// the log after it when the snapshot is valid, else from the whole log.
func (a *App) rebuild(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	start := time.Now()
	rep := &a.startup
	var after int64
	if path := a.opts.SnapshotPath; path != "" {
		a.removeStaleTemps(path)
		t := time.Now()
		pos, n, err := a.loadSnapshot(ctx, path)
		switch {
		case err == nil:
			rep.SnapshotUsed, rep.SnapshotPosition, rep.SnapshotQueues, rep.SnapshotLoad = true, pos, n, time.Since(t)
			after = pos
			a.snapPos.Store(pos)
		case errors.Is(err, fs.ErrNotExist):
			rep.SnapshotProblem = "no snapshot file yet"
			a.log.WithField("path", path).Info("commands: no snapshot yet; rebuilding the command state from the whole log")
		default:
			rep.SnapshotProblem = err.Error()
			a.log.WithField("path", path).WithError(err).Warn("commands: snapshot not used; rebuilding the command state from the whole log")
			clear(a.queues)
		}
	}
	var skip map[string]int64
	if rep.SnapshotUsed {
		skip = make(map[string]int64, len(a.queues))
		for name, qs := range a.queues {
			skip[name] = qs.agg.Version()
		}
	}
	n, err := a.replayFrom(ctx, after, skip)
	if err != nil && rep.SnapshotUsed {
		// The snapshot passed every check and still does not fit the log
		// after it: a bug, but the log can still say the truth.
		a.log.WithError(err).WithField("path", a.opts.SnapshotPath).Warn("commands: the log after the snapshot does not fit it; rebuilding the command state from the whole log")
		*rep = StartupReport{SnapshotProblem: "the log after the snapshot does not fit it: " + err.Error()}
		a.snapPos.Store(0)
		clear(a.queues)
		n, err = a.replayFrom(ctx, 0, nil)
	}
	rep.Replayed = n
	rep.Took = time.Since(start)
	return err
}

// removeStaleTemps deletes the temporary files of snapshot writes that a
// crash interrupted.
func (a *App) removeStaleTemps(path string) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), base+".tmp-") {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// snapshotFile is a parsed, checksum-verified snapshot file.
type snapshotFile struct {
	position int64  // P
	end      int64  // E
	hash     string // of the event at E
	queues   [][]byte
}

// parseSnapshot checks a snapshot file's framing and checksum and splits
// it into queues. It never panics, whatever data holds.
func parseSnapshot(data []byte) (snapshotFile, error) {
	var f snapshotFile
	if len(data) < snapshotFixed+2+sha256.Size {
		return f, fmt.Errorf("the file is too short (%d bytes) to be a snapshot", len(data))
	}
	if string(data[:len(snapshotMagic)]) != snapshotMagic {
		return f, errors.New("the file is not a ledgerq command-state snapshot")
	}
	if v := binary.BigEndian.Uint32(data[len(snapshotMagic):]); v != snapshotFormat {
		return f, fmt.Errorf("snapshot format version %d; this ledgerq reads version %d", v, snapshotFormat)
	}
	body, sum := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], sum) {
		return f, errors.New("checksum mismatch: the file is damaged or was cut short")
	}
	f.position = int64(binary.BigEndian.Uint64(data[len(snapshotMagic)+4:]))
	f.end = int64(binary.BigEndian.Uint64(data[len(snapshotMagic)+12:]))
	if f.position < 0 || f.end < f.position {
		return f, fmt.Errorf("positions %d and %d are out of order", f.position, f.end)
	}
	r := body[snapshotFixed:]
	next := func() ([]byte, error) {
		n, k := binary.Uvarint(r)
		if k <= 0 || n > uint64(len(r)-k) {
			return nil, errors.New("the file's framing is broken")
		}
		p := r[k : k+int(n)]
		r = r[k+int(n):]
		return p, nil
	}
	hash, err := next()
	if err != nil {
		return f, err
	}
	if len(hash) > maxHashLen {
		return f, fmt.Errorf("the recorded hash is %d bytes long", len(hash))
	}
	f.hash = string(hash)
	count, k := binary.Uvarint(r)
	if k <= 0 || count > uint64(len(r)) {
		return f, errors.New("the file's framing is broken")
	}
	r = r[k:]
	f.queues = make([][]byte, 0, count)
	for range count {
		q, err := next()
		if err != nil {
			return f, err
		}
		f.queues = append(f.queues, q)
	}
	if len(r) != 0 {
		return f, fmt.Errorf("%d bytes after the last queue", len(r))
	}
	return f, nil
}

// streamVersions is an optional capability of the store: the committed
// version of a stream, for checking a snapshot taken at the head.
type streamVersions interface {
	StreamVersion(streamID string) int64
}

// loadSnapshot reads the snapshot at path and, if it is valid for this
// log, installs its queues (a.mu is held exclusively, a.queues is empty).
// It returns the snapshot's position and number of queues.
func (a *App) loadSnapshot(ctx context.Context, path string) (int64, int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	f, err := parseSnapshot(data)
	if err != nil {
		return 0, 0, err
	}
	head := a.store.Head()
	if f.end > head {
		return 0, 0, fmt.Errorf("the snapshot holds the log up to position %d but the log ends at %d (was the log restored from an older backup?)", f.end, head)
	}
	if f.end == 0 {
		if f.hash != "" || len(f.queues) != 0 {
			return 0, 0, errors.New("a snapshot at position 0 holds state")
		}
	} else {
		evs, err := a.store.ReadPositions(ctx, []int64{f.end})
		if err != nil {
			return 0, 0, fmt.Errorf("reading the event at the snapshot's position %d: %w", f.end, err)
		}
		if len(evs) != 1 || evs[0].Position != f.end {
			return 0, 0, fmt.Errorf("the log has no event at the snapshot's position %d", f.end)
		}
		if evs[0].Hash != f.hash {
			return 0, 0, fmt.Errorf("the log's event at position %d has hash %.16s…, the snapshot was taken after %.16s…: it belongs to another log (or to an older copy of this one)",
				f.end, evs[0].Hash, f.hash)
		}
	}
	queues, err := decodeQueues(f.queues)
	if err != nil {
		return 0, 0, err
	}
	sv, canCheck := a.store.(streamVersions)
	// With nothing after P in the log, every copy is at its stream's head.
	canCheck = canCheck && f.position == head
	for _, q := range queues {
		if _, dup := a.queues[q.Name()]; dup {
			return 0, 0, fmt.Errorf("queue %q appears twice", q.Name())
		}
		if q.Version() < 1 {
			return 0, 0, fmt.Errorf("queue %q has no events", q.Name())
		}
		if canCheck {
			if v := sv.StreamVersion(domain.StreamID(q.Name())); v != q.Version() {
				return 0, 0, fmt.Errorf("queue %q is at version %d in the snapshot, %d in the log", q.Name(), q.Version(), v)
			}
		}
		qs := newQueueState(q.Name())
		qs.agg = q
		a.queues[q.Name()] = qs
	}
	return f.position, len(queues), nil
}

// decodeQueues decodes the queues of a snapshot on every core.
func decodeQueues(blobs [][]byte) ([]*domain.Queue, error) {
	out := make([]*domain.Queue, len(blobs))
	errs := make([]error, len(blobs))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(blobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(blobs) {
					return
				}
				out[i], errs[i] = domain.DecodeQueue(blobs[i])
				if errs[i] != nil {
					errs[i] = fmt.Errorf("queue %d of the snapshot: %w", i+1, errs[i])
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// WriteSnapshot writes the whole command state to path, atomically, and
// returns the log position it starts from. Each queue is locked only while
// its own state is copied; waiting for the appends still pending, encoding
// and writing the file happen after. A queue left broken by a failed
// append is rebuilt from the log first. It works after Close too
// (a clean shutdown's last snapshot), as long as the store is open.
func (a *App) WriteSnapshot(ctx context.Context, path string) (int64, error) {
	st, err := a.writeSnapshot(ctx, path)
	if err != nil {
		return 0, err
	}
	return st.Position, nil
}

func (a *App) writeSnapshot(ctx context.Context, path string) (SnapshotStats, error) {
	a.snapMu.Lock()
	defer a.snapMu.Unlock()
	start := time.Now()
	pos, end, images, locked, err := a.capture(ctx)
	if err != nil {
		return SnapshotStats{}, fmt.Errorf("commands: snapshot: %w", err)
	}
	hash := ""
	if end > 0 {
		evs, err := a.store.ReadPositions(ctx, []int64{end})
		if err != nil {
			return SnapshotStats{}, fmt.Errorf("commands: snapshot: reading the event at %d: %w", end, err)
		}
		if len(evs) != 1 || evs[0].Position != end {
			return SnapshotStats{}, fmt.Errorf("commands: snapshot: the log has no event at %d", end)
		}
		hash = evs[0].Hash
	}
	st := SnapshotStats{Position: pos, End: end, Queues: len(images), Locked: locked}
	for _, im := range images {
		st.Messages += im.Messages()
		// A message without a position could not be read after a start
		// from this snapshot; capture noted every one, or says why not.
		if n := im.Unplaced(); n > 0 {
			return SnapshotStats{}, fmt.Errorf("commands: snapshot: %d messages of queue %q have no log position", n, im.Name())
		}
	}
	if st.Bytes, err = writeSnapshotFile(ctx, path, pos, end, hash, images); err != nil {
		return SnapshotStats{}, fmt.Errorf("commands: snapshot: %w", err)
	}
	st.Took = time.Since(start)
	a.snapPos.Store(pos)
	a.log.WithFields(logrus.Fields{"path": path, "position": pos, "end": end, "queues": st.Queues, "messages": st.Messages,
		"bytes": st.Bytes, "locked_ms": msFloat(st.Locked), "took_ms": st.Took.Milliseconds()}).Info("commands: snapshot written")
	return st, nil
}

func msFloat(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// capture copies every queue's state and returns the log position P the
// snapshot starts from, and E, a position no copy holds an event after. Each queue is locked only while its own state is
// copied, one after the other: the copies are not all of one moment, but
// each holds every event of its queue up to P (and maybe some after it),
// and its stream version says where it stands. A start-up replays the log
// after P and skips, per queue, the events the copy already holds.
//
// An append still pending when a queue is copied is in the copy (a
// decision applies its events before it submits them). Such appends are
// waited for once every queue is copied, and their published messages'
// positions noted in the copies; if one of them fails, a copy holds
// events the log does not, and the snapshot is abandoned.
func (a *App) capture(ctx context.Context) (pos, end int64, images []*domain.QueueImage, longest time.Duration, err error) {
	// Under the registry's lock no create, configure or delete is half
	// done: every queue whose events are at or before P is listed.
	a.mu.RLock()
	pos = a.store.Head()
	qss := slices.SortedFunc(maps.Values(a.queues), func(x, y *queueState) int { return strings.Compare(x.name, y.name) })
	a.mu.RUnlock()

	pending := make(map[*appendHandle]struct{})
	byName := make(map[string]*domain.QueueImage, len(qss))
	images = make([]*domain.QueueImage, 0, len(qss))
	for _, qs := range qss {
		// The copy's memory is allocated before the lock is taken for the
		// copy: a large allocation may have to help the garbage collector.
		qs.mu.Lock()
		room := qs.agg.ImageCapacity()
		qs.mu.Unlock()
		buf := domain.ReserveImage(room + room/8 + 64)
		// A queue left broken by a failed append is rebuilt from the log
		// here, before it can be copied.
		if err := a.lockQueue(ctx, qs); err != nil {
			return 0, 0, nil, 0, err
		}
		held := time.Now()
		for h := range qs.pending {
			pending[h] = struct{}{}
		}
		// A queue whose creation failed has no stream: nothing to keep.
		if qs.agg.Version() > 0 {
			im := qs.agg.ImageInto(buf)
			images = append(images, im)
			byName[qs.name] = im
		}
		qs.mu.Unlock()
		longest = max(longest, time.Since(held))
	}
	// Every event a copy holds was committed by now, or is pending.
	end = a.store.Head()
	for h := range pending {
		res, err := h.wait()
		if err != nil {
			return 0, 0, nil, 0, fmt.Errorf("an append failed while the state was copied (the next snapshot will do): %w", err)
		}
		end = max(end, res.LastPosition())
		for _, s := range h.spans {
			im := byName[s.qs.name]
			if im == nil {
				continue
			}
			for i, e := range s.events {
				if p, ok := e.(domain.MessagePublished); ok {
					if at, found := positionIn(res, s.qs.name, s.first+int64(i)); found {
						im.NotePosition(p.MessageID, at)
					}
				}
			}
		}
	}
	return pos, end, images, longest, nil
}

// writeSnapshotFile writes the file through a temporary file in the same
// directory, synced before it replaces path, and syncs the directory.
func writeSnapshotFile(ctx context.Context, path string, pos, end int64, hash string, images []*domain.QueueImage) (n int64, err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return 0, err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	sum := sha256.New()
	w := &countWriter{w: io.MultiWriter(bw, sum)}
	var hdr []byte
	hdr = append(hdr, snapshotMagic...)
	hdr = binary.BigEndian.AppendUint32(hdr, snapshotFormat)
	hdr = binary.BigEndian.AppendUint64(hdr, uint64(pos))
	hdr = binary.BigEndian.AppendUint64(hdr, uint64(end))
	hdr = binary.AppendUvarint(hdr, uint64(len(hash)))
	hdr = append(hdr, hash...)
	hdr = binary.AppendUvarint(hdr, uint64(len(images)))
	w.Write(hdr)
	var buf []byte
	for _, im := range images {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		buf, _ = im.AppendBinary(buf[:0])
		w.Write(binary.AppendUvarint(nil, uint64(len(buf))))
		w.Write(buf)
	}
	if w.err != nil {
		return 0, w.err
	}
	if _, err := bw.Write(sum.Sum(nil)); err != nil {
		return 0, err
	}
	if err := bw.Flush(); err != nil {
		return 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return 0, err
	}
	if d, err := os.Open(dir); err == nil {
		err = d.Sync()
		_ = d.Close()
		if err != nil {
			return 0, fmt.Errorf("sync %s: %w", dir, err)
		}
	}
	return w.n + sha256.Size, nil
}

// countWriter counts what it writes and keeps the first error.
type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}

// runSnapshots writes a snapshot whenever SnapshotEvery events were
// appended since the last one. A failure is logged and retried later,
// never fatal: the log stays the truth, start-up just replays more of it.
func (a *App) runSnapshots() {
	defer close(a.snapDone)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-a.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	t := time.NewTicker(a.opts.SnapshotInterval)
	defer t.Stop()
	var backoff time.Duration
	var notBefore time.Time
	for {
		select {
		case <-a.closed:
			return
		case <-t.C:
		}
		if time.Now().Before(notBefore) || a.store.Head()-a.snapPos.Load() < a.opts.SnapshotEvery {
			continue
		}
		if _, err := a.writeSnapshot(ctx, a.opts.SnapshotPath); err != nil {
			if a.isClosed() {
				return
			}
			backoff = min(max(2*backoff, a.opts.SnapshotInterval), 5*time.Minute)
			notBefore = time.Now().Add(backoff)
			a.log.WithError(err).WithField("retry_in", backoff.String()).Error("commands: periodic snapshot failed; nothing is lost, a start-up replays more of the log until one succeeds")
			continue
		}
		backoff, notBefore = 0, time.Time{}
	}
}
