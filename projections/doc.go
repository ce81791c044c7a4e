// Package projections builds ledgerq's read models from the event log. The
// Engine consumes packs of events from the bus (watermill), applies each pack
// to every projection in one SQLite transaction together with each
// projection's checkpoint, skips what it has already applied, fills gaps
// from a Source (the event store, or Redis on a query node) before going on,
// and tells the SSE hub what changed once the transaction committed. Any
// projection can be dropped and rebuilt from position 0 through the same
// code path.
//
// QueueState is the same story told in memory: a pure reducer over events
// that the audit's point-in-time state (StateAt) and the tests use as the
// reference the SQLite read models must agree with.
package projections
