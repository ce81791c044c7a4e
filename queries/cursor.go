package queries

import (
	"encoding/base64"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/ledgerq/ledgerq/domain"
)

// Cursors are opaque to clients: base64url of a kind tag and the last key
// returned. The tag keeps a queue cursor from being accepted by a message
// listing (and vice versa) and leaves room for a new format later.
const (
	queueCursorTag   = "q1:"
	messageCursorTag = "m1:"
)

func encodeCursor(tag, key string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(tag + key))
}

func decodeCursor(tag, cursor string) (string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return "", domain.Invalid("cursor", "malformed cursor")
	}
	s := string(raw)
	if !utf8.ValidString(s) || !strings.HasPrefix(s, tag) || len(s) == len(tag) {
		return "", domain.Invalid("cursor", "malformed cursor")
	}
	return s[len(tag):], nil
}

func encodeQueueCursor(lastName string) string { return encodeCursor(queueCursorTag, lastName) }

func decodeQueueCursor(cursor string) (string, error) {
	if cursor == "" {
		return "", nil
	}
	return decodeCursor(queueCursorTag, cursor)
}

func encodeMessageCursor(lastPosition int64) string {
	return encodeCursor(messageCursorTag, strconv.FormatInt(lastPosition, 10))
}

func decodeMessageCursor(cursor string) (int64, error) {
	if cursor == "" {
		return 0, nil
	}
	key, err := decodeCursor(messageCursorTag, cursor)
	if err != nil {
		return 0, err
	}
	p, err := strconv.ParseInt(key, 10, 64)
	if err != nil || p <= 0 {
		return 0, domain.Invalid("cursor", "malformed cursor")
	}
	return p, nil
}
