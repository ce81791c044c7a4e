package commands

import (
	"testing"

	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/eventstore"
)

func TestPositionIn(t *testing.T) {
	a, b := domain.StreamID("a"), domain.StreamID("b")
	// Two streams in one append, as a dead-letter move writes them: a at
	// versions 7..9 (positions 100..102), then b at 3..4 (103..104).
	res := eventstore.AppendResult{Events: []eventstore.Event{
		{StreamID: a, Version: 7, Position: 100},
		{StreamID: a, Version: 8, Position: 101},
		{StreamID: a, Version: 9, Position: 102},
		{StreamID: b, Version: 3, Position: 103},
		{StreamID: b, Version: 4, Position: 104},
	}}
	for _, c := range []struct {
		queue string
		ver   int64
		pos   int64
		ok    bool
	}{
		{"a", 7, 100, true}, {"a", 9, 102, true}, {"b", 3, 103, true}, {"b", 4, 104, true},
		{"a", 6, 0, false}, {"a", 10, 0, false}, {"b", 5, 0, false}, {"c", 1, 0, false},
	} {
		if pos, ok := positionIn(res, c.queue, c.ver); pos != c.pos || ok != c.ok {
			t.Errorf("positionIn(%s, %d) = %d, %v; want %d, %v", c.queue, c.ver, pos, ok, c.pos, c.ok)
		}
	}
	// Interleaved streams are not what the store writes, but are still
	// answered right.
	odd := eventstore.AppendResult{Events: []eventstore.Event{
		{StreamID: a, Version: 1, Position: 1},
		{StreamID: b, Version: 1, Position: 2},
		{StreamID: a, Version: 2, Position: 3},
	}}
	if pos, ok := positionIn(odd, "a", 2); pos != 3 || !ok {
		t.Errorf("interleaved: positionIn(a, 2) = %d, %v; want 3, true", pos, ok)
	}
}
