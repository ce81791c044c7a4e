package limits

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"
)

// RedisConfig describes one raw Redis Streams run.
type RedisConfig struct {
	// Client is the connection to use; the caller owns it.
	Client redis.UniversalClient
	// Stream is the key to use; it is deleted before and after. Default
	// "ledgerq-bench-limit-<ulid>".
	Stream string
	// Batch is entries per pipeline (XADD) and per XREADGROUP COUNT.
	// Default 100.
	Batch int
	// Duration bounds the adding half; the reading half reads everything
	// that was added (or stops when ctx ends). Default 3 s.
	Duration time.Duration
	// Payload is the entry's payload field. Default a MessagePublished
	// event with a BodyBytes body.
	Payload []byte
}

// RedisResult is the two halves of a Redis Streams run.
type RedisResult struct {
	// Add is XADD entries per second, pipelined Batch at a time by one
	// goroutine, as a relay publishing the log in order would.
	Add Result
	// Read is entries per second read with XREADGROUP COUNT Batch and
	// acknowledged with one XACK per batch, by one consumer.
	Read Result
}

// RedisStreams measures the bus ledgerq's read side rides on: XADD in
// pipelines of Batch entries for Duration, then XREADGROUP + XACK of all
// that was added.
func RedisStreams(ctx context.Context, cfg RedisConfig) (RedisResult, error) {
	if cfg.Client == nil {
		return RedisResult{}, errors.New("limits: RedisConfig.Client is nil")
	}
	if cfg.Stream == "" {
		cfg.Stream = "ledgerq-bench-limit-" + ulid.Make().String()
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 100
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 3 * time.Second
	}
	if cfg.Payload == nil {
		p, err := PublishedData("bench", ulid.Make().String(), Body(BodyBytes), time.Now())
		if err != nil {
			return RedisResult{}, err
		}
		cfg.Payload = p
	}
	rdb := cfg.Client
	if err := rdb.Del(ctx, cfg.Stream).Err(); err != nil {
		return RedisResult{}, fmt.Errorf("limits: redis: %w", err)
	}
	// Cleanup must run even when ctx is cancelled.
	defer rdb.Del(context.WithoutCancel(ctx), cfg.Stream)

	var res RedisResult
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	for time.Now().Before(deadline) {
		pipe := rdb.Pipeline()
		for i := 0; i < cfg.Batch; i++ {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: cfg.Stream, Values: []any{"payload", cfg.Payload}})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return res, fmt.Errorf("limits: XADD: %w", err)
		}
		res.Add.Ops += int64(cfg.Batch)
	}
	res.Add.Elapsed = time.Since(start)

	const group = "limit"
	if err := rdb.XGroupCreate(ctx, cfg.Stream, group, "0").Err(); err != nil {
		return res, fmt.Errorf("limits: XGROUP CREATE: %w", err)
	}
	start = time.Now()
	for res.Read.Ops < res.Add.Ops {
		streams, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: group, Consumer: "c1", Streams: []string{cfg.Stream, ">"},
			Count: int64(cfg.Batch), Block: -1, // never block: everything is already there
		}).Result()
		if errors.Is(err, redis.Nil) {
			break
		}
		if err != nil {
			return res, fmt.Errorf("limits: XREADGROUP: %w", err)
		}
		var ids []string
		for _, s := range streams {
			for _, m := range s.Messages {
				ids = append(ids, m.ID)
			}
		}
		if len(ids) == 0 {
			break
		}
		if err := rdb.XAck(ctx, cfg.Stream, group, ids...).Err(); err != nil {
			return res, fmt.Errorf("limits: XACK: %w", err)
		}
		res.Read.Ops += int64(len(ids))
	}
	res.Read.Elapsed = time.Since(start)
	return res, nil
}
