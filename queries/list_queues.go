package queries

import (
	"context"
	"fmt"
)

// ListQueues answers GET /v1/queues: one page of queues with their stats.
func (s *Service) ListQueues(ctx context.Context, q ListQueues) (QueuePage, error) {
	limit, err := pageLimit(q.Limit)
	if err != nil {
		return QueuePage{}, err
	}
	after, err := decodeQueueCursor(q.Cursor)
	if err != nil {
		return QueuePage{}, err
	}
	// One extra row tells whether another page exists without a second query.
	queues, err := s.rm.Queues(ctx, QueueFilter{
		Prefix: q.Prefix, After: after, Limit: limit + 1, Allowed: q.Allowed, Now: s.now(),
	})
	if err != nil {
		return QueuePage{}, fmt.Errorf("list queues: %w", err)
	}
	page := QueuePage{Queues: queues}
	if len(queues) > limit {
		page.Queues = queues[:limit]
		page.NextCursor = encodeQueueCursor(page.Queues[limit-1].Name)
	}
	if page.Queues == nil {
		page.Queues = []Queue{}
	}
	return page, nil
}
