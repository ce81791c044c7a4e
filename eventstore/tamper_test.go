package eventstore_test

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/mattn/go-sqlite3" // the "sqlite3" driver for the tampering connection

	"github.com/ledgerq/ledgerq/eventstore"
)

// rawDB is a second, ordinary connection to the store's file: what someone
// with access to the data directory could do.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

func execAll(t *testing.T, db *sql.DB, stmts ...string) {
	t.Helper()
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// tamperLog builds an intact log of 20 events over three streams.
func tamperLog(t *testing.T) (*eventstore.Store, string, []eventstore.Event) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events.db")
	s := openStore(t, path)
	var log []eventstore.Event
	for i := range 20 {
		req := appendReq(fmt.Sprintf("queue-%d", i%3), eventstore.AnyVersion, newEvent("MessagePublished", fmt.Sprintf(`{"i":%d}`, i)))
		req.Metadata = eventstore.Metadata{Subject: "alice", RequestID: fmt.Sprintf("req-%d", i)}
		log = append(log, mustAppend(t, s, req).Events...)
	}
	if rep, err := s.Verify(testCtx(t), 0, 0); err != nil || !rep.OK {
		t.Fatalf("Verify before tampering: %+v, %v", rep, err)
	}
	return s, path, log
}

func TestVerifyDetectsTampering(t *testing.T) {
	cases := []struct {
		name   string
		tamper func(t *testing.T, db *sql.DB, log []eventstore.Event)
		// firstBad for Store.Verify and VerifyFile; reason is a fragment of
		// the Store.Verify reason.
		storeBad, fileBad int64
		reason            string
	}{
		{
			name: "payload edited",
			tamper: func(t *testing.T, db *sql.DB, _ []eventstore.Event) {
				execAll(t, db, `UPDATE events SET data = '{"i":999}' WHERE position = 7`)
			},
			storeBad: 7, fileBad: 7, reason: "does not match its contents",
		},
		{
			name: "metadata field edited",
			tamper: func(t *testing.T, db *sql.DB, _ []eventstore.Event) {
				execAll(t, db, `UPDATE events SET metadata = json_set(metadata, '$.subject', 'mallory') WHERE position = 11`)
			},
			storeBad: 11, fileBad: 11, reason: "does not match its contents",
		},
		{
			name: "event deleted",
			tamper: func(t *testing.T, db *sql.DB, _ []eventstore.Event) {
				execAll(t, db, `DELETE FROM events WHERE position = 5`)
			},
			storeBad: 5, fileBad: 5, reason: "event 5 is missing",
		},
		{
			// The strongest forger: the inserted event's own hash is
			// computed correctly and chained to event 8, and later events
			// are renumbered to make room. Event 9 itself is then
			// indistinguishable from a real one; the old event 9, now at
			// 10, names the break.
			name: "event inserted",
			tamper: func(t *testing.T, db *sql.DB, log []eventstore.Event) {
				forged := eventstore.Event{
					Position: 9, StreamID: "queue-forged", Version: 1, Type: "MessagePublished", SchemaVersion: 1,
					Data: json.RawMessage(`{"i":-1}`), Metadata: eventstore.Metadata{Subject: "mallory"},
					RecordedAt: log[7].RecordedAt, PrevHash: log[7].Hash,
				}
				forged.Hash = eventstore.HashEvent(forged)
				meta, _ := json.Marshal(forged.Metadata)
				execAll(t, db,
					`UPDATE events SET position = position + 1000 WHERE position >= 9`,
					`UPDATE events SET position = position - 999 WHERE position >= 1000`)
				if _, err := db.Exec(`INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
					forged.Position, forged.StreamID, forged.Version, forged.Type, forged.SchemaVersion,
					string(forged.Data), string(meta), forged.RecordedAt.UnixMilli(), forged.PrevHash, forged.Hash); err != nil {
					t.Fatal(err)
				}
			},
			storeBad: 10, fileBad: 10, reason: "prev_hash of event 10",
		},
		{
			name: "two events swapped",
			tamper: func(t *testing.T, db *sql.DB, _ []eventstore.Event) {
				execAll(t, db,
					`UPDATE events SET position = -3 WHERE position = 3`,
					`UPDATE events SET position = 3 WHERE position = 8`,
					`UPDATE events SET position = 8 WHERE position = -3`)
			},
			storeBad: 3, fileBad: 3, reason: "prev_hash of event 3",
		},
		{
			// Re-hashing the edited event moves the break to the next link.
			name: "payload edited and re-hashed",
			tamper: func(t *testing.T, db *sql.DB, log []eventstore.Event) {
				e := log[6]
				e.Data = json.RawMessage(`{"i":999}`)
				if _, err := db.Exec(`UPDATE events SET data = ?, hash = ? WHERE position = 7`, string(e.Data), eventstore.HashEvent(e)); err != nil {
					t.Fatal(err)
				}
			},
			storeBad: 8, fileBad: 8, reason: "prev_hash of event 8",
		},
		{
			// Truncation leaves a valid, shorter chain: only the store's
			// committed head (or a head hash recorded elsewhere) reveals it.
			name: "last event deleted",
			tamper: func(t *testing.T, db *sql.DB, _ []eventstore.Event) {
				execAll(t, db, `DELETE FROM events WHERE position = 20`)
			},
			storeBad: 20, fileBad: 0, reason: "the log ends at 19",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, path, log := tamperLog(t)
			db := rawDB(t, path)
			c.tamper(t, db, log)
			var lastGoodHash string
			if err := db.QueryRow(`SELECT hash FROM events WHERE position = ?`, c.storeBad-1).Scan(&lastGoodHash); err != nil {
				t.Fatal(err)
			}

			rep, err := s.Verify(testCtx(t), 0, 0)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if rep.OK || rep.FirstBadPosition != c.storeBad || !strings.Contains(rep.Reason, c.reason) {
				t.Errorf("Verify = %+v, want first bad %d (%q)", rep, c.storeBad, c.reason)
			}
			if rep.Checked != c.storeBad-1 || rep.HeadPosition != c.storeBad-1 || rep.HeadHash != lastGoodHash {
				t.Errorf("Verify = %+v: want %d events checked up to the last good one", rep, c.storeBad-1)
			}

			frep, err := eventstore.VerifyFile(testCtx(t), path, 0, 0)
			if err != nil {
				t.Fatalf("VerifyFile: %v", err)
			}
			if c.fileBad == 0 {
				if !frep.OK || frep.HeadPosition != 19 || frep.HeadHash != log[18].Hash {
					t.Errorf("VerifyFile of a truncated log = %+v: want an intact chain ending at 19", frep)
				}
				return
			}
			if frep.OK || frep.FirstBadPosition != c.fileBad {
				t.Errorf("VerifyFile = %+v, want first bad %d", frep, c.fileBad)
			}
			// A range that ends before the damage is intact.
			if rep, err := eventstore.VerifyFile(testCtx(t), path, 1, c.fileBad-1); err != nil || !rep.OK {
				t.Errorf("VerifyFile(1, %d) = %+v, %v; want OK", c.fileBad-1, rep, err)
			}
		})
	}
}

func TestVerifyRanges(t *testing.T) {
	s, path, log := tamperLog(t)
	rep, err := s.Verify(testCtx(t), 25, 0)
	if err != nil || !rep.OK || rep.Checked != 0 || rep.HeadPosition != 20 {
		t.Errorf("Verify past the head = %+v, %v", rep, err)
	}
	rep, err = eventstore.VerifyFile(testCtx(t), path, 20, 0)
	if err != nil || !rep.OK || rep.Checked != 1 || rep.HeadHash != log[19].Hash {
		t.Errorf("VerifyFile(20, 0) = %+v, %v", rep, err)
	}
	execAll(t, rawDB(t, path), `DELETE FROM events WHERE position = 9`)
	rep, err = s.Verify(testCtx(t), 10, 15)
	if err != nil || rep.OK || rep.FirstBadPosition != 9 || !strings.Contains(rep.Reason, "anchor") {
		t.Errorf("Verify(10, 15) with its anchor deleted = %+v, %v", rep, err)
	}
	if _, err := eventstore.VerifyFile(testCtx(t), filepath.Join(t.TempDir(), "missing.db"), 0, 0); err == nil {
		t.Error("VerifyFile of a missing file succeeded")
	}
}
