// Package eventstore is ledgerq's source of truth: an append-only SQLite log
// (WAL) of domain events with a global position, per-stream versions for
// optimistic concurrency, group commit for durable throughput, and a SHA-256
// hash chain that makes tampering evident.
//
// Writes: Submit queues an AppendRequest and returns a Pending at once;
// Append is Submit followed by Wait. One writer goroutine applies queued
// requests in order, many per transaction (group commit), and answers each
// only after the COMMIT was fsync'd, so a returned append survives kill -9
// and power loss. Expected versions are checked against stream heads kept in
// memory; a stale one fails that request alone with a *ConflictError.
//
// Reads use a separate read-only connection pool in short, paged statements:
// ReadStream and ReadAll (replay, upcasted through Options.Upcasters), Scan
// (filters, stored bytes, for audit), ReadPositions and PositionAt. Verify
// and VerifyFile walk the hash chain; the encoding is documented in hash.go
// and docs/hash-chain.md.
//
// The storetest package holds the contract suite every Store must pass.
package eventstore
