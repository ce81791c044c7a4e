package queries

import (
	"context"
	"fmt"
)

// GetMessage answers GET /v1/messages/{id}: the message, its state and every
// event about it. An unknown id is an error matching
// domain.ErrMessageNotFound.
func (s *Service) GetMessage(ctx context.Context, id string) (MessageDetail, error) {
	m, err := s.rm.Message(ctx, id, s.now())
	if err != nil {
		return MessageDetail{}, fmt.Errorf("get message %q: %w", id, err)
	}
	return m, nil
}
