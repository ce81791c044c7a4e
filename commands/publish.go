package commands

import (
	"context"
	"time"

	"github.com/ledgerq/ledgerq/domain"
)

// Publish publishes one message. A dedup id seen on this queue within the
// last 5 minutes appends nothing and answers the first message's id with
// Duplicate set.
func (a *App) Publish(ctx context.Context, cmd Publish) (PublishResult, error) {
	return retry(func() (PublishResult, error) {
		rs, _, err := a.publish(ctx, cmd.Queue, []Message{cmd.Message}, false)
		if err != nil {
			return PublishResult{}, err
		}
		return rs[0], nil
	})
}

// PublishBatch publishes up to 100 messages in one append, all or nothing:
// an invalid entry fails the whole batch with an error whose field names
// its index ("messages[3].body").
func (a *App) PublishBatch(ctx context.Context, cmd PublishBatch) (BatchResult, error) {
	return retry(func() (BatchResult, error) {
		rs, pos, err := a.publish(ctx, cmd.Queue, cmd.Messages, true)
		if err != nil {
			return BatchResult{}, err
		}
		return BatchResult{Results: rs, Position: pos}, nil
	})
}

func (a *App) publish(ctx context.Context, queue string, msgs []Message, batch bool) ([]PublishResult, int64, error) {
	var outs []domain.PublishOutcome
	h, qs, err := a.decideOn(ctx, queue, func(qs *queueState, now time.Time) ([]domain.Event, error) {
		in := make([]domain.NewMessage, len(msgs))
		for i, m := range msgs {
			id, err := newID(now)
			if err != nil {
				return nil, err
			}
			in[i] = domain.NewMessage{
				ID: id, Body: m.Body, BodyEncoding: m.BodyEncoding, ContentType: m.ContentType,
				Headers: m.Headers, DelayMS: m.DelayMS, DedupID: m.DedupID,
			}
		}
		if batch {
			ev, out, err := qs.agg.PublishBatch(in, now)
			outs = out
			return ev, err
		}
		ev, out, err := qs.agg.Publish(in[0], now)
		outs = []domain.PublishOutcome{out}
		return ev, err
	})
	if err != nil {
		return nil, 0, err
	}
	var first int64
	if h != nil {
		first = h.spans[0].first
	}
	res, err := a.settle(h)
	if err != nil {
		return nil, 0, err
	}
	head := a.position(res)
	out := make([]PublishResult, len(outs))
	for i, o := range outs {
		r := PublishResult{ID: o.ID, Queue: qs.name, Duplicate: o.Duplicate, Position: head}
		if !o.Duplicate {
			if p, ok := positionIn(res, qs.name, first+int64(o.Event)); ok {
				r.Position = p
			}
		}
		out[i] = r
	}
	return out, head, nil
}
