package projections

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
)

// checkpointEvery is how often the checkpointer copies the read model's WAL
// into its file, when the projections committed since it last did.
const checkpointEvery = 100 * time.Millisecond

// writerAutoCheckpoint is the WAL size, in pages, past which the writer
// connection checkpoints by itself at commit: a backstop for when the
// checkpointer cannot keep the WAL short (see checkpointer).
const writerAutoCheckpoint = 8192 // 32 MiB of 4 KiB pages

// checkpointer copies the read model's WAL into its file from a connection
// of its own, so that a projection's commit does not.
//
// SQLite checkpoints in the connection that commits, once the WAL holds
// wal_autocheckpoint pages (1,000 by default): that commit then copies
// every page changed since the last checkpoint into the file and fsyncs
// it. The read model changes many pages per commit (each queue's index
// leaves), so under load those commits took 10–80 ms instead of ~2 ms, and
// every event behind them waited: measured at 2,000 publishes/s over 250
// queues, 53 commits/s of 6.3 ms on average, with one of 50–78 ms every
// few seconds. A checkpoint from another connection takes only SQLite's
// checkpointer lock; the writer keeps committing to the WAL meanwhile.
//
// The WAL starts over from its beginning only at a commit that finds all
// of it copied, which a checkpoint running beside back-to-back commits
// rarely leaves. So the writer still checkpoints, at writerAutoCheckpoint
// pages instead of 1,000: by then the checkpointer has copied all but the
// last few commits, so that checkpoint is short, and the WAL starts over.
type checkpointer struct {
	db      *sql.DB
	commits *atomic.Int64 // the engine's commit count
	logger  watermill.LoggerAdapter
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once

	runs, failures atomic.Int64
}

func startCheckpointer(db *sql.DB, commits *atomic.Int64, logger watermill.LoggerAdapter) *checkpointer {
	c := &checkpointer{db: db, commits: commits, logger: logger, stop: make(chan struct{}), done: make(chan struct{})}
	go c.loop()
	return c
}

func (c *checkpointer) loop() {
	defer close(c.done)
	tick := time.NewTicker(checkpointEvery)
	defer tick.Stop()
	seen := c.commits.Load()
	for {
		select {
		case <-c.stop:
			return
		case <-tick.C:
		}
		n := c.commits.Load()
		if n == seen {
			continue
		}
		seen = n
		c.checkpoint()
	}
}

// checkpoint runs one PASSIVE checkpoint: it copies what it can without
// waiting for the writer or a reader.
func (c *checkpointer) checkpoint() {
	var busy, frames, copied int
	if err := c.db.QueryRowContext(context.Background(), "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &copied); err != nil {
		if n := c.failures.Add(1); n == 1 || n%100 == 0 {
			c.logger.Error("read model: WAL checkpoint failed", err, watermill.LogFields{"failures": n})
		}
		return
	}
	c.runs.Add(1)
}

// close stops the loop and waits for a checkpoint under way. It may be
// called more than once.
func (c *checkpointer) close() {
	c.once.Do(func() { close(c.stop) })
	<-c.done
}
