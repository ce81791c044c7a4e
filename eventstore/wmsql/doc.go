// Package wmsql adapts watermill-sql/v3 to SQLite (mattn/go-sqlite3).
//
// watermill-sql's Subscriber keeps one transaction open from the SELECT of a
// batch until the offset of its last acked message is written, and the
// handler runs inside it. MySQL and PostgreSQL lock one offsets row for that;
// SQLite has one write lock per database file. Written naively, a subscriber
// either holds the event log's write lock while a handler runs (every append
// waits) or reads first and upgrades to a writer at ack time (SQLITE_BUSY as
// soon as anyone else committed, so batches are redelivered under load).
//
// This package splits the two roles over two files. Offsets live in their
// own database file, ATTACHed to every subscriber connection under a schema
// name (Open, Config.OffsetsSchema). A subscriber transaction reads the
// topic tables of the main file from a WAL snapshot and writes only the
// offsets file, so it never contends with the main file's writers (the
// event store's appends). Two locking modes decide what happens among the
// subscriptions sharing one offsets file:
//
//   - Config.Exclusive: each transaction takes the offsets file's write lock
//     at BEGIN (DB.BeginTx), as FOR UPDATE does on MySQL. A batch goes to one
//     subscriber of a group at a time and its ack cannot fail: exactly-once
//     per group. All subscriptions on the file take turns, so use one
//     subscription per offsets file. The relay runs this way.
//   - default: the offsets are read in the snapshot and written at ack time.
//     An ack fails with SQLITE_BUSY when another subscription committed to
//     the offsets file meanwhile; the batch is redelivered: at-least-once,
//     with any number of topics and groups per file.
//
// SchemaAdapter and OffsetsAdapter are the watermill-sql adapters; the
// BackoffManager retries "database is locked" at once and, when a poll found
// nothing, waits for a wake-up signal (the event store's Watch) instead of a
// fixed poll interval. They are proven with watermill's own pub/sub test
// suite (tests.TestPubSub) in this package's tests.
package wmsql
