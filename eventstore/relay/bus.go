package relay

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/redis/go-redis/v9"

	"github.com/ledgerq/ledgerq/eventstore"
)

// Topic is the bus topic (the Redis stream key) that carries event packs.
const Topic = "ledgerq.events"

// relayMarkKey holds the last position the relay published to Topic. It is
// written after each pack, so it and the stream survive or vanish together
// when Redis restarts: a mark below the relay's next pack means Redis lost
// entries (see Relay).
const relayMarkKey = Topic + ":relayed"

// Errors of the bus.
var (
	// ErrInvalidConfig: a BusConfig the bus cannot use.
	ErrInvalidConfig = errors.New("relay: invalid config")
	// ErrBusClosed: the bus was closed.
	ErrBusClosed = errors.New("relay: bus closed")
	// ErrNotSupported: the in-process bus keeps no history to read.
	ErrNotSupported = errors.New("relay: not supported by the in-process bus")
	// ErrTrimmed: positions asked for are no longer (or were never) in the
	// Redis stream; read them from the event store.
	ErrTrimmed = errors.New("relay: positions not in the stream")
)

// BusConfig configures a Bus.
type BusConfig struct {
	// RedisURL selects Redis Streams ("redis://host:port/db"); "" selects
	// the in-process bus.
	RedisURL string
	// Logger receives the bus's and watermill's logs. Default: none.
	Logger watermill.LoggerAdapter
	// ConsumerName is this node's consumer name in every Redis consumer
	// group. It must be stable across restarts so a restarted node finds
	// its pending entries. Default: the host name.
	ConsumerName string
	// MaxLen trims the stream to about this many entries (packs);
	// 0 keeps everything. WARNING: entries a lagging group has not read
	// yet are trimmed too, and query nodes can only rebuild from what the
	// stream retains.
	MaxLen int64
	// MaxIdleTime is how long an entry stays pending with a consumer that
	// does not acknowledge it before another consumer of the group may
	// claim it. Default 60s.
	MaxIdleTime time.Duration
	// NackResendSleep is the wait before a nacked message is delivered
	// again, so a failing handler does not spin. Default 500ms.
	NackResendSleep time.Duration
}

func (c *BusConfig) setDefaults() {
	if c.Logger == nil {
		c.Logger = watermill.NopLogger{}
	}
	if c.ConsumerName == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "ledgerq"
		}
		c.ConsumerName = host
	}
	if c.MaxIdleTime == 0 {
		c.MaxIdleTime = 60 * time.Second
	}
	if c.NackResendSleep == 0 {
		c.NackResendSleep = 500 * time.Millisecond
	}
}

// Bus carries event packs from the relay to the projections: over Redis
// Streams (one consumer group per projection, so every group sees every
// pack) or, without Redis, over an in-process channel.
type Bus struct {
	cfg    BusConfig
	logger watermill.LoggerAdapter
	ctx    context.Context
	cancel context.CancelFunc

	// Redis.
	opts      *redis.Options
	client    *redis.Client // health checks, the relay mark, ReadRange
	redisPub  *redisstream.Publisher
	publisher message.Publisher

	// In-process.
	channel *gochannel.GoChannel
	subsMu  sync.Mutex
	subs    map[string]int // live subscriptions per topic
	subsUp  chan struct{}  // closed and replaced whenever subs changes

	closeOnce sync.Once
	wg        sync.WaitGroup
}

// NewBus builds the bus. It does not need Redis to be up: publishing and
// subscribing retry until it is, and Healthy reports it. ctx bounds the
// life of every subscription (as does Close).
func NewBus(ctx context.Context, cfg BusConfig) (*Bus, error) {
	cfg.setDefaults()
	if cfg.MaxLen < 0 || cfg.MaxIdleTime < 0 || cfg.NackResendSleep < 0 {
		return nil, fmt.Errorf("%w: MaxLen, MaxIdleTime and NackResendSleep must not be negative", ErrInvalidConfig)
	}
	b := &Bus{cfg: cfg, logger: cfg.Logger, subs: map[string]int{}, subsUp: make(chan struct{})}
	b.ctx, b.cancel = context.WithCancel(ctx)
	if cfg.RedisURL == "" {
		// Publish waits until every subscriber acked: the relay goes at the
		// pace of the slowest projection, in order, and its offset only
		// moves past what all of them have.
		b.channel = gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, cfg.Logger)
		b.publisher = inprocPublisher{b}
		return b, nil
	}
	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		b.cancel()
		return nil, fmt.Errorf("%w: redis url: %w", ErrInvalidConfig, err)
	}
	b.opts = opts
	b.client = b.newClient()
	// redisstream's Close closes its client: the publisher gets its own.
	b.redisPub, err = redisstream.NewPublisher(redisstream.PublisherConfig{
		Client:        b.newClient(),
		DefaultMaxlen: cfg.MaxLen,
	}, cfg.Logger)
	if err != nil {
		b.cancel()
		_ = b.client.Close()
		return nil, fmt.Errorf("relay: redis publisher: %w", err)
	}
	b.publisher = sharedPublisher{b.redisPub}
	pingCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := b.client.Ping(pingCtx).Err(); err != nil {
		b.logger.Error("Redis is not reachable yet; the relay and subscribers will retry", err, watermill.LogFields{"addr": opts.Addr})
	}
	return b, nil
}

func (b *Bus) newClient() *redis.Client {
	o := *b.opts
	return redis.NewClient(&o)
}

// IsRedis reports whether the bus runs over Redis.
func (b *Bus) IsRedis() bool { return b.opts != nil }

// Publisher publishes packs to the bus. It is the bus's own: its Close does
// nothing, Bus.Close closes it. On the in-process bus a Publish waits until
// at least one subscription exists (or the message's context ends), then
// until every subscriber acked.
func (b *Bus) Publisher() message.Publisher { return b.publisher }

// Subscriber returns a new subscriber in consumer group group. Over Redis
// each group receives every pack once (a projection is a group; a group's
// consumers share the work), the group starts at the oldest retained entry,
// and a subscription survives Redis restarts: it subscribes again, creating
// the group anew, when Redis lost it. In-process, every subscription receives
// every pack and group only names it.
func (b *Bus) Subscriber(group string) (message.Subscriber, error) {
	if strings.TrimSpace(group) == "" {
		return nil, fmt.Errorf("%w: empty consumer group", ErrInvalidConfig)
	}
	if b.ctx.Err() != nil {
		return nil, ErrBusClosed
	}
	s := &busSubscriber{bus: b, group: group}
	s.ctx, s.cancel = context.WithCancel(b.ctx)
	return s, nil
}

// Healthy pings Redis; the in-process bus is always healthy.
func (b *Bus) Healthy(ctx context.Context) error {
	if b.ctx.Err() != nil {
		return ErrBusClosed
	}
	if !b.IsRedis() {
		return nil
	}
	if err := b.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("relay: redis ping: %w", err)
	}
	return nil
}

// Close ends every subscription and closes the publisher and the Redis
// clients.
func (b *Bus) Close() error {
	var err error
	b.closeOnce.Do(func() {
		b.cancel()
		b.subsMu.Lock()
		close(b.subsUp)
		b.subsUp = make(chan struct{})
		b.subsMu.Unlock()
		b.wg.Wait()
		if b.channel != nil {
			err = b.channel.Close()
		}
		if b.redisPub != nil {
			err = errors.Join(err, b.redisPub.Close(), b.client.Close())
		}
	})
	return err
}

// relayMark returns the last position the relay recorded in Redis, and
// whether there was one. The in-process bus keeps nothing to lose: ok is
// reported without a mark there.
func (b *Bus) relayMark(ctx context.Context) (int64, bool, error) {
	v, err := b.client.Get(ctx, relayMarkKey).Result()
	if errors.Is(err, redis.Nil) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("relay: read mark: %w", err)
	}
	pos, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("relay: mark %q: %w", v, err)
	}
	return pos, true, nil
}

func (b *Bus) setRelayMark(ctx context.Context, pos int64) error {
	if err := b.client.Set(ctx, relayMarkKey, pos, 0).Err(); err != nil {
		return fmt.Errorf("relay: write mark: %w", err)
	}
	return nil
}

// ReadRange returns the events after position after that the Redis stream
// still holds, in position order without duplicates, at most limit of them
// (limit <= 0: all). A projection on a query node uses it to fill a gap.
// It scans the stream backwards from its newest entry, so its cost grows
// with how far behind after is. If the stream no longer holds position
// after+1 (trimmed, or lost in a Redis restart the relay has not repaired
// yet), or holds a hole, it returns an error wrapping ErrTrimmed. The
// in-process bus returns ErrNotSupported: its consumers read the store.
func (b *Bus) ReadRange(ctx context.Context, after int64, limit int) ([]eventstore.Event, error) {
	if !b.IsRedis() {
		return nil, ErrNotSupported
	}
	var packs []*message.Message // newest first
	end := "+"
	for done := false; !done; {
		entries, err := b.client.XRevRangeN(ctx, Topic, end, "-", 32).Result()
		if err != nil {
			return nil, fmt.Errorf("relay: read stream: %w", err)
		}
		if len(entries) == 0 {
			break
		}
		for _, e := range entries {
			msg, err := redisstream.DefaultMarshallerUnmarshaller{}.Unmarshal(e.Values)
			if err != nil {
				return nil, fmt.Errorf("relay: stream entry %s: %w", e.ID, err)
			}
			first, last, err := PackRange(msg)
			if err != nil {
				return nil, fmt.Errorf("relay: stream entry %s: %w", e.ID, err)
			}
			if last <= after {
				done = true
				break
			}
			packs = append(packs, msg)
			// The relay publishes packs in position order (a republished
			// pack starts where the previous offset ended), so no older
			// entry holds anything this one does not cover.
			if first <= after+1 {
				done = true
				break
			}
		}
		end = "(" + entries[len(entries)-1].ID
	}
	var events []eventstore.Event
	next := after + 1
	for i := len(packs) - 1; i >= 0; i-- {
		evs, err := DecodePack(packs[i])
		if err != nil {
			return nil, err
		}
		for _, e := range evs {
			switch {
			case e.Position < next:
				continue // a republished duplicate
			case e.Position > next:
				return nil, fmt.Errorf("%w: positions %d..%d are missing from %s", ErrTrimmed, next, e.Position-1, Topic)
			}
			events = append(events, e)
			next++
			if limit > 0 && len(events) == limit {
				return events, nil
			}
		}
	}
	return events, nil
}

// sharedPublisher hands out the bus's publisher without letting a caller
// close it under the relay.
type sharedPublisher struct{ message.Publisher }

func (sharedPublisher) Close() error { return nil }

// inprocPublisher publishes to the in-process channel, but only once
// someone listens: a gochannel drops messages published to a topic without
// subscribers, and the relay would move its offset past them.
type inprocPublisher struct{ b *Bus }

func (p inprocPublisher) Publish(topic string, msgs ...*message.Message) error {
	ctx := context.Background()
	if len(msgs) > 0 {
		ctx = msgs[0].Context()
	}
	for {
		p.b.subsMu.Lock()
		n, changed := p.b.subs[topic], p.b.subsUp
		p.b.subsMu.Unlock()
		if p.b.ctx.Err() != nil {
			return ErrBusClosed
		}
		if n > 0 {
			break
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("relay: no subscriber on %s: %w", topic, ctx.Err())
		}
	}
	return p.b.channel.Publish(topic, msgs...)
}

func (inprocPublisher) Close() error { return nil }

func (b *Bus) addSub(topic string, delta int) {
	b.subsMu.Lock()
	defer b.subsMu.Unlock()
	b.subs[topic] += delta
	close(b.subsUp)
	b.subsUp = make(chan struct{})
}

// busSubscriber is what Bus.Subscriber returns.
type busSubscriber struct {
	bus    *Bus
	group  string
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Subscribe starts a subscription that lasts until ctx ends or the
// subscriber or the bus is closed; then the channel is closed.
func (s *busSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if s.ctx.Err() != nil {
		return nil, ErrBusClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	if !s.bus.IsRedis() {
		ch, err := s.bus.channel.Subscribe(ctx, topic)
		if err != nil {
			stop()
			cancel()
			return nil, fmt.Errorf("relay: subscribe %s: %w", topic, err)
		}
		s.bus.addSub(topic, 1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			<-ctx.Done()
			stop()
			s.bus.addSub(topic, -1)
		}()
		return ch, nil
	}
	out := make(chan *message.Message)
	s.wg.Add(1)
	s.bus.wg.Add(1)
	go func() {
		defer s.bus.wg.Done()
		defer s.wg.Done()
		defer close(out)
		defer stop()
		defer cancel()
		s.runRedis(ctx, topic, out)
	}()
	return out, nil
}

// runRedis keeps a redisstream subscription alive: when Redis forgot the
// group (it restarted without persistence, or was flushed) redisstream's
// reader would fail with NOGROUP forever, so it is stopped and replaced by
// a new one, which creates the group again at the stream's start.
func (s *busSubscriber) runRedis(ctx context.Context, topic string, out chan<- *message.Message) {
	logFields := watermill.LogFields{"topic": topic, "consumer_group": s.group}
	backoff := newBackoff(100*time.Millisecond, 5*time.Second)
	for ctx.Err() == nil {
		inner, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
			Client:                        s.bus.newClient(),
			Consumer:                      s.bus.cfg.ConsumerName,
			ConsumerGroup:                 s.group,
			OldestId:                      "0",
			NackResendSleep:               s.bus.cfg.NackResendSleep,
			MaxIdleTime:                   s.bus.cfg.MaxIdleTime,
			DisableIndefiniteInitialBlock: true,
			ShouldStopOnReadErrors: func(err error) bool {
				return strings.HasPrefix(err.Error(), "NOGROUP")
			},
		}, s.bus.logger)
		if err != nil {
			// Only a nil client fails here: a bug, not a condition to wait out.
			s.bus.logger.Error("Cannot create redis subscriber", err, logFields)
			return
		}
		msgs, err := inner.Subscribe(ctx, topic)
		if err != nil {
			_ = inner.Close()
			s.bus.logger.Error("Cannot subscribe to redis stream, retrying", err, logFields)
			backoff.sleep(ctx)
			continue
		}
		received := false
		for msg := range msgs {
			received = true
			select {
			case out <- msg:
			case <-ctx.Done():
				// Unacked: Redis keeps it pending for this consumer.
			}
		}
		_ = inner.Close()
		if ctx.Err() != nil {
			return
		}
		if received {
			backoff.reset()
		}
		s.bus.logger.Info("Redis stream subscription ended (consumer group lost?), subscribing again", logFields)
		backoff.sleep(ctx)
	}
}

// Close ends the subscriber's subscriptions and waits for them.
func (s *busSubscriber) Close() error {
	s.cancel()
	s.wg.Wait()
	return nil
}

// backoff is a doubling delay with a ceiling.
type backoff struct {
	min, max, cur time.Duration
}

func newBackoff(min, max time.Duration) *backoff { return &backoff{min: min, max: max, cur: min} }

func (b *backoff) reset() { b.cur = b.min }

// sleep waits the current delay (or until ctx ends) and doubles it.
func (b *backoff) sleep(ctx context.Context) {
	t := time.NewTimer(b.cur)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	b.cur = min(2*b.cur, b.max)
}
