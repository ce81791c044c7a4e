package eventstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// Pending is an append request that was submitted to the writer. Wait for
// its outcome with Wait, or select on Done.
type Pending struct {
	done chan struct{}
	res  AppendResult
	err  error
	req  preparedRequest
}

// Done is closed once the request was committed or failed.
func (p *Pending) Done() <-chan struct{} { return p.done }

// Wait blocks until the request was committed durably or failed, or ctx
// ends. A request whose Wait gave up because of ctx is still applied (or
// not) by the writer: only its outcome is lost to the caller.
func (p *Pending) Wait(ctx context.Context) (AppendResult, error) {
	select {
	case <-p.done:
		return p.res, p.err
	case <-ctx.Done():
		select {
		case <-p.done:
			return p.res, p.err
		default:
		}
		return AppendResult{}, fmt.Errorf("eventstore: wait for append: %w", ctx.Err())
	}
}

func (p *Pending) finish(res AppendResult, err error) {
	p.res, p.err = res, err
	close(p.done)
}

// Submit queues req for the writer and returns at once, without waiting for
// any I/O. Requests are applied in Submit order, and each request's expected
// versions are checked against the stream heads including every request
// submitted before it, committed or not: a caller may submit several
// appends to one stream (expected 3, then 4, then 5) before waiting for the
// first. The events' Data is copied; the caller may reuse it.
//
// A malformed request fails at once with ErrInvalid; after Close it fails
// with ErrClosed (which also matches ErrUnavailable).
func (s *Store) Submit(req AppendRequest) *Pending {
	p := &Pending{done: make(chan struct{})}
	prep, err := prepare(req)
	if err != nil {
		p.finish(AppendResult{}, err)
		return p
	}
	p.req = prep
	s.qmu.Lock()
	if s.closing {
		s.qmu.Unlock()
		p.finish(AppendResult{}, errClosed)
		return p
	}
	s.queue = append(s.queue, p)
	s.qmu.Unlock()
	s.signalWriter()
	return p
}

// Append submits req and waits until it is durably committed: when Append
// returns nil, the events are fsync'd and survive a crash. Errors: a
// *ConflictError (errors.Is ErrConcurrency) when a stream was not at its
// expected version; ErrInvalid for a malformed request; ErrUnavailable when
// the disk refused the write; ErrClosed after Close. In all these cases
// nothing of req was written, with one exception: when the fdatasync of the
// WAL failed (ErrUnavailable, and the store refuses every later append until
// it is reopened), the outcome is unknown, as after a crash. An error from
// ctx means the outcome is unknown too.
func (s *Store) Append(ctx context.Context, req AppendRequest) (AppendResult, error) {
	return s.Submit(req).Wait(ctx)
}

func (s *Store) signalWriter() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// preparedRequest is an AppendRequest validated and encoded in the caller's
// goroutine, so the writer only assigns positions, hashes and inserts.
type preparedRequest struct {
	metadata     Metadata
	metadataJSON []byte
	streams      []StreamAppend // Data copied
	events       int
}

func encodeMetadata(m Metadata) ([]byte, error) {
	return json.Marshal(m)
}

func prepare(req AppendRequest) (preparedRequest, error) {
	if len(req.Streams) == 0 {
		return preparedRequest{}, invalidf("append request has no streams")
	}
	// Metadata is hashed as stored; encoding/json would store invalid
	// UTF-8 as U+FFFD, and the event read back would no longer hash alike.
	for _, f := range []string{req.Metadata.Subject, req.Metadata.RequestID, req.Metadata.CorrelationID, req.Metadata.CausationID} {
		if !utf8.ValidString(f) {
			return preparedRequest{}, invalidf("metadata is not UTF-8")
		}
	}
	meta, err := encodeMetadata(req.Metadata)
	if err != nil {
		return preparedRequest{}, invalidf("metadata: %v", err)
	}
	pr := preparedRequest{
		metadata:     req.Metadata,
		metadataJSON: meta,
		streams:      make([]StreamAppend, len(req.Streams)),
	}
	seen := make(map[string]bool, len(req.Streams))
	for i, st := range req.Streams {
		switch {
		case st.StreamID == "":
			return preparedRequest{}, invalidf("stream %d: empty stream id", i)
		case !utf8.ValidString(st.StreamID):
			return preparedRequest{}, invalidf("stream %d: stream id is not UTF-8", i)
		case seen[st.StreamID]:
			return preparedRequest{}, invalidf("stream %q appears twice in one request", st.StreamID)
		case st.ExpectedVersion < AnyVersion:
			return preparedRequest{}, invalidf("stream %q: expected version %d is below AnyVersion", st.StreamID, st.ExpectedVersion)
		case len(st.Events) == 0:
			return preparedRequest{}, invalidf("stream %q: no events", st.StreamID)
		}
		seen[st.StreamID] = true
		events := make([]NewEvent, len(st.Events))
		for j, ev := range st.Events {
			switch {
			case ev.Type == "":
				return preparedRequest{}, invalidf("stream %q event %d: empty type", st.StreamID, j)
			case !utf8.ValidString(ev.Type):
				return preparedRequest{}, invalidf("stream %q event %d: type is not UTF-8", st.StreamID, j)
			case ev.SchemaVersion < 1:
				return preparedRequest{}, invalidf("stream %q event %d (%s): schema version %d, want >= 1", st.StreamID, j, ev.Type, ev.SchemaVersion)
			case !jsontext.Value(ev.Data).IsValid(validJSON...):
				return preparedRequest{}, invalidf("stream %q event %d (%s): data is not valid JSON", st.StreamID, j, ev.Type)
			}
			events[j] = NewEvent{Type: ev.Type, SchemaVersion: ev.SchemaVersion, Data: bytes.Clone(ev.Data)}
		}
		pr.streams[i] = StreamAppend{StreamID: st.StreamID, ExpectedVersion: st.ExpectedVersion, Events: events}
		pr.events += len(events)
	}
	return pr, nil
}

// validJSON makes jsontext check exactly what encoding/json.Valid does
// (duplicate names and invalid UTF-8 are encoding/json's to refuse or
// not), at 2.6x its speed: 1.0 µs instead of 2.6 for a 450-byte event, on
// every event appended.
var validJSON = []jsontext.Options{jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)}
