package queries

import (
	"context"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ledgerq/ledgerq/domain"
)

// Fuzz targets of the opaque cursors: a cursor is client input, so any
// string must be either refused as invalid_argument on "cursor" or decoded
// to a key the read model can take as is.

// fzInvalidCursor fails t unless err is the invalid-cursor error.
func fzInvalidCursor(t *testing.T, cursor string, err error) {
	t.Helper()
	var de *domain.Error
	if !errors.As(err, &de) || de.Kind != domain.KindInvalid || de.Field != "cursor" {
		t.Fatalf("cursor %q: error %v, want invalid_argument on field cursor", cursor, err)
	}
}

// FuzzQueueCursor: a queue cursor decodes to a UTF-8 name that encodes
// back to a cursor naming the same name, and is never taken for a message
// cursor (the kind tag keeps them apart).
func FuzzQueueCursor(f *testing.F) {
	for _, s := range []string{"", encodeQueueCursor("orders"), encodeQueueCursor("'; DROP TABLE queues; --"),
		encodeMessageCursor(42), "cTE6", "!!!", base64.RawURLEncoding.EncodeToString([]byte("q1:\xff")), "cTE6b3JkZXJz=="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, cursor string) {
		after, err := decodeQueueCursor(cursor)
		if err != nil {
			fzInvalidCursor(t, cursor, err)
			return
		}
		if cursor == "" {
			if after != "" {
				t.Fatalf("the empty cursor decoded to %q", after)
			}
			return
		}
		if after == "" || !utf8.ValidString(after) {
			t.Fatalf("cursor %q decoded to %q: want a non-empty UTF-8 key", cursor, after)
		}
		again, err := decodeQueueCursor(encodeQueueCursor(after))
		if err != nil || again != after {
			t.Fatalf("key %q → cursor → %q, %v", after, again, err)
		}
		if _, err := decodeMessageCursor(cursor); err == nil {
			t.Fatalf("queue cursor %q was accepted as a message cursor", cursor)
		}
	})
}

// FuzzMessageCursor: a message cursor decodes to a positive position that
// encodes back to itself, and is never taken for a queue cursor.
func FuzzMessageCursor(f *testing.F) {
	for _, s := range []string{"", encodeMessageCursor(1), encodeMessageCursor(1 << 62), encodeQueueCursor("7"),
		base64.RawURLEncoding.EncodeToString([]byte("m1:-5")), base64.RawURLEncoding.EncodeToString([]byte("m1:0x10")),
		base64.RawURLEncoding.EncodeToString([]byte("m1:99999999999999999999")), base64.RawURLEncoding.EncodeToString([]byte("m1:+7"))} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, cursor string) {
		pos, err := decodeMessageCursor(cursor)
		if err != nil {
			fzInvalidCursor(t, cursor, err)
			return
		}
		if cursor == "" {
			if pos != 0 {
				t.Fatalf("the empty cursor decoded to %d", pos)
			}
			return
		}
		if pos <= 0 {
			t.Fatalf("cursor %q decoded to position %d", cursor, pos)
		}
		if again, err := decodeMessageCursor(encodeMessageCursor(pos)); err != nil || again != pos {
			t.Fatalf("position %d → cursor → %d, %v", pos, again, err)
		}
		if _, err := decodeQueueCursor(cursor); err == nil {
			t.Fatalf("message cursor %q was accepted as a queue cursor", cursor)
		}
	})
}

// fzQueues is a read model holding queue names only, filtering as the
// contract of ReadModel.Queues says.
type fzQueues struct{ names []string }

func (m fzQueues) Queues(_ context.Context, f QueueFilter) ([]Queue, error) {
	var out []Queue
	for _, n := range m.names {
		if strings.HasPrefix(n, f.Prefix) && n > f.After && (f.Allowed == nil || f.Allowed(n)) && len(out) < f.Limit {
			out = append(out, Queue{Name: n})
		}
	}
	return out, nil
}

func (fzQueues) Queue(context.Context, string, time.Time) (Queue, error) {
	return Queue{}, domain.ErrQueueNotFound
}

func (fzQueues) Messages(context.Context, MessageFilter) ([]ListedMessage, error) { return nil, nil }

func (fzQueues) Message(context.Context, string, time.Time) (MessageDetail, error) {
	return MessageDetail{}, domain.ErrMessageNotFound
}

type fzWaiter struct{}

func (fzWaiter) AppliedPosition() int64                       { return 0 }
func (fzWaiter) WaitForPosition(context.Context, int64) error { return nil }

// FuzzListQueuesPaging: following next_cursor from the first page lists
// every matching queue exactly once, in order, whatever the names, prefix
// and page size; a page size outside 1…1000 is refused.
func FuzzListQueuesPaging(f *testing.F) {
	f.Add("orders,orders.eu,payments,a,b", "orders", 1)
	f.Add("x,x.y,x.y.z,\u00e9t\u00e9", "", 2)
	f.Add("q1:,m1:,%,_", "%", 1)
	f.Add("a", "", 0)
	f.Add("a", "", 1001)
	f.Fuzz(func(t *testing.T, csv, prefix string, limit int) {
		var names []string
		for _, n := range strings.Split(csv, ",") {
			if n != "" && utf8.ValidString(n) {
				names = append(names, n)
			}
		}
		slices.Sort(names)
		names = slices.Compact(names)
		svc := New(fzQueues{names: names}, fzWaiter{})
		var want []string
		for _, n := range names {
			if strings.HasPrefix(n, prefix) {
				want = append(want, n)
			}
		}
		var got []string
		cursor := ""
		for pages := 0; ; pages++ {
			page, err := svc.ListQueues(context.Background(), ListQueues{Prefix: prefix, Limit: limit, Cursor: cursor})
			if limit < 0 || limit > MaxLimit {
				var de *domain.Error
				if !errors.As(err, &de) || de.Field != "limit" {
					t.Fatalf("limit %d: error %v, want invalid limit", limit, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("page %d (cursor %q): %v", pages, cursor, err)
			}
			for _, q := range page.Queues {
				got = append(got, q.Name)
			}
			if page.NextCursor == "" {
				break
			}
			if pages > len(names)+1 {
				t.Fatalf("paging does not end: %d pages for %d names", pages, len(names))
			}
			cursor = page.NextCursor
		}
		if !slices.Equal(got, want) {
			t.Fatalf("prefix %q limit %d: paged %q, want %q", prefix, limit, got, want)
		}
	})
}
