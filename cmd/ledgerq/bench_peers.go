package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"
)

// peerReachable dials the peer's address (host:port of a URL) with a short
// timeout so an absent peer is skipped quickly and by name.
func peerReachable(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("bad peer URL %q", rawURL)
	}
	conn, err := net.DialTimeout("tcp", u.Host, time.Second)
	if err != nil {
		return fmt.Errorf("%s not reachable: %w", u.Host, err)
	}
	return conn.Close()
}

// benchRabbitMQ publishes persistent messages to a durable queue with
// publisher confirms: each of ph.Conns publishers has its own channel and
// waits for the broker's confirm of each message before sending the next,
// as an HTTP client waits for its 201. The queue is deleted afterwards.
func benchRabbitMQ(ctx context.Context, amqpURL string, ph benchPhase, body []byte) (benchRun, error) {
	conn, err := amqp.DialConfig(amqpURL, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return benchRun{}, fmt.Errorf("rabbitmq: %w", err)
	}
	defer conn.Close()
	setup, err := conn.Channel()
	if err != nil {
		return benchRun{}, fmt.Errorf("rabbitmq: channel: %w", err)
	}
	const queue = "ledgerq-bench"
	if _, err := setup.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		return benchRun{}, fmt.Errorf("rabbitmq: declare %s: %w", queue, err)
	}
	if _, err := setup.QueuePurge(queue, false); err != nil {
		return benchRun{}, fmt.Errorf("rabbitmq: purge: %w", err)
	}
	defer func() { _, _ = setup.QueueDelete(queue, false, false, false) }()

	chans := make([]*amqp.Channel, ph.Conns)
	for i := range chans {
		ch, err := conn.Channel()
		if err != nil {
			return benchRun{}, fmt.Errorf("rabbitmq: channel %d: %w", i, err)
		}
		defer ch.Close()
		if err := ch.Confirm(false); err != nil {
			return benchRun{}, fmt.Errorf("rabbitmq: confirm mode: %w", err)
		}
		chans[i] = ch
	}
	msg := amqp.Publishing{DeliveryMode: amqp.Persistent, ContentType: "application/octet-stream", Body: body}
	run := benchClosedLoop(ctx, ph, func(ctx context.Context, w int) (int, error) {
		dc, err := chans[w].PublishWithDeferredConfirmWithContext(ctx, "", queue, false, false, msg)
		if err != nil {
			return 0, err
		}
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			return 0, err
		}
		if !ok {
			return 0, errors.New("rabbitmq: publish nacked")
		}
		return 1, nil
	})
	return run, nil
}

// benchJetStream publishes to a file-storage JetStream stream with async
// publish: each of ph.Conns publishers sends batch messages without waiting,
// then waits for all their acks, as a batch-publish HTTP request does. The
// stream is deleted afterwards.
func benchJetStream(ctx context.Context, natsURL string, ph benchPhase, batch int, body []byte) (benchRun, error) {
	nc, err := nats.Connect(natsURL, nats.Timeout(5*time.Second), nats.Name("ledgerq-bench"))
	if err != nil {
		return benchRun{}, fmt.Errorf("nats: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(ph.Conns*batch*2))
	if err != nil {
		return benchRun{}, fmt.Errorf("nats: jetstream: %w", err)
	}
	const stream, subject = "LEDGERQ_BENCH", "ledgerq.bench"
	setupCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_ = js.DeleteStream(setupCtx, stream) // a leftover of an interrupted run
	if _, err := js.CreateStream(setupCtx, jetstream.StreamConfig{
		Name: stream, Subjects: []string{subject}, Storage: jetstream.FileStorage, Replicas: 1,
	}); err != nil {
		return benchRun{}, fmt.Errorf("nats: create stream: %w", err)
	}
	defer func() {
		delCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = js.DeleteStream(delCtx, stream)
	}()
	run := benchClosedLoop(ctx, ph, func(ctx context.Context, w int) (int, error) {
		futures := make([]jetstream.PubAckFuture, 0, batch)
		for range batch {
			f, err := js.PublishAsync(subject, body)
			if err != nil {
				return 0, err
			}
			futures = append(futures, f)
		}
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return 0, err
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		return batch, nil
	})
	return run, nil
}
