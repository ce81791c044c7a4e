package commands

import (
	"context"
	"time"

	"github.com/ledgerq/ledgerq/domain"
)

// PurgeQueue drops a queue's ready and delayed messages; leased ones stay
// until they are acked or their lease expires.
func (a *App) PurgeQueue(ctx context.Context, cmd PurgeQueue) (PurgeResult, error) {
	return retry(func() (PurgeResult, error) {
		var purged int
		h, _, err := a.decideOn(ctx, cmd.Name, func(qs *queueState, now time.Time) ([]domain.Event, error) {
			ev, n, err := qs.agg.Purge(now)
			purged = n
			return ev, err
		})
		if err != nil {
			return PurgeResult{}, err
		}
		res, err := a.settle(h)
		if err != nil {
			return PurgeResult{}, err
		}
		return PurgeResult{Purged: purged, Position: res.LastPosition()}, nil
	})
}
