package domain

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
)

// ReceiptNonceSize is the size of the random part of a receipt. 128 random
// bits make a receipt unguessable even to someone who knows the message id.
const ReceiptNonceSize = 16

// A receipt is base64url (unpadded) of the 16 message-id bytes followed by
// a nonce the caller draws from a cryptographic source. The id part lets a
// handler find the message without any receipt index; the nonce is what
// proves the lease. Only the SHA-256 of the receipt reaches the log, so the
// log cannot be used to forge acks.
const receiptRawLen = idLen + ReceiptNonceSize

// NewReceipt builds the receipt of a lease of message id with nonce.
func NewReceipt(id string, nonce [ReceiptNonceSize]byte) (string, error) {
	mid, ok := parseMessageID(id)
	if !ok {
		return "", Invalid("message_id", "%q is not a message id", id)
	}
	return newReceipt(mid, nonce), nil
}

func newReceipt(id messageID, nonce [ReceiptNonceSize]byte) string {
	var raw [receiptRawLen]byte
	copy(raw[:idLen], id[:])
	copy(raw[idLen:], nonce[:])
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

// ReceiptMessageID returns the message id a well-formed receipt names.
func ReceiptMessageID(receipt string) (string, bool) {
	id, ok := parseReceipt(receipt)
	if !ok {
		return "", false
	}
	return id.String(), true
}

func parseReceipt(receipt string) (messageID, bool) {
	var id messageID
	if len(receipt) != base64.RawURLEncoding.EncodedLen(receiptRawLen) {
		return id, false
	}
	var raw [receiptRawLen]byte
	n, err := base64.RawURLEncoding.Decode(raw[:], []byte(receipt))
	if err != nil || n != receiptRawLen {
		return id, false
	}
	copy(id[:], raw[:idLen])
	return id, true
}

// ReceiptHash is the hex SHA-256 of a receipt, the form stored in events.
func ReceiptHash(receipt string) string {
	h := receiptDigest(receipt)
	return hex.EncodeToString(h[:])
}

func receiptDigest(receipt string) [sha256.Size]byte {
	return sha256.Sum256([]byte(receipt))
}

func parseReceiptHash(s string) ([sha256.Size]byte, bool) {
	var h [sha256.Size]byte
	if len(s) != hex.EncodedLen(sha256.Size) {
		return h, false
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, false
	}
	return h, true
}
