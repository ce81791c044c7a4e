package walbuf_test

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/ledgerq/ledgerq/eventstore/walbuf"
)

// openWriter opens one connection through the VFS, as the log's and the read
// model's writers do (WAL, synchronous=NORMAL), with a page cache of
// cachePages pages: a small cache makes SQLite spill a transaction's pages
// into the WAL before its commit, and rewrite their checksums at the commit.
func openWriter(t testing.TB, path string, cachePages int) *sql.DB {
	t.Helper()
	if err := walbuf.Register(); err != nil {
		t.Fatal(err)
	}
	dsn := "file:" + path + "?vfs=" + walbuf.Name + "&_journal_mode=WAL&_synchronous=NORMAL&_txlock=immediate&_cache_size=" + strconv.Itoa(cachePages)
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, k TEXT NOT NULL, body TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE INDEX IF NOT EXISTS t_k ON t (k)`); err != nil {
		t.Fatal(err)
	}
	return db
}

// openPlain opens the same file through SQLite's default VFS, as the
// server's readers, checkpointers and `ledgerq audit verify` do.
func openPlain(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// commit inserts rows rows of size bytes in one transaction; the keys
// (random-looking, so the index pages they land on are spread out) and the
// bodies derive from the ids.
func commit(db *sql.DB, first, rows, size int) error {
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	for id := first; id < first+rows; id++ {
		if _, err := tx.Exec(`INSERT INTO t (id, k, body) VALUES (?, ?, ?)`, id, key(id), body(id, size)); err != nil {
			tx.Rollback()
			return err
		}
	}
	return tx.Commit()
}

func key(id int) string { return strconv.FormatUint(uint64(id)*0x9E3779B97F4A7C15, 36) }

func body(id, size int) string {
	s := strconv.Itoa(id) + ":"
	return s + strings.Repeat(string(rune('a'+id%26)), max(0, size-len(s)))
}

// check reads every row back through db and compares it with what was
// written, and runs SQLite's integrity check.
func check(t testing.TB, db *sql.DB, wantRows, size int) {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM t`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != wantRows {
		t.Fatalf("%d rows, want %d", n, wantRows)
	}
	rows, err := db.Query(`SELECT id, k, body FROM t ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int
		var k, b string
		if err := rows.Scan(&id, &k, &b); err != nil {
			t.Fatal(err)
		}
		if k != key(id) || b != body(id, size) {
			t.Fatalf("row %d reads back different from what was written", id)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var ic string
	if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&ic); err != nil || ic != "ok" {
		t.Fatalf("integrity_check: %q, %v", ic, err)
	}
}

// Commits of every size, from one page to many times the buffer and the
// base VFS's largest write, read back whole from another connection after
// each commit and after the file is closed and opened again.
func TestCommitsReadBackWhole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.db")
	w := openWriter(t, path, 2000)
	r := openPlain(t, path)
	const size = 300
	id := 1
	for _, rows := range []int{1, 3, 40, 600, 5000, 1, 2, 12000, 7} {
		if err := commit(w, id, rows, size); err != nil {
			t.Fatalf("commit of %d rows: %v", rows, err)
		}
		id += rows
		check(t, r, id-1, size)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	check(t, openPlain(t, path), id-1, size)
}

// The point of the VFS: a commit's frames reach the file in a few large
// writes instead of two writes per frame.
func TestFramesAreWrittenTogether(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.db")
	w := openWriter(t, path, 2000)
	before := walbuf.ReadStats()
	const commits = 50
	for i := range commits {
		if err := commit(w, 1+i*40, 40, 300); err != nil {
			t.Fatal(err)
		}
	}
	got := walbuf.ReadStats()
	held, flushes, direct := got.Held-before.Held, got.Flushes-before.Flushes, got.Direct-before.Direct
	t.Logf("%d commits: %d writes held, %d flushes (%d bytes), %d written directly", commits, held, flushes, got.FlushedBytes-before.FlushedBytes, direct)
	// 40 rows of 300 bytes fill ~3 table pages plus index pages: at least
	// 4 frames, 8 writes, per commit, all of which are held.
	if held < 8*commits {
		t.Errorf("%d writes held over %d commits, want at least %d", held, commits, 8*commits)
	}
	if flushes > commits+5 {
		t.Errorf("%d flushes for %d commits, want about one per commit", flushes, commits)
	}
	if direct > 5 {
		t.Errorf("%d writes went straight through, want only the WAL header's", direct)
	}
}

// Transactions larger than the page cache: SQLite writes (spills) their
// pages into the WAL before the commit, reads them back, overwrites some in
// place and rewrites their checksums at the commit; one is rolled back
// after its spill. A reader polls beside it the whole time.
func TestSpilledTransactions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.db")
	w := openWriter(t, path, 20)
	r := openPlain(t, path)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var readErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		last := 0
		for ctx.Err() == nil {
			var n int
			if err := r.QueryRow(`SELECT count(*) FROM t`).Scan(&n); err != nil {
				readErr = err
				return
			}
			if n < last {
				readErr = fmt.Errorf("a reader saw %d rows after %d", n, last)
				return
			}
			last = n
		}
	}()
	const size = 500
	id := 1
	for round := range 6 {
		if err := commit(w, id, 400, size); err != nil {
			t.Fatal(err)
		}
		id += 400
		// Rewrite rows all over the table in one transaction, so pages that
		// were spilled are changed again before the commit.
		tx, err := w.Begin()
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i < id; i += 3 {
			if _, err := tx.Exec(`UPDATE t SET body = ? WHERE id = ?`, body(i, size), i); err != nil {
				t.Fatal(err)
			}
		}
		if round == 3 {
			if _, err := tx.Exec(`INSERT INTO t (id, k, body) SELECT id + 1000000, k || 'x', body FROM t`); err != nil {
				t.Fatal(err)
			}
			if err := tx.Rollback(); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	wg.Wait()
	if readErr != nil {
		t.Fatal(readErr)
	}
	check(t, r, id-1, size)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	check(t, openPlain(t, path), id-1, size)
}

// What a writer process killed with SIGKILL leaves behind: every transaction
// whose COMMIT had returned is in the file, readable and intact, whatever
// the VFS was holding at that moment. (The commit's frames are handed to
// the kernel before the COMMIT returns; the server's syncer then
// fdatasyncs them.)
func TestKilledWriterLosesNoCommit(t *testing.T) {
	if path := os.Getenv("WALBUF_CHILD_DB"); path != "" {
		childWriter(t, path)
		return
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		path := filepath.Join(t.TempDir(), "a.db")
		cmd := exec.Command(exe, "-test.run=^TestKilledWriterLosesNoCommit$")
		killAt := 31 + 44*round // after an insert, a rewrite, an insert
		cmd.Env = append(os.Environ(), "WALBUF_CHILD_DB="+path, "WALBUF_CHILD_STOP="+strconv.Itoa(killAt))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill it right after a COMMIT returned, at a different one each round.
		sc := bufio.NewScanner(out)
		committed := 0
		for sc.Scan() {
			if n, err := strconv.Atoi(strings.TrimPrefix(sc.Text(), "committed ")); err == nil {
				committed = n
			}
			if committed >= killAt {
				break
			}
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		if committed < killAt {
			t.Fatalf("the writer stopped after %d commits, before it was killed", committed)
		}
		db := openPlain(t, path)
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM t`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if want := (committed + 1) / 2 * childRows; n != want {
			t.Fatalf("round %d: %d rows after the kill, but the %d commits that had returned wrote %d", round, n, committed, want)
		}
		check(t, db, n, childSize)
		t.Logf("round %d: killed after %d commits had returned; %d rows found", round, committed, n)
	}
}

const (
	childRows = 150
	childSize = 400
)

// childWriter commits until it has made WALBUF_CHILD_STOP commits, telling
// the parent after each COMMIT has returned, then waits to be killed right
// there. Its small page cache makes transactions spill, and every other one
// rewrites rows all over the table, so that spilled pages are changed again
// and their checksums rewritten at the commit.
func childWriter(t *testing.T, path string) {
	stop, err := strconv.Atoi(os.Getenv("WALBUF_CHILD_STOP"))
	if err != nil {
		t.Fatal(err)
	}
	w := openWriter(t, path, 30)
	out := bufio.NewWriter(os.Stdout)
	for i := 0; i < stop; i++ {
		if i%2 == 0 {
			err = commit(w, 1+(i/2)*childRows, childRows, childSize)
		} else {
			err = rewrite(w, (i/2+1)*childRows)
		}
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(out, "committed %d\n", i+1)
		out.Flush()
	}
	time.Sleep(time.Minute)
}

// rewrite updates every third of the first n rows in one transaction.
func rewrite(db *sql.DB, n int) error {
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	for i := 1; i <= n; i += 3 {
		if _, err := tx.Exec(`UPDATE t SET body = ? WHERE id = ?`, body(i, childSize), i); err != nil {
			tx.Rollback()
			return err
		}
	}
	return tx.Commit()
}
