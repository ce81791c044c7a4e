package eventstore_test

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ledgerq/ledgerq/eventstore"
)

// A read snapshot opened before some commits keeps them from being copied;
// once it ends, one checkpoint copies everything and the next commit starts
// the WAL over.
func TestCheckpointWAL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	s := openStore(t, path)
	pad := strings.Repeat("x", 2000)
	appendSome := func(n int) {
		for i := range n {
			mustAppend(t, s, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
				StreamID: "queue-" + string(rune('a'+i%4)), ExpectedVersion: eventstore.AnyVersion,
				Events: []eventstore.NewEvent{{Type: "TestHappened", SchemaVersion: 1, Data: json.RawMessage(`{"pad":"` + pad + `"}`)}},
			}}})
		}
	}
	appendSome(20)

	reader := rawDB(t, path)
	tx, err := reader.Begin()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := tx.QueryRow("SELECT COUNT(*) FROM events").Scan(&n); err != nil { // the snapshot starts here
		t.Fatal(err)
	}
	appendSome(50)
	pinned, err := s.CheckpointWAL(testCtx(t))
	if err != nil {
		t.Fatalf("CheckpointWAL with a reader: %v", err)
	}
	if pinned.Checkpointed >= pinned.Frames {
		t.Errorf("with a snapshot from before 50 commits open: %+v, want frames left uncopied", pinned)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}

	full, err := s.CheckpointWAL(testCtx(t))
	if err != nil {
		t.Fatalf("CheckpointWAL: %v", err)
	}
	if full.Frames == 0 || full.Checkpointed != full.Frames || full.Busy {
		t.Errorf("without readers: %+v, want every frame copied", full)
	}
	appendSome(1)
	after, err := s.CheckpointWAL(testCtx(t))
	if err != nil {
		t.Fatalf("CheckpointWAL: %v", err)
	}
	if after.Frames >= full.Frames {
		t.Errorf("after one more commit the WAL holds %d frames (it held %d): it did not start over", after.Frames, full.Frames)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckpointWAL(testCtx(t)); !errors.Is(err, eventstore.ErrClosed) {
		t.Errorf("CheckpointWAL after Close: %v, want ErrClosed", err)
	}
}
