package queries

import "testing"

// The updates of one position are a group; only the last one a subscriber
// receives may end the group (More false), whatever its filter drops.
func TestHubMarksGroupsPerSubscriber(t *testing.T) {
	h := NewHub(HubConfig{})
	defer h.Close()
	_, all, _ := h.Subscribe(0, nil)
	_, msgs, _ := h.Subscribe(0, func(u Update) bool { return u.Event == EventMessageUpdated })
	h.Publish(
		Update{Position: 5, Event: EventMessageUpdated, Queue: "q"},
		Update{Position: 5, Event: EventQueueUpdated, Queue: "q"},
		Update{Position: 6, Event: EventQueueUpdated, Queue: "q"},
	)
	var gotAll []bool
	for range 3 {
		gotAll = append(gotAll, (<-all.C()).More)
	}
	if want := []bool{true, false, false}; !equalBools(gotAll, want) {
		t.Fatalf("More for the unfiltered subscriber = %v, want %v", gotAll, want)
	}
	if u := <-msgs.C(); u.Position != 5 || u.More {
		t.Fatalf("filtered subscriber got %+v, want position 5 ending its group", u)
	}
	backlog, sub, _ := h.Subscribe(4, nil)
	defer sub.Close()
	if len(backlog) != 3 || !backlog[0].More || backlog[1].More || backlog[2].More {
		t.Fatalf("backlog groups: %+v", backlog)
	}
}

func equalBools(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Render runs once per update, however many subscribers share it.
func TestHubRendersOncePerUpdate(t *testing.T) {
	calls := 0
	h := NewHub(HubConfig{Render: func(u Update) []byte { calls++; return []byte(`"frame"`) }})
	defer h.Close()
	var subs []*Subscription
	for range 50 {
		_, s, _ := h.Subscribe(0, nil)
		subs = append(subs, s)
	}
	h.Publish(Update{Position: 1, Event: EventQueueUpdated}, Update{Position: 2, Event: EventQueueUpdated})
	if calls != 2 {
		t.Fatalf("Render ran %d times for 2 updates and 50 subscribers, want 2", calls)
	}
	for _, s := range subs {
		if u := <-s.C(); string(u.Frame) != `"frame"` {
			t.Fatalf("subscriber got frame %q", u.Frame)
		}
	}
}
