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
	for _, u := range <-all.C() { // one publish, one receive
		gotAll = append(gotAll, u.More)
	}
	if want := []bool{true, false, false}; !equalBools(gotAll, want) {
		t.Fatalf("More for the unfiltered subscriber = %v, want %v", gotAll, want)
	}
	if us := <-msgs.C(); len(us) != 1 || us[0].Position != 5 || us[0].More {
		t.Fatalf("filtered subscriber got %+v, want position 5 alone, ending its group", us)
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
		if us := <-s.C(); string(us[0].Frame) != `"frame"` {
			t.Fatalf("subscriber got frame %q", us[0].Frame)
		}
	}
}
