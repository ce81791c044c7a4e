package domain

import (
	"errors"
	"fmt"
)

// Kind classifies an error so that an edge (HTTP, CLI) can map it without
// knowing every error: one table from kind to status lives in transport.
type Kind string

// Error kinds.
const (
	KindInvalid  Kind = "invalid"   // the input breaks a rule: 400
	KindNotFound Kind = "not_found" // the thing named does not exist: 404
	KindConflict Kind = "conflict"  // the state forbids it: 409
	KindTooLarge Kind = "too_large" // a size limit: 413
)

// Error is a domain error: a kind, a stable machine-readable code (the
// `code` of API.md's problem documents), a human message and, for invalid
// input, the field at fault.
type Error struct {
	Kind    Kind
	Code    string
	Message string
	Field   string
}

func (e *Error) Error() string {
	if e.Field != "" {
		return e.Field + ": " + e.Message
	}
	return e.Message
}

// Is makes errors.Is(err, ErrQueueNotFound) true for any *Error with the same
// code, whatever its message.
func (e *Error) Is(target error) bool {
	var t *Error
	if !errors.As(target, &t) {
		return false
	}
	return t.Code == e.Code
}

// Sentinel errors; compare with errors.Is. Handlers usually return a copy
// with a more precise message (see the With* helpers).
var (
	ErrQueueNotFound    = &Error{Kind: KindNotFound, Code: "queue_not_found", Message: "queue not found"}
	ErrMessageNotFound  = &Error{Kind: KindNotFound, Code: "message_not_found", Message: "message not found"}
	ErrReceiptNotFound  = &Error{Kind: KindNotFound, Code: "receipt_not_found", Message: "receipt not found"}
	ErrQueueExists      = &Error{Kind: KindConflict, Code: "queue_exists", Message: "queue exists with different attributes"}
	ErrLeaseMismatch    = &Error{Kind: KindConflict, Code: "lease_mismatch", Message: "the lease of this receipt expired or was replaced"}
	ErrConflict         = &Error{Kind: KindConflict, Code: "conflict", Message: "conflict"}
	ErrPayloadTooLarge  = &Error{Kind: KindTooLarge, Code: "payload_too_large", Message: "message body exceeds max_message_bytes"}
	ErrInvalidArgument  = &Error{Kind: KindInvalid, Code: "invalid_argument", Message: "invalid argument"}
	errUnknownEventType = errors.New("unknown event type")
)

// Invalid returns an invalid_argument error naming the field.
func Invalid(field, format string, args ...any) *Error {
	return &Error{Kind: KindInvalid, Code: ErrInvalidArgument.Code, Field: field, Message: fmt.Sprintf(format, args...)}
}

// WithMessage returns a copy of a sentinel with a more precise message; it
// still matches the sentinel under errors.Is.
func WithMessage(sentinel *Error, format string, args ...any) *Error {
	c := *sentinel
	c.Message = fmt.Sprintf(format, args...)
	return &c
}

// ErrUnknownEventType is returned when decoding an event type name the
// catalogue does not know.
var ErrUnknownEventType = errUnknownEventType
