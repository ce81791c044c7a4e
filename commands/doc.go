// Package commands is ledgerq's write side: one handler per command. Each
// loads the queue's in-memory state, lets the domain decide, and appends the
// resulting events to the event store with the expected stream version; a
// successful return means the events are on disk. A scheduler turns lease
// deadlines, retention and dead-lettering into events through the same path.
package commands
