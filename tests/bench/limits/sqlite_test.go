package limits

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestInsertRowsWritesAValidLog(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.db")
	db, err := OpenEventsDB(path)
	if err != nil {
		t.Fatal(err)
	}
	res, err := insertRows(context.Background(), db, SQLiteConfig{Streams: 3, Batch: 10, MaxRows: 70, Duration: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops != 70 || res.Rate() <= 0 {
		t.Fatalf("result %+v, want 70 rows at a positive rate", res)
	}
	// Batches rotate over the streams: 7 batches of 10 over 3 streams.
	wantPerStream := map[string]int64{"queue-bench-batch-0": 30, "queue-bench-batch-1": 20, "queue-bench-batch-2": 20}
	rows, err := db.Query(`SELECT stream_id, count(*), min(version), max(version) FROM events GROUP BY stream_id`)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for rows.Next() {
		var s string
		var n, lo, hi int64
		if err := rows.Scan(&s, &n, &lo, &hi); err != nil {
			t.Fatal(err)
		}
		if n != wantPerStream[s] || lo != 1 || hi != n {
			t.Errorf("stream %s: %d rows, versions %d…%d; want %d rows, versions 1…%d", s, n, lo, hi, wantPerStream[s], wantPerStream[s])
		}
		seen++
	}
	rows.Close()
	if seen != 3 {
		t.Fatalf("%d streams, want 3", seen)
	}
	// Every row links to the previous row's hash.
	var broken int
	if err := db.QueryRow(`SELECT count(*) FROM events e JOIN events p ON p.position = e.position - 1 WHERE e.prev_hash != p.hash`).Scan(&broken); err != nil {
		t.Fatal(err)
	}
	if broken != 0 {
		t.Fatalf("%d rows do not chain to their predecessor", broken)
	}
	db.Close()

	found, err := FindEventsDB(dir)
	if err != nil || found != path {
		t.Fatalf("FindEventsDB = %q, %v; want %q", found, err, path)
	}
	scan, err := ScanDecode(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if scan.Ops != 70 {
		t.Fatalf("ScanDecode read %d rows, want 70", scan.Ops)
	}
}

func TestSQLiteInsertRemovesItsDatabase(t *testing.T) {
	dir := t.TempDir()
	res, err := SQLiteInsert(context.Background(), SQLiteConfig{Dir: dir, MaxRows: 200})
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops != 200 {
		t.Fatalf("%d rows, want 200 (two batches of the default 100)", res.Ops)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
}

func TestScanDecodeRefusesUnknownType(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	db, err := OpenEventsDB(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO events (stream_id, version, type, schema_version, data, metadata, recorded_at, prev_hash, hash)
		VALUES ('queue-a', 1, 'SomethingElse', 1, '{}', '{}', 0, '', '')`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := ScanDecode(context.Background(), path); err == nil {
		t.Fatal("ScanDecode accepted an unknown event type")
	}
}

// A --work-dir may hold characters that end a file name in a SQLite URI.
func TestLimitsOpenTheFileTheyAreGiven(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "runs?at=10#00 %41")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "events.db")
	db, err := OpenEventsDB(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := insertRows(context.Background(), db, SQLiteConfig{Streams: 2, Batch: 5, MaxRows: 20, Duration: time.Minute}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Fatalf("the log is not at %q: %v", path, err)
	}
	scan, err := ScanDecode(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if scan.Ops != 20 {
		t.Fatalf("ScanDecode read %d rows, want 20", scan.Ops)
	}
}

func TestFindEventsDBWithoutOne(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "notes.db"), []byte("not sqlite"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := FindEventsDB(dir); err == nil {
		t.Fatal("FindEventsDB found a database where there is none")
	}
}

func TestFdatasync(t *testing.T) {
	dir := t.TempDir()
	res, err := Fdatasync(context.Background(), dir, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops < 16 || res.Rate() <= 0 {
		t.Fatalf("result %+v, want at least one round of 16 syncs", res)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
}
