package limits

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ledgerq/ledgerq/tests/redistest"
)

func TestRedisStreams(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	res, err := RedisStreams(ctx, RedisConfig{Client: rdb, Stream: "limit-test", Batch: 50, Duration: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Add.Ops == 0 || res.Add.Ops%50 != 0 {
		t.Fatalf("added %d entries, want a positive multiple of the batch", res.Add.Ops)
	}
	if res.Read.Ops != res.Add.Ops {
		t.Fatalf("read %d of %d entries", res.Read.Ops, res.Add.Ops)
	}
	if n := rdb.Exists(ctx, "limit-test").Val(); n != 0 {
		t.Fatal("the stream was left behind")
	}
}

func TestRedisStreamsNeedsClient(t *testing.T) {
	if _, err := RedisStreams(context.Background(), RedisConfig{}); err == nil {
		t.Fatal("RedisStreams without a client succeeded")
	}
}
