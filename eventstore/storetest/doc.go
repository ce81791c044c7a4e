// Package storetest is the contract suite of the event store: Run checks a
// Store built by the caller's open function against everything commands,
// projections and the audit routes rely on (round trips, typed conflicts,
// atomic multi-stream appends, pipelined submits, gap-free positions under
// concurrency, filtered reads, reopening, Verify). It uses real files in
// t.TempDir(), never fakes.
package storetest
