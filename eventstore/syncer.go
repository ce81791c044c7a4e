package eventstore

import (
	"fmt"
	"os"
	"slices"
	"time"
)

// The syncer goroutine: the durability half of a group commit.
//
// The writer connection commits at synchronous=NORMAL: a COMMIT writes its
// frames into the WAL and returns without an fsync. The syncer then calls
// fdatasync on the WAL file itself, and only after it returns does the
// batch count as committed: the durable head (Head, HeadHash,
// StreamVersion, every read) moves, watchers hear of it, and the appenders
// get their answers. That is the durability of synchronous=FULL, which
// fsyncs inside the COMMIT, with one difference that pays: the writer does
// not wait for the fsync. While the syncer waits for the disk, the writer
// builds and commits the next batch, and one fdatasync covers every batch
// committed before it started. With FULL, the requests that queued up during
// a commit waited for its fsync to end, then for their own transaction, then
// for its fsync.
//
// Nothing outside the store sees a batch before its fdatasync returned: the
// answers, the watchers (the relay), the reads (bounded by the durable
// head) and Verify all go by the durable head. Only the writer builds on the
// committed state beyond it, and whatever it commits on top is made durable
// by a later fdatasync of the same file, which covers the earlier frames
// too: a WAL is written in order.
//
// Checkpoints are unchanged at NORMAL: SQLite syncs the WAL before it copies
// frames into the database file and syncs the file after, before it starts
// the WAL over.
//
// When fdatasync fails, the kernel may already have dropped the dirty pages
// it could not write, so a later fdatasync that succeeds proves nothing
// about them (PostgreSQL's "fsyncgate"). The store then answers every
// request not yet durable with ErrUnavailable and refuses every later
// append until it is reopened, when SQLite recovers the WAL as it is on
// disk. The requests that got that error may or may not be in the log, as
// after a crash.

// committed is a batch whose COMMIT returned and whose answers wait for the
// WAL's next fdatasync.
type committed struct {
	batch    []*Pending
	pos      int64
	hash     string
	ms       int64
	versions map[string]int64
	applied  int   // requests committed; 0 when all of them conflicted
	events   int64 // events committed
	start    time.Time
}

// walFile is the WAL of the log, opened to be fdatasync'd. SQLite keeps the
// file (same inode) while any connection is open, and the store keeps
// connections open until Close; the file is still compared with the path at
// every sync, so a WAL deleted and made anew by someone else is never
// mistaken for ours.
type walFile struct {
	path string
	f    *os.File
	fi   os.FileInfo
}

func openWALFile(path string) (*walFile, error) {
	w := &walFile{path: path}
	if err := w.reopen(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *walFile) reopen() error {
	f, err := os.Open(w.path)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	if w.f != nil {
		w.f.Close()
	}
	w.f, w.fi = f, fi
	return nil
}

// sync makes every frame written to the WAL so far durable.
func (w *walFile) sync() error {
	fi, err := os.Stat(w.path)
	if err != nil {
		return err
	}
	if !os.SameFile(fi, w.fi) {
		if err := w.reopen(); err != nil {
			return err
		}
	}
	return datasync(w.f)
}

func (w *walFile) close() error {
	if w == nil || w.f == nil {
		return nil
	}
	return w.f.Close()
}

// handOver queues a committed batch for the syncer. Called by the writer.
func (s *Store) handOver(c *committed) {
	s.mu.Lock()
	s.inflight = append(s.inflight, c)
	s.mu.Unlock()
	select {
	case s.syncWake <- struct{}{}:
	default:
	}
}

// runSyncer makes the committed batches durable and answers them, until the
// writer has stopped and nothing is left in flight.
func (s *Store) runSyncer() {
	defer close(s.syncerDone)
	writerDone := s.writerDone
	for {
		select {
		case <-s.syncWake:
		case <-writerDone:
			writerDone = nil // closed: the loop below drains what is left
		}
		for {
			s.mu.RLock()
			group := slices.Clone(s.inflight) // syncGroup shifts s.inflight's array
			s.mu.RUnlock()
			if len(group) == 0 {
				break
			}
			s.syncGroup(group)
		}
		if writerDone == nil {
			s.mu.RLock()
			left := len(s.inflight)
			s.mu.RUnlock()
			if left == 0 {
				return
			}
		}
	}
}

// syncGroup makes the oldest batches in flight durable with one fdatasync,
// publishes them as the durable head and answers their requests.
func (s *Store) syncGroup(group []*committed) {
	wrote := false
	for _, c := range group {
		wrote = wrote || c.applied > 0
	}
	err := s.syncFailure()
	if err == nil && wrote {
		if serr := s.syncWAL(); serr != nil {
			err = unavailable("sync", fmt.Errorf("fdatasync of the WAL failed; the log refuses appends until it is reopened: %w", serr))
			s.log.WithError(serr).Error("eventstore: fdatasync of the WAL failed; refusing appends until the store is reopened")
			s.mu.Lock()
			s.syncErr = err
			s.mu.Unlock()
		}
	}

	s.mu.Lock()
	if err == nil {
		last := group[len(group)-1]
		s.head, s.headHash, s.headMS = last.pos, last.hash, last.ms
		for _, c := range group {
			for id, v := range c.versions {
				s.streams[id] = v
			}
		}
	}
	n := copy(s.inflight, s.inflight[len(group):])
	clear(s.inflight[n:])
	s.inflight = s.inflight[:n]
	s.synced.Broadcast()
	s.mu.Unlock()

	if err != nil {
		s.stats.failedCommits.Add(int64(len(group)))
		s.stats.lastFailure.Store(s.opts.Now().UnixNano())
		for _, c := range group {
			for _, p := range c.batch {
				p.finish(AppendResult{}, err)
			}
		}
		return
	}
	var durable bool
	for _, c := range group {
		if c.applied == 0 {
			continue
		}
		durable = true
		s.stats.commits.Add(1)
		s.stats.requests.Add(int64(c.applied))
		s.stats.events.Add(c.events)
		if s.opts.ObserveCommit != nil {
			s.opts.ObserveCommit(c.applied, int(c.events), time.Since(c.start))
		}
	}
	if durable {
		s.stats.lastFailure.Store(0)
		s.stats.syncs.Add(1)
		// Watchers hear of the commit before any appender returns, so a
		// caller that appended and then checks its watch channel sees it.
		s.notifyWatchers()
	}
	for _, c := range group {
		for _, p := range c.batch {
			if p.err != nil {
				s.stats.conflicts.Add(1)
			}
			p.finish(p.res, p.err)
		}
	}
}

// syncWAL is the fdatasync of the WAL. Tests hold it back or make it fail
// through syncHook.
func (s *Store) syncWAL() error {
	if hook := s.syncHook.Load(); hook != nil {
		if err := (*hook)(); err != nil {
			return err
		}
	}
	return s.wal.sync()
}

// syncFailure is the error of a failed fdatasync, which every later append
// gets, or nil.
func (s *Store) syncFailure() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.syncErr
}

// waitSynced blocks the writer until nothing it committed is in flight.
func (s *Store) waitSynced() {
	s.mu.Lock()
	for len(s.inflight) > 0 {
		s.synced.Wait()
	}
	s.mu.Unlock()
}
