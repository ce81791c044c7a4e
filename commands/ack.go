package commands

import (
	"context"
	"errors"
	"time"

	"github.com/ledgerq/ledgerq/domain"
)

// Ack acknowledges a leased message: it is done. A receipt whose lease
// expired or was replaced is domain.ErrLeaseMismatch; an unknown one
// domain.ErrReceiptNotFound.
func (a *App) Ack(ctx context.Context, cmd Ack) (AckResult, error) {
	return retry(func() (AckResult, error) {
		var id string
		h, _, err := a.decideOn(ctx, cmd.Queue, func(qs *queueState, now time.Time) ([]domain.Event, error) {
			ev, mid, err := qs.agg.Ack(cmd.Receipt, now)
			id = mid
			return ev, err
		})
		if err != nil {
			return AckResult{}, err
		}
		res, err := a.settle(h)
		if err != nil {
			return AckResult{}, err
		}
		return AckResult{ID: id, Position: res.LastPosition()}, nil
	})
}

// AckBatch acknowledges up to 100 receipts in one append; each receipt
// succeeds or fails on its own (its Code says why), but a failed append
// fails them all.
func (a *App) AckBatch(ctx context.Context, cmd AckBatch) (AckBatchResult, error) {
	if len(cmd.Receipts) == 0 {
		return AckBatchResult{}, domain.Invalid("receipts", "at least one receipt is required")
	}
	if len(cmd.Receipts) > domain.MaxBatchMessages {
		return AckBatchResult{}, domain.Invalid("receipts", "at most %d receipts per batch, got %d", domain.MaxBatchMessages, len(cmd.Receipts))
	}
	return retry(func() (AckBatchResult, error) {
		items := make([]AckItem, len(cmd.Receipts))
		h, _, err := a.decideOn(ctx, cmd.Queue, func(qs *queueState, now time.Time) ([]domain.Event, error) {
			var all []domain.Event
			for i, r := range cmd.Receipts {
				items[i] = AckItem{Receipt: r}
				ev, _, err := qs.agg.Ack(r, now)
				var de *domain.Error
				if errors.As(err, &de) {
					items[i].Code = de.Code
					continue
				}
				if err != nil {
					return nil, err
				}
				items[i].OK = true
				all = append(all, ev...)
			}
			return all, nil
		})
		if err != nil {
			return AckBatchResult{}, err
		}
		res, err := a.settle(h)
		if err != nil {
			return AckBatchResult{}, err
		}
		return AckBatchResult{Results: items, Position: a.position(res)}, nil
	})
}
