// Package oldlog writes event logs the way an earlier ledgerq wrote them, so
// that tests can prove a database from before a schema change still replays
// to the state the current code would have recorded.
//
// Write records one small queue history, the same in every shape, through
// eventstore.Open and Append (no upcasters: the bytes land exactly as given).
// Only the encoding of MessageLeased differs between shapes: version 1 gave
// the lease as visibility_timeout_ms from leased_at, version 2 records
// lease_expires_at. Everything else, including recorded times, is identical,
// so two logs written from the same base time differ only in those payloads
// and in the hashes that cover them.
package oldlog
