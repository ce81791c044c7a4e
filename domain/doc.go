// Package domain holds ledgerq's Queue aggregate and the message lifecycle:
// value types, the rules of API.md, and the event catalogue. Commands are
// methods that check invariants and return events; state changes only by
// applying events. It imports the standard library only: time, ids and
// receipts come in as arguments, so every decision can be replayed.
package domain
