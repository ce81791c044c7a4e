// Package eventstore is ledgerq's source of truth: an append-only SQLite log
// (WAL) of domain events with a global position, per-stream versions for
// optimistic concurrency, group commit for durable throughput, and a SHA-256
// hash chain that makes tampering evident.
package eventstore
