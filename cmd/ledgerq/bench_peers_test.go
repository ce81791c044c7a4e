package main

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/tests/bench/limits"
)

// Peers are optional on a developer machine: the bench itself skips an
// unreachable peer, and so do these tests. CI's machine runs RabbitMQ and
// NATS, so there (CI=true) a missing peer fails instead of hiding.

func skipOrFailPeer(t *testing.T, name string, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not reachable and CI=true: %v", name, err)
	}
	t.Skipf("%s: %v", name, err)
}

func TestPeerRabbitMQ(t *testing.T) {
	const url = "amqp://guest:guest@127.0.0.1:5672/"
	if err := peerReachable(url); err != nil {
		skipOrFailPeer(t, "RabbitMQ", err)
	}
	run, err := benchRabbitMQ(context.Background(), url,
		benchPhase{Phase: "publish", Target: "rabbitmq", Unit: "msg/s", Conns: 4, Warmup: 50 * time.Millisecond, Duration: 300 * time.Millisecond},
		[]byte(limits.Body(limits.BodyBytes)))
	if err != nil {
		t.Fatal(err)
	}
	if run.Errors != 0 || run.Ops == 0 || run.LatencySamples != int(run.Ops) {
		t.Fatalf("ops %d samples %d errors %d (%s)", run.Ops, run.LatencySamples, run.Errors, run.FirstError)
	}
}

func TestPeerJetStream(t *testing.T) {
	const url = "nats://127.0.0.1:4222"
	if err := peerReachable(url); err != nil {
		skipOrFailPeer(t, "NATS JetStream", err)
	}
	run, err := benchJetStream(context.Background(), url,
		benchPhase{Phase: "batch", Target: "jetstream", Unit: "msg/s", Conns: 4, Warmup: 50 * time.Millisecond, Duration: 300 * time.Millisecond},
		100, []byte(limits.Body(limits.BodyBytes)))
	if err != nil {
		t.Fatal(err)
	}
	if run.Errors != 0 || run.Ops == 0 || run.Ops%100 != 0 || run.LatencySamples != int(run.Ops/100) {
		t.Fatalf("ops %d samples %d errors %d (%s): want whole batches of 100, one sample each", run.Ops, run.LatencySamples, run.Errors, run.FirstError)
	}
}

func TestPeerUnreachable(t *testing.T) {
	addr, err := freeAddr() // free: nobody listens there
	if err != nil {
		t.Fatal(err)
	}
	if err := peerReachable("amqp://" + addr + "/"); err == nil {
		t.Fatal("a closed port counted as reachable")
	}
	if err := peerReachable("::not a url"); err == nil {
		t.Fatal("a bad URL counted as reachable")
	}
}
