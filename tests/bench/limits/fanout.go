package limits

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// fanOutBuffer is how many frames a subscriber may leave unwritten before
// it is cut off (ledgerq's hub drops a subscriber that falls behind too).
const fanOutBuffer = 4096

// fanOut is the least work that delivers ledgerq's SSE frames: each publish
// renders one message.updated frame (the fields ledgerq's frame carries) and
// hands it to the subscribers of its queue through a buffered channel; each
// subscriber's handler writes what is waiting in one write and flushes.
// Nothing is stored, ordered across queues or replayable, and the frame goes
// out as the publish is decoded, without waiting for any commit.
type fanOut struct {
	// subs counts open subscriptions, so that a publish with nobody
	// subscribed (the closed-loop limit) takes no lock.
	subs    atomic.Int64
	mu      sync.Mutex
	byQueue map[string]map[*fanSub]struct{}
}

type fanSub struct {
	ch      chan []byte
	dropped chan struct{}
}

// frameData is ledgerq's message.updated data for a new message.
type frameData struct {
	ID           string            `json:"id"`
	Queue        string            `json:"queue"`
	State        string            `json:"state"`
	PublishedAt  string            `json:"published_at"`
	ReceiveCount int               `json:"receive_count"`
	Headers      map[string]string `json:"headers"`
}

func (f *fanOut) add(queues []string) *fanSub {
	s := &fanSub{ch: make(chan []byte, fanOutBuffer), dropped: make(chan struct{})}
	f.subs.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.byQueue == nil {
		f.byQueue = make(map[string]map[*fanSub]struct{})
	}
	for _, q := range queues {
		if f.byQueue[q] == nil {
			f.byQueue[q] = make(map[*fanSub]struct{})
		}
		f.byQueue[q][s] = struct{}{}
	}
	return s
}

func (f *fanOut) remove(s *fanSub) {
	defer f.subs.Add(-1)
	f.mu.Lock()
	defer f.mu.Unlock()
	for q, subs := range f.byQueue {
		delete(subs, s)
		if len(subs) == 0 {
			delete(f.byQueue, q)
		}
	}
}

// publish hands the frame of message id at pos to queue's subscribers. A
// subscriber whose buffer is full is dropped, never waited for.
func (f *fanOut) publish(queue string, pos int64, id string, at time.Time) {
	if f.subs.Load() == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	subs := f.byQueue[queue]
	if len(subs) == 0 {
		return
	}
	data, _ := json.Marshal(frameData{ID: id, Queue: queue, State: "ready",
		PublishedAt: at.UTC().Format("2006-01-02T15:04:05.000Z07:00"), Headers: map[string]string{}})
	frame := make([]byte, 0, len(data)+48)
	frame = append(frame, "id: "...)
	frame = strconv.AppendInt(frame, pos, 10)
	frame = append(frame, "\nevent: message.updated\ndata: "...)
	frame = append(frame, data...)
	frame = append(frame, "\n\n"...)
	for s := range subs {
		select {
		case s.ch <- frame:
		default:
			for q := range f.byQueue {
				delete(f.byQueue[q], s)
			}
			close(s.dropped)
		}
	}
}

// subscribe is GET /v1/subscribe?queues=a,b: the frames of those queues'
// publishes until the client goes away or falls too far behind.
func (l *httpLimit) subscribe(w http.ResponseWriter, r *http.Request) {
	if !l.allowed(w, r, "queues:read") {
		return
	}
	var queues []string
	for _, q := range strings.Split(r.URL.Query().Get("queues"), ",") {
		if q = strings.TrimSpace(q); q != "" {
			queues = append(queues, q)
		}
	}
	if len(queues) == 0 {
		problem(w, http.StatusBadRequest, "invalid_argument", "queues: name at least one queue")
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		problem(w, http.StatusInternalServerError, "internal", "streaming is not supported")
		return
	}
	sub := l.fan.add(queues)
	defer l.fan.remove(sub)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("retry: 2000\n\n"))
	flusher.Flush()
	var buf []byte
	for {
		select {
		case frame := <-sub.ch:
			buf = append(buf[:0], frame...)
			for more := true; more; {
				select {
				case frame := <-sub.ch:
					buf = append(buf, frame...)
				default:
					more = false
				}
			}
			if _, err := w.Write(buf); err != nil {
				return
			}
			flusher.Flush()
		case <-sub.dropped:
			return
		case <-r.Context().Done():
			return
		}
	}
}
