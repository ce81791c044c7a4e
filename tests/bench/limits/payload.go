package limits

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/ledgerq/ledgerq/domain"
)

// BodyBytes is the message body size every ledgerq and peer benchmark uses.
const BodyBytes = 200

// Body returns a printable ASCII body of n bytes that needs no JSON escaping,
// so the body on the wire and in the log have the same size.
func Body(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[(i*7+3)%len(alphabet)]
	}
	return string(b)
}

// PublishedData is the JSON payload of the MessagePublished event ledgerq
// stores for a message with this body, so raw-store limits write rows of the
// same size and shape.
func PublishedData(queue, messageID, body string, at time.Time) ([]byte, error) {
	at = at.UTC().Truncate(time.Millisecond)
	b, err := json.Marshal(domain.MessagePublished{
		Queue:        queue,
		MessageID:    messageID,
		Body:         body,
		BodyEncoding: domain.EncodingUTF8,
		BodySize:     int64(len(body)),
		PublishedAt:  at,
		AvailableAt:  at,
		ExpiresAt:    at.Add(4 * 24 * time.Hour),
	})
	if err != nil {
		return nil, fmt.Errorf("limits: encode MessagePublished: %w", err)
	}
	return b, nil
}
