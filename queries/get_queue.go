package queries

import (
	"context"
	"fmt"
)

// GetQueue answers GET /v1/queues/{queue}. An unknown queue is an error
// matching domain.ErrQueueNotFound.
func (s *Service) GetQueue(ctx context.Context, name string) (Queue, error) {
	q, err := s.rm.Queue(ctx, name, s.now())
	if err != nil {
		return Queue{}, fmt.Errorf("get queue %q: %w", name, err)
	}
	return q, nil
}
