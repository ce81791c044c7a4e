package transport

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/ledgerq/ledgerq/commands"
	"github.com/ledgerq/ledgerq/domain"
	"github.com/ledgerq/ledgerq/queries"
)

// timeLayout is RFC 3339 with exactly three fractional digits; times are
// always written in UTC, so the zone is "Z".
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// headerPosition carries the global position of a command's last event, or
// the position the read side had applied for a query.
const headerPosition = "X-Ledgerq-Position"

// jsonTime writes a time as API.md wants it; the zero time is null.
type jsonTime time.Time

// MarshalJSON formats the time in UTC with millisecond precision.
func (t jsonTime) MarshalJSON() ([]byte, error) {
	tt := time.Time(t)
	if tt.IsZero() {
		return []byte("null"), nil
	}
	return []byte(strconv.Quote(tt.UTC().Truncate(time.Millisecond).Format(timeLayout))), nil
}

// respond writes v as the JSON answer. The body is encoded before the
// status goes out, so an encoding failure can still become a 500.
func (s *server) respond(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.writeProblem(w, r, fmt.Errorf("encode response: %w", err))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func setPosition(w http.ResponseWriter, pos int64) {
	w.Header().Set(headerPosition, strconv.FormatInt(pos, 10))
}

// queueView is a queue as every route answers it; Stats only on queries.
type queueView struct {
	Name       string             `json:"name"`
	Attributes queries.Attributes `json:"attributes"`
	CreatedAt  jsonTime           `json:"created_at"`
	UpdatedAt  jsonTime           `json:"updated_at"`
	Stats      *queries.Stats     `json:"stats,omitempty"`
	// Snapshot marks, on SSE, the current state sent in place of a replay.
	Snapshot bool `json:"snapshot,omitempty"`
}

func queueFromCommand(q commands.QueueInfo) queueView {
	return queueView{
		Name:       q.Name,
		Attributes: attributesFromDomain(q.Attributes),
		CreatedAt:  jsonTime(q.CreatedAt),
		UpdatedAt:  jsonTime(q.UpdatedAt),
	}
}

func attributesFromDomain(a domain.Attributes) queries.Attributes {
	out := queries.Attributes{
		VisibilityTimeoutMS: a.VisibilityTimeoutMS,
		DelayMS:             a.DelayMS,
		RetentionMS:         a.RetentionMS,
		MaxMessageBytes:     a.MaxMessageBytes,
		MaxReceiveCount:     a.MaxReceiveCount,
	}
	if a.DeadLetterQueue != "" {
		dlq := a.DeadLetterQueue
		out.DeadLetterQueue = &dlq
	}
	return out
}

func queueFromQuery(q queries.Queue) queueView {
	stats := q.Stats
	return queueView{
		Name:       q.Name,
		Attributes: q.Attributes,
		CreatedAt:  jsonTime(q.CreatedAt),
		UpdatedAt:  jsonTime(q.UpdatedAt),
		Stats:      &stats,
	}
}

func queuesFromQuery(qs []queries.Queue) []queueView {
	out := make([]queueView, 0, len(qs))
	for _, q := range qs {
		out = append(out, queueFromQuery(q))
	}
	return out
}

// nonNilHeaders makes absent headers an empty object rather than null.
func nonNilHeaders(h map[string]string) map[string]string {
	if h == nil {
		return map[string]string{}
	}
	return h
}

type receivedView struct {
	ID             string            `json:"id"`
	Queue          string            `json:"queue"`
	Body           string            `json:"body"`
	BodyEncoding   string            `json:"body_encoding"`
	ContentType    string            `json:"content_type"`
	Headers        map[string]string `json:"headers"`
	Receipt        string            `json:"receipt"`
	ReceiveCount   int               `json:"receive_count"`
	PublishedAt    jsonTime          `json:"published_at"`
	LeaseExpiresAt jsonTime          `json:"lease_expires_at"`
}

func receivedFromCommand(ms []commands.ReceivedMessage) []receivedView {
	out := make([]receivedView, 0, len(ms))
	for _, m := range ms {
		enc := m.BodyEncoding
		if enc == "" {
			enc = domain.EncodingUTF8
		}
		out = append(out, receivedView{
			ID: m.ID, Queue: m.Queue, Body: m.Body, BodyEncoding: enc, ContentType: m.ContentType,
			Headers: nonNilHeaders(m.Headers), Receipt: m.Receipt, ReceiveCount: m.ReceiveCount,
			PublishedAt: jsonTime(m.PublishedAt), LeaseExpiresAt: jsonTime(m.LeaseExpiresAt),
		})
	}
	return out
}

type messageSummaryView struct {
	ID           string            `json:"id"`
	Queue        string            `json:"queue"`
	State        string            `json:"state"`
	PublishedAt  jsonTime          `json:"published_at"`
	ReceiveCount int               `json:"receive_count"`
	Headers      map[string]string `json:"headers"`
	Body         *string           `json:"body,omitempty"`
	BodyEncoding string            `json:"body_encoding,omitempty"`
}

func summaryFromQuery(m queries.MessageSummary) messageSummaryView {
	return messageSummaryView{
		ID: m.ID, Queue: m.Queue, State: m.State, PublishedAt: jsonTime(m.PublishedAt),
		ReceiveCount: m.ReceiveCount, Headers: nonNilHeaders(m.Headers), Body: m.Body, BodyEncoding: m.BodyEncoding,
	}
}

type historyView struct {
	Position   int64           `json:"position"`
	Type       string          `json:"type"`
	RecordedAt jsonTime        `json:"recorded_at"`
	Data       json.RawMessage `json:"data"`
}

type messageDetailView struct {
	ID           string            `json:"id"`
	Queue        string            `json:"queue"`
	State        string            `json:"state"`
	Body         string            `json:"body"`
	BodyEncoding string            `json:"body_encoding"`
	ContentType  string            `json:"content_type,omitempty"`
	Headers      map[string]string `json:"headers"`
	ReceiveCount int               `json:"receive_count"`
	PublishedAt  jsonTime          `json:"published_at"`
	History      []historyView     `json:"history"`
}

func detailFromQuery(m queries.MessageDetail) messageDetailView {
	h := make([]historyView, 0, len(m.History))
	for _, e := range m.History {
		h = append(h, historyView{Position: e.Position, Type: e.Type, RecordedAt: jsonTime(e.RecordedAt), Data: rawOrNull(e.Data)})
	}
	return messageDetailView{
		ID: m.ID, Queue: m.Queue, State: m.State, Body: m.Body, BodyEncoding: m.BodyEncoding,
		ContentType: m.ContentType, Headers: nonNilHeaders(m.Headers), ReceiveCount: m.ReceiveCount,
		PublishedAt: jsonTime(m.PublishedAt), History: h,
	}
}

type eventView struct {
	Position      int64           `json:"position"`
	Stream        string          `json:"stream"`
	Version       int64           `json:"version"`
	Type          string          `json:"type"`
	SchemaVersion int             `json:"schema_version"`
	Data          json.RawMessage `json:"data"`
	Metadata      json.RawMessage `json:"metadata"`
	RecordedAt    jsonTime        `json:"recorded_at"`
	Hash          string          `json:"hash"`
	PrevHash      string          `json:"prev_hash"`
}

func eventFromQuery(e queries.EventView) eventView {
	return eventView{
		Position: e.Position, Stream: e.Stream, Version: e.Version, Type: e.Type, SchemaVersion: e.SchemaVersion,
		Data: rawOrNull(e.Data), Metadata: rawOrNull(e.Metadata), RecordedAt: jsonTime(e.RecordedAt),
		Hash: e.Hash, PrevHash: e.PrevHash,
	}
}

// rawOrNull keeps an empty RawMessage from producing invalid JSON.
func rawOrNull(m json.RawMessage) json.RawMessage {
	if len(m) == 0 {
		return json.RawMessage("null")
	}
	return m
}

// appendJSONLine appends v as one line of JSON.
func appendJSONLine(dst []byte, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return dst, fmt.Errorf("encode: %w", err)
	}
	dst = append(dst, b...)
	return append(dst, '\n'), nil
}
