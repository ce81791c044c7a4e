// Package evidence holds the tests that use the event log as evidence,
// through the real binary: a database written in an older event schema
// replays, serves and verifies like one written today; replaying the log to
// its head gives the live read models and the live command state; and, with
// LEDGERQ_FIGURES=1, how fast a 1,000,000-event log replays, verifies and
// answers point-in-time queries.
//
// Snapshots play no part in any of it: the command side rebuilds its state
// from the whole log at start-up (commands/replay.go), and point-in-time
// state is folded from position 1 every time (projections.StateAt), so no
// stored snapshot can change a result.
package evidence
