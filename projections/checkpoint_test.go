package projections

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/domain"
)

// The checkpointer copies what the projections commit from the WAL into the
// read model's file by itself: the file alone, read without its WAL, holds
// every row, although the WAL stayed far below the size at which the writer
// would have checkpointed inside a commit.
func TestCheckpointerCopiesTheWALBesideTheWriter(t *testing.T) {
	log := newMemLog()
	benchWorkload(2000, func(ev domain.Event) { log.add(t, ev) })
	events := log.all()
	e := newEngine(t, Config{Source: log, Now: time.Now})
	ctx := context.Background()
	for i := 0; i < len(events); i += 32 {
		if err := e.ApplyPack(ctx, events[i:min(i+32, len(events))]); err != nil {
			t.Fatal(err)
		}
	}
	// Wait for a checkpoint after the last commit.
	runs := e.walCk.runs.Load()
	deadline := time.Now().Add(10 * time.Second)
	for e.walCk.runs.Load() == runs {
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint within 10 s of the last commit (%d runs before)", runs)
		}
		time.Sleep(10 * time.Millisecond)
	}

	wal, err := os.Stat(e.cfg.Path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	frames := (wal.Size() - 32) / (4096 + 24)
	if frames >= writerAutoCheckpoint {
		t.Fatalf("the WAL holds %d frames: the writer's own checkpoint ran, the test tests nothing", frames)
	}
	// A copy of the file without its WAL.
	raw, err := os.ReadFile(e.cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(copyPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	count := func(db *sql.DB) (n int64) {
		t.Helper()
		if err := db.QueryRow("SELECT count(*) FROM messages").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	cp, err := sql.Open("sqlite3", "file:"+copyPath+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	live, inFile := count(e.r), count(cp)
	t.Logf("%d events in %d commits; WAL %d frames; %d checkpoints; %d messages in the read model, %d in its file alone",
		len(events), e.commits.Load(), frames, e.walCk.runs.Load(), live, inFile)
	if live == 0 || inFile != live {
		t.Fatalf("the read model's file alone holds %d messages, the read model %d: the WAL was not copied", inFile, live)
	}
}
