package projections

import (
	"context"
	"sync"
)

// positionSignal publishes the applied position and wakes waiters on every
// change: each change closes the current channel and makes a new one, so a
// waiter sleeps on a channel instead of polling.
type positionSignal struct {
	mu      sync.Mutex
	pos     int64
	changed chan struct{}
}

func newPositionSignal(pos int64) *positionSignal {
	return &positionSignal{pos: pos, changed: make(chan struct{})}
}

func (s *positionSignal) set(pos int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if pos == s.pos {
		return
	}
	s.pos = pos
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *positionSignal) get() (int64, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pos, s.changed
}

func (s *positionSignal) wait(ctx context.Context, pos int64) error {
	for {
		cur, changed := s.get()
		if cur >= pos {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
