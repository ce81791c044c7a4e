package eventstore

import "testing"

// TestChainHashKnownAnswer pins the format-1 encoding: the hash of a fixed
// row, computed by the implementation that wrote every log so far. Logs
// already written must keep verifying, so any change to how the hash is
// computed has to keep this answer.
func TestChainHashKnownAnswer(t *testing.T) {
	in := hashInput{
		prevHash:      "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		position:      42,
		streamID:      "queue-orders",
		version:       7,
		eventType:     "MessagePublished",
		schemaVersion: 1,
		data:          []byte(`{"queue":"orders","message_id":"01J","body":"héllo"}`),
		metadata:      []byte(`{"correlation_id":"c-1"}`),
		recordedAtMS:  1764547200123,
	}
	const want = "6de0a9247456a2378efbd4272d38e0da19c8290f22cb25d1f14a18ac896e05b6"
	h := newChainHasher()
	for range 2 { // the second time through the kept buffer
		got, ok := h.sum(in)
		if !ok || got != want {
			t.Fatalf("sum = %q, %v; want %q", got, ok, want)
		}
	}
	if _, ok := h.sum(hashInput{prevHash: "not hex"}); ok {
		t.Fatal("a prev_hash that is not 64 hex digits was accepted")
	}
	in.prevHash = in.prevHash[:62] + "zz"
	if _, ok := h.sum(in); ok {
		t.Fatal("a prev_hash with non-hex digits was accepted")
	}
}
