package domain

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Rebuilding the command state reads every event of the log, and most of
// a large log is message bodies the state does not keep. encoding/json
// validates and walks every byte of a payload before decoding it; this
// decoder instead picks the few members Queue.apply reads out of the flat
// event objects and jumps over the rest (a 1 KiB body costs one IndexByte).
// It does not validate: payloads in the log were valid JSON when appended
// (the store refuses anything else) and the hash chain makes later changes
// evident. Anything it does not understand is handed to encoding/json.
//
// The events it builds carry only what apply needs: they are for replay,
// never for display.

var errLean = errors.New("lean decode: unexpected input")

// DecodeForReplay decodes what replay needs of a logged event: every
// member that the command state and the stats reducers read, without the
// body and headers. Use DecodeEvent for anything shown to people.
func DecodeForReplay(eventType string, data []byte) (Event, error) {
	ev, err := leanDecode(eventType, data)
	if errors.Is(err, errLean) {
		return DecodeEvent(eventType, data)
	}
	return ev, err
}

// leanEvent gathers the members of interest of one event object.
type leanEvent struct {
	queue, messageID, receiptHash, dedupID string
	at1, at2, at3                          time.Time
	count                                  int64
	origin                                 *Origin
}

func leanDecode(eventType string, data []byte) (Event, error) {
	var l leanEvent
	// at1…at3 are the event's times in the order each type lists them
	// below; count is its one number.
	var times [3]string
	switch eventType {
	case TypeMessagePublished:
		times = [3]string{"published_at", "available_at", "expires_at"}
	case TypeMessageLeased:
		times = [3]string{"lease_expires_at"}
	case TypeMessageLeaseExtended:
		times = [3]string{"lease_expires_at"}
	case TypeMessageReleased:
		times = [3]string{"available_at"}
	case TypeMessageLeaseExpired:
		times = [3]string{"expired_at"}
	case TypeMessageAcked, TypeMessageDeadLettered, TypeMessageExpired, TypeMessageRedriven:
	default:
		// Queue events are rare and carry nested attributes.
		return nil, errLean
	}
	err := scanObject(data, func(key, val []byte) error {
		var err error
		switch string(key) {
		case "queue":
			l.queue, err = leanString(val)
		case "message_id":
			l.messageID, err = leanString(val)
		case "receipt_hash":
			l.receiptHash, err = leanString(val)
		case "dedup_id":
			l.dedupID, err = leanString(val)
		case "receive_count":
			l.count, err = strconv.ParseInt(string(val), 10, 64)
		case "origin":
			if !bytes.Equal(val, []byte("null")) {
				l.origin = new(Origin)
				err = json.Unmarshal(val, l.origin)
			}
		case times[0]:
			l.at1, err = leanTime(val)
		case times[1]:
			l.at2, err = leanTime(val)
		case times[2]:
			l.at3, err = leanTime(val)
		}
		if err != nil && !errors.Is(err, errLean) {
			err = fmt.Errorf("%w: %w", errLean, err)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	switch eventType {
	case TypeMessagePublished:
		return MessagePublished{Queue: l.queue, MessageID: l.messageID, PublishedAt: l.at1, AvailableAt: l.at2, ExpiresAt: l.at3, DedupID: l.dedupID, Origin: l.origin}, nil
	case TypeMessageLeased:
		return MessageLeased{Queue: l.queue, MessageID: l.messageID, ReceiptHash: l.receiptHash, LeaseExpiresAt: l.at1, ReceiveCount: int(l.count)}, nil
	case TypeMessageLeaseExtended:
		return MessageLeaseExtended{Queue: l.queue, MessageID: l.messageID, ReceiptHash: l.receiptHash, LeaseExpiresAt: l.at1}, nil
	case TypeMessageAcked:
		return MessageAcked{Queue: l.queue, MessageID: l.messageID, ReceiptHash: l.receiptHash}, nil
	case TypeMessageReleased:
		return MessageReleased{Queue: l.queue, MessageID: l.messageID, ReceiptHash: l.receiptHash, AvailableAt: l.at1}, nil
	case TypeMessageLeaseExpired:
		return MessageLeaseExpired{Queue: l.queue, MessageID: l.messageID, ReceiptHash: l.receiptHash, ExpiredAt: l.at1}, nil
	case TypeMessageDeadLettered:
		return MessageDeadLettered{Queue: l.queue, MessageID: l.messageID, ReceiveCount: int(l.count)}, nil
	case TypeMessageExpired:
		return MessageExpired{Queue: l.queue, MessageID: l.messageID}, nil
	default: // TypeMessageRedriven
		return MessageRedriven{Queue: l.queue, MessageID: l.messageID}, nil
	}
}

// scanObject calls fn with each member of a JSON object: the key (without
// quotes, escapes not decoded) and the raw value.
func scanObject(data []byte, fn func(key, val []byte) error) error {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return errLean
	}
	i++
	for {
		i = skipSpace(data, i)
		if i < len(data) && data[i] == '}' {
			return nil
		}
		if i >= len(data) || data[i] != '"' {
			return errLean
		}
		end, esc := stringEnd(data, i)
		if end < 0 || esc {
			return errLean
		}
		key := data[i+1 : end-1]
		i = skipSpace(data, end)
		if i >= len(data) || data[i] != ':' {
			return errLean
		}
		i = skipSpace(data, i+1)
		vend := valueEnd(data, i)
		if vend < 0 {
			return errLean
		}
		if err := fn(key, data[i:vend]); err != nil {
			return err
		}
		i = skipSpace(data, vend)
		if i >= len(data) {
			return errLean
		}
		switch data[i] {
		case ',':
			i++
		case '}':
			return nil
		default:
			return errLean
		}
	}
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\n' || data[i] == '\t' || data[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index after the string starting at data[i] == '"',
// and whether it contains escapes; -1 if it does not end.
func stringEnd(data []byte, i int) (int, bool) {
	esc := false
	j := i + 1
	for {
		k := bytes.IndexAny(data[j:], `"\`)
		if k < 0 {
			return -1, false
		}
		j += k
		if data[j] == '"' {
			return j + 1, esc
		}
		esc = true
		j += 2 // the backslash and the character it escapes
		if j > len(data) {
			return -1, false
		}
	}
}

// valueEnd returns the index after the JSON value starting at data[i].
func valueEnd(data []byte, i int) int {
	if i >= len(data) {
		return -1
	}
	switch data[i] {
	case '"':
		end, _ := stringEnd(data, i)
		return end
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch data[j] {
			case '"':
				end, _ := stringEnd(data, j)
				if end < 0 {
					return -1
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	default: // number, true, false, null
		j := i
		for j < len(data) && data[j] != ',' && data[j] != '}' && data[j] != ']' && data[j] != ' ' && data[j] != '\n' && data[j] != '\t' && data[j] != '\r' {
			j++
		}
		if j == i {
			return -1
		}
		return j
	}
}

// leanString decodes a JSON string value; escaped ones go through
// encoding/json.
func leanString(val []byte) (string, error) {
	if len(val) < 2 || val[0] != '"' || val[len(val)-1] != '"' {
		return "", errLean
	}
	inner := val[1 : len(val)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner), nil
	}
	var s string
	if err := json.Unmarshal(val, &s); err != nil {
		return "", fmt.Errorf("%w: %w", errLean, err)
	}
	return s, nil
}

func leanTime(val []byte) (time.Time, error) {
	s, err := leanString(val)
	if err != nil {
		return time.Time{}, err
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %w", errLean, err)
	}
	return t, nil
}
