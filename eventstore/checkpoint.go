package eventstore

import (
	"context"
	"fmt"
)

// WALCheckpoint is what a checkpoint found and did, in WAL frames (one
// frame is one page written by a commit).
type WALCheckpoint struct {
	// Frames is the number of frames in the WAL before the checkpoint.
	Frames int
	// Checkpointed is how many of them are now copied into the database
	// file. When it equals Frames, the next commit starts the WAL over from
	// its beginning, so the file stops growing.
	Checkpointed int
	// Busy: another connection held a lock the checkpoint needed.
	Busy bool
}

// CheckpointWAL copies the WAL into the database file as far as the open
// readers allow (a PASSIVE checkpoint: it neither waits for a reader nor
// blocks one). It runs on the writer connection, between two group commits.
//
// SQLite checkpoints by itself every ~4 MiB of WAL, but only as far as the
// oldest open read snapshot, and it starts the WAL over only once every
// frame is copied. A reader that runs one read transaction after another
// without a pause (the relay while it catches up) always holds a snapshot
// a little older than the last commit, so the WAL is never copied in full
// and grows by whatever the appenders write: hundreds of megabytes a minute
// under load, which slows every read of the log. Such a reader calls this
// between two of its transactions, when it holds no snapshot.
func (s *Store) CheckpointWAL(ctx context.Context) (WALCheckpoint, error) {
	if s.closed.Load() {
		return WALCheckpoint{}, errClosed
	}
	var busy int
	var c WALCheckpoint
	// With no frame to copy SQLite answers -1, -1 (a WAL not yet opened).
	if err := s.wdb.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &c.Frames, &c.Checkpointed); err != nil {
		if s.closed.Load() {
			return WALCheckpoint{}, errClosed
		}
		return WALCheckpoint{}, unavailable("checkpoint", fmt.Errorf("wal_checkpoint: %w", err))
	}
	c.Busy = busy != 0
	c.Frames, c.Checkpointed = max(c.Frames, 0), max(c.Checkpointed, 0)
	return c, nil
}
