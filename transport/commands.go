package transport

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/ledgerq/ledgerq/commands"
	"github.com/ledgerq/ledgerq/domain"
)

// Request bounds checked at the edge (API.md); attribute ranges and message
// rules are the domain's.
const (
	maxReceiveMessages = 100
	maxWaitMS          = 20000
	maxBatchMessages   = 100
	maxAckReceipts     = 100
	maxHeaders         = 32
	maxDedupIDLen      = 128
	maxReceiptLen      = 1024
	maxConsumerLen     = 256
	maxContentTypeLen  = 256
)

// attributesBody is the attributes part of a create or configure body.
type attributesBody struct {
	VisibilityTimeoutMS *int64         `json:"visibility_timeout_ms"`
	DelayMS             *int64         `json:"delay_ms"`
	RetentionMS         *int64         `json:"retention_ms"`
	MaxMessageBytes     *int64         `json:"max_message_bytes"`
	DeadLetterQueue     optionalString `json:"dead_letter_queue"`
	MaxReceiveCount     *int           `json:"max_receive_count"`
}

// patch turns the body into the domain's patch. A dead-letter queue must
// pass the name rule and the token's patterns: a token may not route
// messages into a queue it cannot touch.
func (b attributesBody) patch(p *principal) (domain.AttributesPatch, error) {
	out := domain.AttributesPatch{
		VisibilityTimeoutMS: b.VisibilityTimeoutMS,
		DelayMS:             b.DelayMS,
		RetentionMS:         b.RetentionMS,
		MaxMessageBytes:     b.MaxMessageBytes,
		MaxReceiveCount:     b.MaxReceiveCount,
	}
	switch dlq := b.DeadLetterQueue; {
	case !dlq.Set:
	case dlq.Null || dlq.Value == "":
		none := ""
		out.DeadLetterQueue = &none
	default:
		if err := checkQueueName("dead_letter_queue", dlq.Value); err != nil {
			return out, err
		}
		if !p.allows(dlq.Value) {
			return out, forbiddenQueue("dead_letter_queue", dlq.Value)
		}
		v := dlq.Value
		out.DeadLetterQueue = &v
	}
	return out, nil
}

type queueAnswer struct {
	Queue    queueView `json:"queue"`
	Position int64     `json:"position"`
}

type positionAnswer struct {
	Position int64 `json:"position"`
}

// commandPosition is the position a command answers: its last event, or
// the head of the log when it appended none (the command side fills that
// in; Head is the fallback should it not).
func (s *server) commandPosition(pos int64) int64 {
	if pos == 0 {
		return s.deps.Commands.Head()
	}
	return pos
}

// answerCommand writes a command's answer with its position header.
func (s *server) answerCommand(w http.ResponseWriter, r *http.Request, status int, pos int64, v any) {
	setPosition(w, pos)
	s.respond(w, r, status, v)
}

func (s *server) handleCreateQueue() http.HandlerFunc {
	// The attributes are spelt out rather than embedded: encoding/json
	// would name an embedded struct in its error paths.
	type body struct {
		Name                *string        `json:"name"`
		VisibilityTimeoutMS *int64         `json:"visibility_timeout_ms"`
		DelayMS             *int64         `json:"delay_ms"`
		RetentionMS         *int64         `json:"retention_ms"`
		MaxMessageBytes     *int64         `json:"max_message_bytes"`
		DeadLetterQueue     optionalString `json:"dead_letter_queue"`
		MaxReceiveCount     *int           `json:"max_receive_count"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		var b body
		if err := s.decodeJSON(w, r, DefaultSmallBodyBytes, false, &b); err != nil {
			s.writeProblem(w, r, err)
			return
		}
		if b.Name == nil {
			s.writeProblem(w, r, invalid("name", "is required"))
			return
		}
		if err := checkQueueName("name", *b.Name); err != nil {
			s.writeProblem(w, r, err)
			return
		}
		p := callerOf(r)
		if !p.allows(*b.Name) {
			s.writeProblem(w, r, forbiddenQueue("name", *b.Name))
			return
		}
		patch, err := attributesBody{
			VisibilityTimeoutMS: b.VisibilityTimeoutMS, DelayMS: b.DelayMS, RetentionMS: b.RetentionMS,
			MaxMessageBytes: b.MaxMessageBytes, DeadLetterQueue: b.DeadLetterQueue, MaxReceiveCount: b.MaxReceiveCount,
		}.patch(p)
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		res, err := s.deps.Commands.CreateQueue(r.Context(), commands.CreateQueue{Name: *b.Name, Attributes: patch})
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		status := http.StatusOK
		if res.Created {
			status = http.StatusCreated
		}
		pos := s.commandPosition(res.Position)
		s.answerCommand(w, r, status, pos, queueAnswer{Queue: queueFromCommand(res.Queue), Position: pos})
	}
}

func (s *server) handleConfigureQueue() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var b attributesBody
		if err := s.decodeJSON(w, r, DefaultSmallBodyBytes, false, &b); err != nil {
			s.writeProblem(w, r, err)
			return
		}
		patch, err := b.patch(callerOf(r))
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		res, err := s.deps.Commands.ConfigureQueue(r.Context(), commands.ConfigureQueue{Name: queueOf(r), Attributes: patch})
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		pos := s.commandPosition(res.Position)
		s.answerCommand(w, r, http.StatusOK, pos, queueAnswer{Queue: queueFromCommand(res.Queue), Position: pos})
	}
}

func (s *server) handleDeleteQueue() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		res, err := s.deps.Commands.DeleteQueue(r.Context(), commands.DeleteQueue{Name: queueOf(r)})
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		pos := s.commandPosition(res.Position)
		s.answerCommand(w, r, http.StatusOK, pos, positionAnswer{Position: pos})
	}
}

func (s *server) handlePurgeQueue() http.HandlerFunc {
	type answer struct {
		Purged   int   `json:"purged"`
		Position int64 `json:"position"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		res, err := s.deps.Commands.PurgeQueue(r.Context(), commands.PurgeQueue{Name: queueOf(r)})
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		pos := s.commandPosition(res.Position)
		s.answerCommand(w, r, http.StatusOK, pos, answer{Purged: res.Purged, Position: pos})
	}
}

func (s *server) handleRedrive() http.HandlerFunc {
	type body struct {
		To          *string `json:"to"`
		MaxMessages *int    `json:"max_messages"`
	}
	type answer struct {
		Moved    int   `json:"moved"`
		Position int64 `json:"position"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		var b body
		if err := s.decodeJSON(w, r, DefaultSmallBodyBytes, true, &b); err != nil {
			s.writeProblem(w, r, err)
			return
		}
		cmd := commands.Redrive{Queue: queueOf(r)}
		if b.To != nil && *b.To != "" {
			if err := checkQueueName("to", *b.To); err != nil {
				s.writeProblem(w, r, err)
				return
			}
			if !callerOf(r).allows(*b.To) {
				s.writeProblem(w, r, forbiddenQueue("to", *b.To))
				return
			}
			cmd.To = *b.To
		}
		if b.MaxMessages != nil {
			if *b.MaxMessages < 1 {
				s.writeProblem(w, r, invalid("max_messages", "must be at least 1 (leave it out to move all)"))
				return
			}
			cmd.MaxMessages = *b.MaxMessages
		}
		res, err := s.deps.Commands.Redrive(r.Context(), cmd)
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		pos := s.commandPosition(res.Position)
		s.answerCommand(w, r, http.StatusOK, pos, answer{Moved: res.Moved, Position: pos})
	}
}

// messageBody is one message to publish, alone or in a batch.
type messageBody struct {
	Body         *string           `json:"body"`
	BodyEncoding string            `json:"body_encoding"`
	ContentType  string            `json:"content_type"`
	Headers      map[string]string `json:"headers"`
	DelayMS      *int64            `json:"delay_ms"`
	DedupID      string            `json:"dedup_id"`
}

// message checks the request shape; the size of the decoded body against
// max_message_bytes, header contents and delays are the domain's rules.
func (b messageBody) message() (commands.Message, error) {
	if b.Body == nil {
		return commands.Message{}, invalid("body", "is required")
	}
	switch b.BodyEncoding {
	case "", domain.EncodingUTF8, domain.EncodingBase64:
	default:
		return commands.Message{}, invalid("body_encoding", `must be "utf8" or "base64"`)
	}
	if len(b.Headers) > maxHeaders {
		return commands.Message{}, invalid("headers", "at most "+strconv.Itoa(maxHeaders)+" headers")
	}
	if len(b.DedupID) > maxDedupIDLen {
		return commands.Message{}, invalid("dedup_id", "at most "+strconv.Itoa(maxDedupIDLen)+" characters")
	}
	if len(b.ContentType) > maxContentTypeLen {
		return commands.Message{}, invalid("content_type", "at most "+strconv.Itoa(maxContentTypeLen)+" characters")
	}
	return commands.Message{
		Body: *b.Body, BodyEncoding: b.BodyEncoding, ContentType: b.ContentType,
		Headers: b.Headers, DelayMS: b.DelayMS, DedupID: b.DedupID,
	}, nil
}

func (s *server) handlePublish() http.HandlerFunc {
	type answer struct {
		ID       string `json:"id"`
		Queue    string `json:"queue"`
		Position int64  `json:"position"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		var b messageBody
		if err := s.decodeJSON(w, r, s.deps.MaxBodyBytes, false, &b); err != nil {
			s.writeProblem(w, r, err)
			return
		}
		msg, err := b.message()
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		res, err := s.deps.Commands.Publish(r.Context(), commands.Publish{Queue: queueOf(r), Message: msg})
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		status := http.StatusCreated
		if res.Duplicate {
			status = http.StatusOK
		}
		queue := res.Queue
		if queue == "" {
			queue = queueOf(r)
		}
		pos := s.commandPosition(res.Position)
		s.answerCommand(w, r, status, pos, answer{ID: res.ID, Queue: queue, Position: pos})
	}
}

// batchMessages decodes a batch body's messages in one pass: each entry is
// decoded once, where the entry-by-entry decoding reads it four times (the
// shape check and the decoding of the whole body, then of the entry on its
// own). A refused batch goes through batchMessagesOneByOne, whose error
// names the entry at fault.
func batchMessages(data []byte) ([]commands.Message, error) {
	var b struct {
		Messages []messageBody `json:"messages"`
	}
	if unmarshalStrict(data, &b) == nil && len(b.Messages) >= 1 && len(b.Messages) <= maxBatchMessages {
		msgs := make([]commands.Message, len(b.Messages))
		var err error
		for i := range b.Messages {
			if msgs[i], err = b.Messages[i].message(); err != nil {
				break
			}
		}
		if err == nil {
			return msgs, nil
		}
	}
	return batchMessagesOneByOne(data)
}

// batchMessagesOneByOne decodes the body, then each entry on its own, so
// that an error names its index.
func batchMessagesOneByOne(data []byte) ([]commands.Message, error) {
	var b struct {
		Messages []json.RawMessage `json:"messages"`
	}
	if err := unmarshalStrict(data, &b); err != nil {
		return nil, err
	}
	if len(b.Messages) == 0 || len(b.Messages) > maxBatchMessages {
		return nil, invalid("messages", "must hold 1 to "+strconv.Itoa(maxBatchMessages)+" messages")
	}
	msgs := make([]commands.Message, len(b.Messages))
	for i, raw := range b.Messages {
		var mb messageBody
		err := unmarshalStrict(raw, &mb)
		if err == nil {
			msgs[i], err = mb.message()
		}
		if err != nil {
			return nil, withIndex(err, i)
		}
	}
	return msgs, nil
}

func (s *server) handlePublishBatch() http.HandlerFunc {
	type result struct {
		ID       string `json:"id"`
		Position int64  `json:"position"`
	}
	type answer struct {
		Results  []result `json:"results"`
		Position int64    `json:"position"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		data, err := s.readJSON(w, r, s.deps.MaxBatchBodyBytes, false)
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		msgs, err := batchMessages(data)
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		res, err := s.deps.Commands.PublishBatch(r.Context(), commands.PublishBatch{Queue: queueOf(r), Messages: msgs})
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		out := answer{Results: make([]result, 0, len(res.Results)), Position: s.commandPosition(res.Position)}
		for _, pr := range res.Results {
			out.Results = append(out.Results, result{ID: pr.ID, Position: pr.Position})
		}
		s.answerCommand(w, r, http.StatusCreated, out.Position, out)
	}
}

func (s *server) handleReceive() http.HandlerFunc {
	type body struct {
		MaxMessages         *int   `json:"max_messages"`
		VisibilityTimeoutMS *int64 `json:"visibility_timeout_ms"`
		WaitMS              *int64 `json:"wait_ms"`
		Consumer            string `json:"consumer"`
	}
	type answer struct {
		Messages []receivedView `json:"messages"`
		Position int64          `json:"position"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		var b body
		if err := s.decodeJSON(w, r, DefaultSmallBodyBytes, true, &b); err != nil {
			s.writeProblem(w, r, err)
			return
		}
		cmd := commands.Receive{Queue: queueOf(r), MaxMessages: 1, VisibilityTimeoutMS: b.VisibilityTimeoutMS, Consumer: b.Consumer}
		if b.MaxMessages != nil {
			if *b.MaxMessages < 1 || *b.MaxMessages > maxReceiveMessages {
				s.writeProblem(w, r, invalid("max_messages", "must be between 1 and "+strconv.Itoa(maxReceiveMessages)))
				return
			}
			cmd.MaxMessages = *b.MaxMessages
		}
		if b.WaitMS != nil {
			if *b.WaitMS < 0 || *b.WaitMS > maxWaitMS {
				s.writeProblem(w, r, invalid("wait_ms", "must be between 0 and "+strconv.Itoa(maxWaitMS)))
				return
			}
			cmd.WaitMS = *b.WaitMS
		}
		if err := checkPrintable("consumer", b.Consumer, maxConsumerLen); err != nil {
			s.writeProblem(w, r, err)
			return
		}
		// A long poll ends when the client goes away (the request context)
		// or when the server shuts down (Done): then it answers what it has.
		ctx, stop := s.untilShutdown(r.Context())
		defer stop()
		res, err := s.deps.Commands.Receive(ctx, cmd)
		if err != nil && s.shuttingDown() && r.Context().Err() == nil && errors.Is(err, context.Canceled) {
			res, err = commands.ReceiveResult{}, nil
		}
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		pos := s.commandPosition(res.Position)
		s.answerCommand(w, r, http.StatusOK, pos, answer{Messages: receivedFromCommand(res.Messages), Position: pos})
	}
}

// untilShutdown derives a context that also ends when Deps.Done closes.
func (s *server) untilShutdown(ctx context.Context) (context.Context, func()) {
	if s.deps.Done == nil {
		return ctx, func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-s.deps.Done:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

func (s *server) shuttingDown() bool {
	if s.deps.Done == nil {
		return false
	}
	select {
	case <-s.deps.Done:
		return true
	default:
		return false
	}
}

// checkPrintable bounds a free-text field that ends up in events and logs
// and refuses control characters in it.
func checkPrintable(field, v string, max int) error {
	if len(v) > max {
		return invalid(field, "at most "+strconv.Itoa(max)+" bytes")
	}
	for _, c := range v {
		if c < ' ' || c == 0x7f || c == '\uFFFD' {
			return invalid(field, "must be printable text")
		}
	}
	return nil
}

// checkReceipt refuses receipts that cannot be one: absent, empty or
// oversized.
func checkReceipt(field string, receipt *string) error {
	if receipt == nil || *receipt == "" {
		return invalid(field, "is required")
	}
	if len(*receipt) > maxReceiptLen {
		return invalid(field, "is not a receipt")
	}
	return nil
}

func (s *server) handleAck() http.HandlerFunc {
	type body struct {
		Receipt  *string  `json:"receipt"`
		Receipts []string `json:"receipts"`
	}
	type single struct {
		ID       string `json:"id"`
		Position int64  `json:"position"`
	}
	type item struct {
		Receipt string `json:"receipt"`
		OK      bool   `json:"ok"`
		Code    string `json:"code,omitempty"`
	}
	type batch struct {
		Results  []item `json:"results"`
		Position int64  `json:"position"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		var b body
		if err := s.decodeJSON(w, r, DefaultSmallBodyBytes, false, &b); err != nil {
			s.writeProblem(w, r, err)
			return
		}
		switch {
		case b.Receipt != nil && b.Receipts != nil:
			s.writeProblem(w, r, invalid("receipts", `give either "receipt" or "receipts", not both`))
		case b.Receipt != nil:
			if err := checkReceipt("receipt", b.Receipt); err != nil {
				s.writeProblem(w, r, err)
				return
			}
			res, err := s.deps.Commands.Ack(r.Context(), commands.Ack{Queue: queueOf(r), Receipt: *b.Receipt})
			if err != nil {
				s.writeProblem(w, r, err)
				return
			}
			pos := s.commandPosition(res.Position)
			s.answerCommand(w, r, http.StatusOK, pos, single{ID: res.ID, Position: pos})
		case b.Receipts != nil:
			if len(b.Receipts) == 0 || len(b.Receipts) > maxAckReceipts {
				s.writeProblem(w, r, invalid("receipts", "must hold 1 to "+strconv.Itoa(maxAckReceipts)+" receipts"))
				return
			}
			for i, rc := range b.Receipts {
				if err := checkReceipt("receipts["+strconv.Itoa(i)+"]", &rc); err != nil {
					s.writeProblem(w, r, err)
					return
				}
			}
			res, err := s.deps.Commands.AckBatch(r.Context(), commands.AckBatch{Queue: queueOf(r), Receipts: b.Receipts})
			if err != nil {
				s.writeProblem(w, r, err)
				return
			}
			out := batch{Results: make([]item, 0, len(res.Results)), Position: s.commandPosition(res.Position)}
			for _, it := range res.Results {
				out.Results = append(out.Results, item{Receipt: it.Receipt, OK: it.OK, Code: it.Code})
			}
			s.answerCommand(w, r, http.StatusOK, out.Position, out)
		default:
			s.writeProblem(w, r, invalid("receipt", `"receipt" or "receipts" is required`))
		}
	}
}

func (s *server) handleNack() http.HandlerFunc {
	type body struct {
		Receipt *string `json:"receipt"`
		DelayMS *int64  `json:"delay_ms"`
	}
	type answer struct {
		ID       string `json:"id"`
		Position int64  `json:"position"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		var b body
		if err := s.decodeJSON(w, r, DefaultSmallBodyBytes, false, &b); err != nil {
			s.writeProblem(w, r, err)
			return
		}
		if err := checkReceipt("receipt", b.Receipt); err != nil {
			s.writeProblem(w, r, err)
			return
		}
		cmd := commands.Nack{Queue: queueOf(r), Receipt: *b.Receipt}
		if b.DelayMS != nil {
			if *b.DelayMS < 0 {
				s.writeProblem(w, r, invalid("delay_ms", "must not be negative"))
				return
			}
			cmd.DelayMS = *b.DelayMS
		}
		res, err := s.deps.Commands.Nack(r.Context(), cmd)
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		pos := s.commandPosition(res.Position)
		s.answerCommand(w, r, http.StatusOK, pos, answer{ID: res.ID, Position: pos})
	}
}

func (s *server) handleExtend() http.HandlerFunc {
	type body struct {
		Receipt             *string `json:"receipt"`
		VisibilityTimeoutMS *int64  `json:"visibility_timeout_ms"`
	}
	type answer struct {
		ID             string   `json:"id"`
		LeaseExpiresAt jsonTime `json:"lease_expires_at"`
		Position       int64    `json:"position"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		var b body
		if err := s.decodeJSON(w, r, DefaultSmallBodyBytes, false, &b); err != nil {
			s.writeProblem(w, r, err)
			return
		}
		if err := checkReceipt("receipt", b.Receipt); err != nil {
			s.writeProblem(w, r, err)
			return
		}
		if b.VisibilityTimeoutMS == nil {
			s.writeProblem(w, r, invalid("visibility_timeout_ms", "is required"))
			return
		}
		res, err := s.deps.Commands.Extend(r.Context(), commands.Extend{Queue: queueOf(r), Receipt: *b.Receipt, VisibilityTimeoutMS: *b.VisibilityTimeoutMS})
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		pos := s.commandPosition(res.Position)
		s.answerCommand(w, r, http.StatusOK, pos, answer{ID: res.ID, LeaseExpiresAt: jsonTime(res.LeaseExpiresAt), Position: pos})
	}
}
