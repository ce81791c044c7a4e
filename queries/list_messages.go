package queries

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/ledgerq/ledgerq/domain"
)

// ListMessages answers GET /v1/queues/{queue}/messages: one page of a
// queue's messages in publish order, optionally in one state. A state
// outside MessageStates is invalid_argument; an unknown queue is an error
// matching domain.ErrQueueNotFound.
func (s *Service) ListMessages(ctx context.Context, q ListMessages) (MessagePage, error) {
	if q.State != "" && !slices.Contains(MessageStates, q.State) {
		return MessagePage{}, domain.Invalid("state", "must be one of %s", strings.Join(MessageStates, ", "))
	}
	limit, err := pageLimit(q.Limit)
	if err != nil {
		return MessagePage{}, err
	}
	after, err := decodeMessageCursor(q.Cursor)
	if err != nil {
		return MessagePage{}, err
	}
	rows, err := s.rm.Messages(ctx, MessageFilter{
		Queue: q.Queue, State: q.State, AfterPosition: after, Limit: limit + 1,
		IncludeBody: q.IncludeBody, Now: s.now(),
	})
	if err != nil {
		return MessagePage{}, fmt.Errorf("list messages of %q: %w", q.Queue, err)
	}
	page := MessagePage{Messages: make([]MessageSummary, 0, min(len(rows), limit))}
	for i, r := range rows {
		if i == limit {
			page.NextCursor = encodeMessageCursor(rows[limit-1].Position)
			break
		}
		page.Messages = append(page.Messages, r.MessageSummary)
	}
	return page, nil
}
