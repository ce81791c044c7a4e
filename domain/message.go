package domain

import (
	"encoding/base64"
	"strconv"
	"time"
	"unicode/utf8"
)

// Limits on what a producer may attach to a message.
const (
	MaxHeaders          = 32
	MaxHeaderKeyBytes   = 128
	MaxHeaderValueBytes = 4096
	MaxContentTypeBytes = 256
	MaxDedupIDLen       = 128
	MaxConsumerBytes    = 128
	MaxBatchMessages    = 100
	MaxReceiveMessages  = 100
	DedupWindow         = 5 * time.Minute
	dedupWindowMS       = int64(DedupWindow / time.Millisecond)
)

// NewMessage is a message a producer wants to publish. ID is chosen by the
// caller (a ULID); the rest is the producer's input, validated here.
type NewMessage struct {
	ID           string
	Body         string
	BodyEncoding string // EncodingUTF8 (default when "") or EncodingBase64
	ContentType  string
	Headers      map[string]string
	DelayMS      *int64 // nil: the queue's delay_ms
	DedupID      string
}

// Content is what a message carries, copied as is when it is dead-lettered
// or redriven. It is read from the message's MessagePublished event.
type Content struct {
	Body         string
	BodyEncoding string
	BodySize     int64
	ContentType  string
	Headers      map[string]string
}

// ContentOf returns the content of a published message.
func ContentOf(e MessagePublished) Content {
	return Content{
		Body:         e.Body,
		BodyEncoding: e.BodyEncoding,
		BodySize:     e.BodySize,
		ContentType:  e.ContentType,
		Headers:      e.Headers,
	}
}

// validateMessage checks m against the queue's attributes and returns the
// decoded body size and the effective encoding. prefix is "" for a single
// publish and "messages[i]." in a batch, so that the field names the entry.
func validateMessage(prefix string, m NewMessage, a Attributes) (size int64, enc string, err *Error) {
	field := func(f string) string { return prefix + f }
	if _, ok := parseMessageID(m.ID); !ok {
		return 0, "", Invalid(field("id"), "%q is not a message id", m.ID)
	}
	enc = m.BodyEncoding
	switch enc {
	case "", EncodingUTF8:
		enc = EncodingUTF8
		if !utf8.ValidString(m.Body) {
			return 0, "", Invalid(field("body"), "is not valid UTF-8; send binary data with body_encoding base64")
		}
		size = int64(len(m.Body))
	case EncodingBase64:
		n, derr := base64.StdEncoding.DecodeString(m.Body)
		if derr != nil {
			return 0, "", Invalid(field("body"), "is not valid base64 (RFC 4648 standard alphabet, padded)")
		}
		size = int64(len(n))
	default:
		return 0, "", Invalid(field("body_encoding"), "must be %q or %q, got %q", EncodingUTF8, EncodingBase64, m.BodyEncoding)
	}
	if size > a.MaxMessageBytes {
		e := WithMessage(ErrPayloadTooLarge, "body is %d bytes; this queue's max_message_bytes is %d", size, a.MaxMessageBytes)
		e.Field = field("body")
		return 0, "", e
	}
	if len(m.ContentType) > MaxContentTypeBytes {
		return 0, "", Invalid(field("content_type"), "must be at most %d bytes", MaxContentTypeBytes)
	}
	if !printable(m.ContentType) {
		return 0, "", Invalid(field("content_type"), "must not contain control characters")
	}
	if len(m.Headers) > MaxHeaders {
		return 0, "", Invalid(field("headers"), "at most %d headers, got %d", MaxHeaders, len(m.Headers))
	}
	for k, v := range m.Headers {
		hf := field("headers[" + strconv.Quote(k) + "]")
		if k == "" || len(k) > MaxHeaderKeyBytes {
			return 0, "", Invalid(hf, "header names must be 1…%d bytes", MaxHeaderKeyBytes)
		}
		if !printable(k) || containsSpace(k) {
			return 0, "", Invalid(hf, "header names must be printable and contain no spaces")
		}
		if len(v) > MaxHeaderValueBytes {
			return 0, "", Invalid(hf, "header values must be at most %d bytes", MaxHeaderValueBytes)
		}
		if !printable(v) {
			return 0, "", Invalid(hf, "header values must be valid UTF-8 without control characters")
		}
	}
	if m.DelayMS != nil {
		if err := inRange(field("delay_ms"), *m.DelayMS, 0, MaxDelayMS); err != nil {
			return 0, "", err
		}
	}
	if utf8.RuneCountInString(m.DedupID) > MaxDedupIDLen {
		return 0, "", Invalid(field("dedup_id"), "must be at most %d characters", MaxDedupIDLen)
	}
	if !printable(m.DedupID) {
		return 0, "", Invalid(field("dedup_id"), "must be valid UTF-8 without control characters")
	}
	return size, enc, nil
}

// printable reports whether s is valid UTF-8 without control characters
// (tab excepted): such characters in headers and ids end up in logs and
// terminals, where they can forge lines.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 && r != '\t' || r >= 0x7f && r < 0xa0 {
			return false
		}
	}
	return true
}

func containsSpace(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' || s[i] == '\t' {
			return true
		}
	}
	return false
}

// validateConsumer checks a consumer name given on receive.
func validateConsumer(c string) *Error {
	if len(c) > MaxConsumerBytes {
		return Invalid("consumer", "must be at most %d bytes", MaxConsumerBytes)
	}
	if !printable(c) {
		return Invalid("consumer", "must be valid UTF-8 without control characters")
	}
	return nil
}
