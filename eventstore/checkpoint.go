package eventstore

import (
	"context"
	"database/sql"
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
// readers allow (PASSIVE checkpoints: they neither wait for a reader nor
// block one), in two steps. The bulk of the frames is copied, and the file
// synced, on a connection of its own, while group commits go on: in WAL
// mode a checkpoint and a commit do not wait for each other. Then the
// writer's connection, between two group commits, copies what was committed
// meanwhile (a few frames, and two syncs): SQLite starts the WAL over only
// at a commit that finds every frame copied, which a checkpoint racing the
// commits never leaves behind. That step runs once the WAL has passed
// walRestartFrames, or earlier when it would pass walMaxFrames by the next
// call at the pace it grew since the last one. Done wholly on the writer's
// connection after every 1,024 events, and by SQLite inside a commit every
// 1,000 frames, the checkpoints held the next group commit for their copies
// and syncs about twice per 1,000 events.
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
	c, err := s.checkpointOn(ctx, s.ckdb)
	if err != nil {
		return c, err
	}
	grew := c.Frames - int(s.walFrames.Swap(int64(c.Frames)))
	if grew < 0 { // it started over since: all of it is new
		grew = c.Frames
	}
	if c.Frames < walRestartFrames && c.Frames+grew <= walMaxFrames {
		return c, nil
	}
	// The next commit starts the WAL over, so all of what the next call
	// finds will be new.
	s.walFrames.Store(0)
	return s.checkpointOn(ctx, s.wdb)
}

// walRestartFrames is the size of the WAL (16 MiB of 4 KiB frames) past
// which CheckpointWAL ends with the writer's step, so that the next commit
// starts the WAL over. Below it only the bulk step runs, which does not
// hold the writer: each writer step costs the group commit it delays two
// syncs (3-13 ms on the v657 host, ~3 ms with the read model's writeback).
// The writer's own automatic checkpoint (writerPragmas) is the backstop
// when nobody calls CheckpointWAL.
const walRestartFrames = 4096

// walMaxFrames (24 MiB) is the size the WAL is kept under when it grows
// fast: CheckpointWAL takes the writer's step before walRestartFrames if
// the WAL would pass walMaxFrames by the next call at the pace it grew since
// the last one. A relay behind calls every 100 ms or after its next pack;
// with appenders writing 130-150 MB of WAL a second (AMD EPYC host), the WAL
// reached 31-48 MiB before it started over when only walRestartFrames
// counted. Predicting against walRestartFrames itself kept it at 17 MiB but
// took the writer's step at every call of a relay keeping up (~2,300 frames
// apart in the closed-loop publish), twice as often.
const walMaxFrames = 6144

func (s *Store) checkpointOn(ctx context.Context, db *sql.DB) (WALCheckpoint, error) {
	if s.closed.Load() {
		return WALCheckpoint{}, errClosed
	}
	var busy int
	var c WALCheckpoint
	// With no frame to copy SQLite answers -1, -1 (a WAL not yet opened).
	if err := db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &c.Frames, &c.Checkpointed); err != nil {
		if s.closed.Load() {
			return WALCheckpoint{}, errClosed
		}
		return WALCheckpoint{}, unavailable("checkpoint", fmt.Errorf("wal_checkpoint: %w", err))
	}
	c.Busy = busy != 0
	c.Frames, c.Checkpointed = max(c.Frames, 0), max(c.Checkpointed, 0)
	return c, nil
}
