package eventstore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sirupsen/logrus"

	"github.com/ledgerq/ledgerq/eventstore"
)

// FuzzAppendReadBack appends events whose every string comes from the
// fuzzer (SQL metacharacters, quotes, NUL bytes, invalid UTF-8, huge
// lengths) to a real SQLite store. The store must refuse with ErrInvalid or
// keep the event byte for byte: read back by position and by stream filter,
// hashed into an intact chain. Nothing a caller sends is ever SQL.
func FuzzAppendReadBack(f *testing.F) {
	log := logrus.New()
	log.SetOutput(io.Discard)
	store, err := eventstore.Open(filepath.Join(f.TempDir(), "events.db"), eventstore.Options{Logger: log})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = store.Close() })

	f.Add("queue-orders", "MessagePublished", 1, []byte(`{"body":"x"}`), "alice", "req-1")
	f.Add("queue-'; DROP TABLE events; --", "X' OR '1'='1", 2, []byte(`{"v":"'); DELETE FROM events; --"}`), "\" OR 1=1 --", "%_\\")
	f.Add("queue-\x00nul", "T\x00", 1, []byte(`"\u0000"`), "\x00", "")
	f.Add("queue-\xff", "T", 1, []byte(`{}`), "", "")
	f.Add("queue-x", "T", 0, []byte(`{}`), "", "")
	f.Add("queue-x", "T", 1, []byte(`{"a":`), "", "")
	f.Add("queue-x", "T", 1, []byte("\"\xff\xfe\""), "", "")
	f.Add("", "T", 1, []byte(`1`), "", "")

	f.Fuzz(func(t *testing.T, stream, typ string, schema int, data []byte, subject, requestID string) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		meta := eventstore.Metadata{Subject: subject, RequestID: requestID, CorrelationID: requestID}
		res, err := store.Append(ctx, eventstore.AppendRequest{
			Metadata: meta,
			Streams: []eventstore.StreamAppend{{StreamID: stream, ExpectedVersion: eventstore.AnyVersion,
				Events: []eventstore.NewEvent{{Type: typ, SchemaVersion: schema, Data: data}}}},
		})
		malformed := stream == "" || !utf8.ValidString(stream) || typ == "" || !utf8.ValidString(typ) || schema < 1 || !json.Valid(data) ||
			!utf8.ValidString(subject) || !utf8.ValidString(requestID)
		if err != nil {
			if !errors.Is(err, eventstore.ErrInvalid) {
				t.Fatalf("append refused with %v, want ErrInvalid or success", err)
			}
			if !malformed {
				t.Fatalf("a well-formed append was refused: %v", err)
			}
			return
		}
		if malformed {
			t.Fatalf("accepted a malformed append: stream %q type %q schema %d data %q", stream, typ, schema, data)
		}
		pos := res.LastPosition()
		got, err := store.ReadPositions(ctx, []int64{pos})
		if err != nil || len(got) != 1 {
			t.Fatalf("read back position %d: %d events, %v", pos, len(got), err)
		}
		e := got[0]
		if e.StreamID != stream || e.Type != typ || e.SchemaVersion != schema || !bytes.Equal(e.Data, data) {
			t.Fatalf("not stored verbatim:\nsent stream %q type %q v%d data %q\ngot  stream %q type %q v%d data %q",
				stream, typ, schema, data, e.StreamID, e.Type, e.SchemaVersion, e.Data)
		}
		// Metadata comes back exactly (the store refuses metadata that is
		// not UTF-8, which JSON could not keep), and HashEvent agrees with
		// the stored hash (testdata/fuzz/FuzzAppendReadBack/02dfcaa591fac1bb
		// found the mismatch when invalid bytes were accepted).
		if e.Metadata != meta {
			t.Fatalf("metadata %+v came back as %+v", meta, e.Metadata)
		}
		if h := eventstore.HashEvent(e); h != e.Hash {
			t.Fatalf("stored hash %s, recomputed %s", e.Hash, h)
		}
		// The stream filter is a bound parameter: it finds exactly this
		// stream's events, the new one last.
		var last eventstore.Event
		n := 0
		err = store.Scan(ctx, eventstore.Filter{Stream: stream, After: pos - 1}, func(ev eventstore.Event) error {
			if ev.StreamID != stream {
				return errors.New("scan by stream returned stream " + ev.StreamID)
			}
			last = ev
			n++
			return nil
		})
		if err != nil || n != 1 || last.Position != pos {
			t.Fatalf("scan of stream %q after %d: %d events, last %d, %v", stream, pos-1, n, last.Position, err)
		}
		rep, err := store.Verify(ctx, pos, pos)
		if err != nil || !rep.OK {
			t.Fatalf("verify position %d: %+v, %v", pos, rep, err)
		}
	})
}
