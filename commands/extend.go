package commands

import (
	"context"
	"time"

	"github.com/ledgerq/ledgerq/domain"
)

// Extend moves a lease's deadline to now + VisibilityTimeoutMS.
func (a *App) Extend(ctx context.Context, cmd Extend) (ExtendResult, error) {
	return retry(func() (ExtendResult, error) {
		var out ExtendResult
		h, _, err := a.decideOn(ctx, cmd.Queue, func(qs *queueState, now time.Time) ([]domain.Event, error) {
			ev, id, deadline, err := qs.agg.Extend(cmd.Receipt, cmd.VisibilityTimeoutMS, now)
			out.ID, out.LeaseExpiresAt = id, deadline
			return ev, err
		})
		if err != nil {
			return ExtendResult{}, err
		}
		res, err := a.settle(h)
		if err != nil {
			return ExtendResult{}, err
		}
		out.Position = res.LastPosition()
		return out, nil
	})
}
