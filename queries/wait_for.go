package queries

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// WaitFor blocks until the read side has applied position (read-your-writes)
// or timeout passes, then returns ErrConsistencyTimeout. A timeout of zero or
// less means DefaultWaitTimeout. When ctx itself ends first (the client went
// away), its error is returned instead.
func (s *Service) WaitFor(ctx context.Context, position int64, timeout time.Duration) error {
	if position <= s.waiter.AppliedPosition() {
		return nil
	}
	if timeout <= 0 {
		timeout = DefaultWaitTimeout
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := s.waiter.WaitForPosition(wctx, position)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("wait for position %d: %w", position, ctx.Err())
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: position %d not applied after %s (at %d)",
			ErrConsistencyTimeout, position, timeout, s.waiter.AppliedPosition())
	default:
		return fmt.Errorf("wait for position %d: %w", position, err)
	}
}
