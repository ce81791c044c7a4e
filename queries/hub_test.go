package queries

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func upd(pos int64, queue string) Update {
	return Update{Position: pos, Event: EventQueueUpdated, Queue: queue, Data: json.RawMessage(`{}`)}
}

func positions(us []Update) []int64 {
	out := make([]int64, len(us))
	for i, u := range us {
		out[i] = u.Position
	}
	return out
}

func TestSubscribeReplaysRingThenLive(t *testing.T) {
	h := NewHub(HubConfig{Ring: 10, Buffer: 10})
	h.Publish(upd(1, "a"), upd(2, "b"), upd(3, "a"))
	backlog, sub, complete := h.Subscribe(1, nil)
	defer sub.Close()
	if !complete {
		t.Fatal("complete = false, want true: the ring holds everything after 1")
	}
	if got := fmt.Sprint(positions(backlog)); got != "[2 3]" {
		t.Fatalf("backlog %s, want [2 3]", got)
	}
	h.Publish(upd(4, "b"))
	if us := <-sub.C(); len(us) != 1 || us[0].Position != 4 {
		t.Fatalf("live updates %+v, want 4", us)
	}
}

func TestSubscribeFilter(t *testing.T) {
	h := NewHub(HubConfig{})
	onlyA := func(u Update) bool { return u.Queue == "a" }
	h.Publish(upd(1, "a"), upd(2, "b"))
	backlog, sub, _ := h.Subscribe(0, onlyA)
	defer sub.Close()
	h.Publish(upd(3, "b"), upd(4, "a"))
	if got := fmt.Sprint(positions(backlog)); got != "[1]" {
		t.Fatalf("backlog %s, want [1]", got)
	}
	if us := <-sub.C(); len(us) != 1 || us[0].Position != 4 {
		t.Fatalf("live updates %+v, want 4 (3 is queue b)", us)
	}
}

func TestSubscribeIncompleteWhenRingEvicted(t *testing.T) {
	h := NewHub(HubConfig{Ring: 3})
	for p := int64(1); p <= 5; p++ {
		h.Publish(upd(p, "a"))
	}
	for _, c := range []struct {
		after    int64
		complete bool
		backlog  string
	}{
		{after: 0, complete: false, backlog: "[3 4 5]"},
		{after: 1, complete: false, backlog: "[3 4 5]"}, // 2 was evicted
		{after: 2, complete: true, backlog: "[3 4 5]"},
		{after: 4, complete: true, backlog: "[5]"},
		{after: 5, complete: true, backlog: "[]"},
		{after: 9, complete: false, backlog: "[]"}, // from a history this hub never saw
	} {
		backlog, sub, complete := h.Subscribe(c.after, nil)
		sub.Close()
		if complete != c.complete || fmt.Sprint(positions(backlog)) != c.backlog {
			t.Errorf("after %d: complete %v backlog %v, want %v %s", c.after, complete, positions(backlog), c.complete, c.backlog)
		}
	}
}

func TestSetFloorMakesOlderResumesIncomplete(t *testing.T) {
	h := NewHub(HubConfig{})
	h.SetFloor(100) // the read side was at 100 when this process started
	if _, sub, complete := h.Subscribe(50, nil); complete {
		t.Fatal("resume after 50 complete, want incomplete: 51…100 are not in this hub")
	} else {
		sub.Close()
	}
	if _, sub, complete := h.Subscribe(100, nil); !complete {
		t.Fatal("resume after 100 incomplete, want complete")
	} else {
		sub.Close()
	}
}

func TestSlowSubscriberIsDroppedWithoutBlocking(t *testing.T) {
	h := NewHub(HubConfig{Buffer: 2})
	_, slow, _ := h.Subscribe(0, nil)
	_, fast, _ := h.Subscribe(0, nil)
	var got []int64
	for p := int64(1); p <= 5; p++ {
		h.Publish(upd(p, "a")) // would deadlock here if Publish waited for slow
		got = append(got, (<-fast.C())[0].Position)
	}
	select {
	case <-slow.Done():
	default:
		t.Fatal("slow subscriber not dropped")
	}
	if !errors.Is(slow.Err(), ErrSlowSubscriber) {
		t.Fatalf("slow.Err() = %v, want ErrSlowSubscriber", slow.Err())
	}
	if fast.Err() != nil {
		t.Fatalf("fast.Err() = %v, want nil", fast.Err())
	}
	if fmt.Sprint(got) != "[1 2 3 4 5]" {
		t.Fatalf("fast got %v", got)
	}
	if h.Dropped() != 1 || h.Subscribers() != 1 {
		t.Fatalf("dropped %d subscribers %d, want 1 and 1", h.Dropped(), h.Subscribers())
	}
	// What the slow one had buffered is still readable, in order.
	if a, b := (<-slow.C())[0], (<-slow.C())[0]; a.Position != 1 || b.Position != 2 {
		t.Fatalf("slow buffered %d %d, want 1 2", a.Position, b.Position)
	}
}

// A read side catching up publishes hundreds of updates per transaction: a
// subscriber that keeps reading takes such a burst in one receive, however
// small its buffer, and is not dropped for it.
func TestBurstLargerThanBufferIsNotDropped(t *testing.T) {
	h := NewHub(HubConfig{Buffer: 2})
	defer h.Close()
	_, sub, _ := h.Subscribe(0, nil)
	var burst []Update
	for p := int64(1); p <= 300; p++ {
		burst = append(burst, upd(p, "a"))
	}
	h.Publish(burst...)
	h.Publish(upd(301, "a"))
	select {
	case <-sub.Done():
		t.Fatalf("dropped (%v) for a burst of 300 updates with buffer 2", sub.Err())
	default:
	}
	got := drain(sub)
	if len(got) != 301 || got[0].Position != 1 || got[300].Position != 301 || h.Dropped() != 0 {
		t.Fatalf("got %d updates (dropped %d), want 1..301 in order", len(got), h.Dropped())
	}
	for i, u := range got {
		if u.Position != int64(i+1) {
			t.Fatalf("update %d has position %d", i, u.Position)
		}
	}
}

func TestCloseEndsSubscriptions(t *testing.T) {
	h := NewHub(HubConfig{})
	_, sub, _ := h.Subscribe(0, nil)
	sub.Close()
	sub.Close() // twice is fine
	if !errors.Is(sub.Err(), ErrSubscriptionClosed) || h.Subscribers() != 0 {
		t.Fatalf("after Close: err %v, subscribers %d", sub.Err(), h.Subscribers())
	}
	_, sub2, _ := h.Subscribe(0, nil)
	h.Close()
	<-sub2.Done()
	if !errors.Is(sub2.Err(), ErrHubClosed) {
		t.Fatalf("err %v, want ErrHubClosed", sub2.Err())
	}
	_, sub3, complete := h.Subscribe(0, nil)
	<-sub3.Done()
	if complete || !errors.Is(sub3.Err(), ErrHubClosed) {
		t.Fatalf("subscribe after close: complete %v err %v", complete, sub3.Err())
	}
	h.Publish(upd(1, "a")) // no effect, no panic
}

// Subscribers join and rejoin (resuming after the last position they saw)
// while a publisher runs: each must see every position exactly once, in
// order. Positions come in groups of two updates, as an event that changes a
// message and its queue does.
func TestConcurrentPublishAndResumeNeverLosesOrDuplicates(t *testing.T) {
	const (
		last        = 3000
		subscribers = 8
	)
	h := NewHub(HubConfig{Ring: 2 * last, Buffer: 64})
	var wg sync.WaitGroup
	errs := make(chan error, subscribers)
	for i := range subscribers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var seen []Update
			after := int64(0)
			for round := 0; ; round++ {
				backlog, sub, complete := h.Subscribe(after, nil)
				if !complete {
					sub.Close()
					errs <- fmt.Errorf("subscriber %d: resume after %d incomplete", i, after)
					return
				}
				seen = append(seen, backlog...)
				// Leave after a few updates (more each round), to resume.
				budget := 50 * (round + 1)
			live:
				for budget > 0 && len(seen) < 2*last {
					select {
					case us := <-sub.C():
						seen = append(seen, us...)
						budget -= len(us)
					case <-sub.Done():
						break live // dropped for slowness: resume like an SSE client
					}
				}
				sub.Close()
				// Drain nothing more: resume from the last complete position.
				if len(seen) == 2*last {
					break
				}
				// Like an SSE client that only trusts ids of complete groups,
				// drop a trailing half group and resume after the group before.
				if n := len(seen); n%2 == 1 {
					seen = seen[:n-1]
				}
				if len(seen) > 0 {
					after = seen[len(seen)-1].Position
				}
			}
			for k, u := range seen {
				if want := int64(k/2 + 1); u.Position != want {
					errs <- fmt.Errorf("subscriber %d: update %d has position %d, want %d", i, k, u.Position, want)
					return
				}
			}
		}()
	}
	for p := int64(1); p <= last; p++ {
		h.Publish(Update{Position: p, Event: EventMessageUpdated, Queue: "q"}, Update{Position: p, Event: EventQueueUpdated, Queue: "q"})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// drain returns what is waiting on sub without blocking.
func drain(sub *Subscription) []Update {
	var out []Update
	for {
		select {
		case us := <-sub.C():
			out = append(out, us...)
		default:
			return out
		}
	}
}

func TestSubscribeToQueuesGetsOnlyThoseInOrder(t *testing.T) {
	h := NewHub(HubConfig{Ring: 100, Buffer: 100})
	h.Publish(upd(1, "a"), upd(2, "c"))
	backlog, ab, _ := h.SubscribeTo(0, Interest{Queues: []string{"a", "b"}}, nil)
	defer ab.Close()
	if got := fmt.Sprint(positions(backlog)); got != "[1]" {
		t.Fatalf("backlog %s, want [1]", got)
	}
	_, onlyB, _ := h.SubscribeTo(2, Interest{Queues: []string{"b"}}, func(u Update) bool { return u.Event == EventMessageUpdated })
	defer onlyB.Close()
	_, all, _ := h.Subscribe(2, nil)
	defer all.Close()

	msg := func(pos int64, queue string) Update {
		u := upd(pos, queue)
		u.Event = EventMessageUpdated
		return u
	}
	// Position 4 is a group: a message update then its queue's update.
	h.Publish(upd(3, "b"), msg(4, "b"), upd(4, "b"), upd(5, "c"), msg(6, "a"))

	got := drain(ab)
	if s := fmt.Sprint(positions(got)); s != "[3 4 4 6]" {
		t.Fatalf("a,b subscriber got %s, want [3 4 4 6]", s)
	}
	if !got[1].More || got[2].More {
		t.Fatalf("group marks %v %v, want the first of position 4 to have More", got[1].More, got[2].More)
	}
	got = drain(onlyB)
	if s := fmt.Sprint(positions(got)); s != "[4]" || got[0].More {
		t.Fatalf("b-messages subscriber got %s (More %v), want [4] without More: its own last of the group", s, got[0].More)
	}
	if s := fmt.Sprint(positions(drain(all))); s != "[3 4 4 5 6]" {
		t.Fatalf("unfiltered subscriber got %s, want [3 4 4 5 6]", s)
	}
}

func TestClosedSubscriptionLeavesTheQueueIndex(t *testing.T) {
	h := NewHub(HubConfig{Buffer: 4})
	_, sub, _ := h.SubscribeTo(0, Interest{Queues: []string{"a", "b"}}, nil)
	_, keep, _ := h.SubscribeTo(0, Interest{Queues: []string{"b"}}, nil)
	defer keep.Close()
	sub.Close()
	h.Publish(upd(1, "a"), upd(2, "b"))
	if n := len(drain(sub)); n != 0 {
		t.Fatalf("closed subscription received %d updates", n)
	}
	if s := fmt.Sprint(positions(drain(keep))); s != "[2]" {
		t.Fatalf("remaining subscriber got %s, want [2]", s)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.byQueue["a"]; ok {
		t.Fatal("queue a is still indexed after its only subscriber closed")
	}
	if len(h.byQueue["b"]) != 1 || len(h.subs) != 1 {
		t.Fatalf("index holds %d for b and %d subscriptions, want 1 and 1", len(h.byQueue["b"]), len(h.subs))
	}
}

// BenchmarkPublishFanOut is one projection pack of 32 message updates on
// different queues with 1,000 subscribers spread 4 per queue over 250
// queues (the shape of the SSE goal of issue 7).
func BenchmarkPublishFanOut(b *testing.B) {
	h := NewHub(HubConfig{Ring: 1000, Buffer: 1 << 20})
	var subs []*Subscription
	for i := range 1000 {
		_, s, _ := h.SubscribeTo(0, Interest{Queues: []string{fmt.Sprintf("q%d", i%250)}}, func(Update) bool { return true })
		subs = append(subs, s)
	}
	pack := make([]Update, 32)
	b.ReportAllocs()
	pos := int64(0)
	for b.Loop() {
		for i := range pack {
			pos++
			pack[i] = upd(pos, fmt.Sprintf("q%d", pos%250))
		}
		h.Publish(pack...)
		for _, s := range subs {
			drain(s)
		}
	}
}

func TestQueueUpdatesAreWantedOnlyByThoseWhoCanTakeThem(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	h := NewHub(HubConfig{Linger: time.Minute, Now: func() time.Time { return now }})
	if h.WantUpdate(EventQueueUpdated, "a", 1) {
		t.Fatal("wanted with no subscriber at all")
	}
	_, msgs, _ := h.SubscribeTo(1, Interest{Queues: []string{"a"}, NoQueueUpdates: true}, nil)
	if h.WantUpdate(EventQueueUpdated, "a", 2) {
		t.Fatal("wanted by a subscriber of message updates only")
	}
	_, onA, _ := h.SubscribeTo(2, Interest{Queues: []string{"a"}}, nil)
	if !h.WantUpdate(EventQueueUpdated, "a", 3) || h.WantUpdate(EventQueueUpdated, "b", 3) {
		t.Fatal("a subscriber of queue a: want a, not b")
	}
	_, notB, _ := h.Subscribe(3, func(u Update) bool { return u.Queue != "b" })
	if h.WantUpdate(EventQueueUpdated, "b", 4) || !h.WantUpdate(EventQueueUpdated, "c", 4) {
		t.Fatal("a subscriber of every queue but b: want c, not b")
	}
	msgs.Close()
	notB.Close()
	onA.Close()
	// Within the linger a leaver may come back: still wanted.
	now = now.Add(30 * time.Second)
	if !h.WantUpdate(EventQueueUpdated, "a", 5) || !h.WantUpdate(EventQueueUpdated, "c", 5) {
		t.Fatal("not wanted within the linger after the subscribers left")
	}
	now = now.Add(time.Minute)
	if h.WantUpdate(EventQueueUpdated, "a", 6) || h.WantUpdate(EventQueueUpdated, "c", 6) {
		t.Fatal("still wanted after the linger")
	}
}

func TestMessageUpdatesAreWantedOnlyByThoseWhoCanTakeThem(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	h := NewHub(HubConfig{Linger: time.Minute, Now: func() time.Time { return now }})
	_, queuesOnly, _ := h.SubscribeTo(0, Interest{NoMessageUpdates: true}, nil)
	if h.WantUpdate(EventMessageUpdated, "a", 1) || !h.WantUpdate(EventQueueUpdated, "a", 1) {
		t.Fatal("a subscriber of queue updates only: want queue updates, not message updates")
	}
	_, onA, _ := h.SubscribeTo(0, Interest{Queues: []string{"a"}, NoQueueUpdates: true}, nil)
	if !h.WantUpdate(EventMessageUpdated, "a", 2) || h.WantUpdate(EventMessageUpdated, "b", 2) {
		t.Fatal("a subscriber of queue a's messages: want a's, not b's")
	}
	queuesOnly.Close()
	onA.Close()
	now = now.Add(2 * time.Minute)
	if h.WantUpdate(EventMessageUpdated, "a", 3) {
		t.Fatal("wanted after the linger")
	}
	h.Publish(upd(3, "c")) // position 3 also changed queue c
	// The skip at 3 makes a resume from 2 of a's messages incomplete, not
	// one of queue updates only.
	if _, sub, complete := h.SubscribeTo(2, Interest{Queues: []string{"a"}, NoQueueUpdates: true}, nil); complete {
		t.Fatal("a resume across a skipped message update says complete")
	} else {
		sub.Close()
	}
	if _, sub, complete := h.SubscribeTo(2, Interest{NoMessageUpdates: true}, nil); !complete {
		t.Fatal("a resume of queue updates only is incomplete, but no queue update was skipped")
	} else {
		sub.Close()
	}
}

func TestResumeAcrossASkippedQueueUpdateIsIncomplete(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	h := NewHub(HubConfig{Linger: time.Minute, Now: func() time.Time { return now }})
	h.Publish(upd(1, "a"))
	if h.WantUpdate(EventQueueUpdated, "a", 2) {
		t.Fatal("wanted with no subscriber")
	}
	msg := upd(2, "a")
	msg.Event = EventMessageUpdated
	h.Publish(msg) // position 2 changed queue a, whose update was skipped

	if _, sub, complete := h.Subscribe(1, nil); complete {
		t.Fatal("a resume from 1 that would take queue a's updates says complete; position 2's was never built")
	} else {
		sub.Close()
	}
	if _, sub, complete := h.SubscribeTo(1, Interest{Queues: []string{"a"}, NoQueueUpdates: true}, nil); !complete {
		t.Fatal("a resume of message updates only is complete: none was skipped")
	} else {
		sub.Close()
	}
	if _, sub, complete := h.SubscribeTo(1, Interest{Queues: []string{"b"}}, nil); !complete {
		t.Fatal("a resume of queue b is complete: only a's update was skipped")
	} else {
		sub.Close()
	}
	if _, sub, complete := h.Subscribe(2, nil); !complete {
		t.Fatal("a resume from 2 is complete: the skip was at 2")
	} else {
		sub.Close()
	}
}
