package projections

import (
	"database/sql"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The checkpointer copies what the projections commit from the WAL into the
// read model's file by itself: the file alone, read without its WAL, holds
// every row, although the WAL stayed far below the size at which the writer
// would have checkpointed inside a commit.
func TestCheckpointerCopiesTheWALBesideTheWriter(t *testing.T) {
	log, events := workloadLog(t, 2000)
	e := newEngine(t, Config{Source: log, Now: time.Now})
	applyInPacks(t, e, events, 32)
	// The checkpointer runs every checkpointEvery once commits happened
	// since its last run; a run under way during the last commits copies
	// only what was committed before it looked. So wait, up to 10 s, for
	// the file alone to hold every row.
	count := func(db *sql.DB) (n int64, err error) {
		err = db.QueryRow("SELECT count(*) FROM messages").Scan(&n)
		return n, err
	}
	live, err := count(e.r)
	if err != nil {
		t.Fatal(err)
	}
	var inFile int64
	deadline := time.Now().Add(10 * time.Second)
	for {
		wal, err := os.Stat(e.cfg.Path + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		frames := (wal.Size() - 32) / (4096 + 24)
		if frames >= writerAutoCheckpoint {
			t.Fatalf("the WAL holds %d frames: the writer's own checkpoint ran, the test tests nothing", frames)
		}
		// Before the first checkpoint the file alone may not even hold the
		// table yet.
		inFile, err = countFileAlone(t, e.cfg.Path, count)
		if err == nil && live > 0 && inFile == live {
			t.Logf("%d events in %d commits; WAL %d frames; %d checkpoints; %d messages in the read model and in its file alone",
				len(events), e.commits.Load(), frames, e.walCk.runs.Load(), live)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d checkpoints the read model's file alone holds %d messages (%v), the read model %d: the WAL was not copied",
				e.walCk.runs.Load(), inFile, err, live)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countFileAlone counts with count in a copy of the SQLite file at path
// made without its WAL: what checkpoints have copied into the file.
func countFileAlone(t *testing.T, path string, count func(*sql.DB) (int64, error)) (int64, error) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(copyPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	cp, err := sql.Open("sqlite3", "file:"+copyPath+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	return count(cp)
}
