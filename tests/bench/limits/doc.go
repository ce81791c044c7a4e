// Package limits holds the small programs that measure what this machine can
// do at best for each thing ledgerq does, so that `ledgerq bench --compare`
// can put ledgerq's figures next to a ceiling measured in the same run:
//
//   - an HTTP handler that decodes the publish JSON and verifies the same
//     HS256 JWT, and does nothing else (NewHTTPHandler); the same handler
//     also fans one SSE frame per publish out to the queue's subscribers
//     from memory, for the SSE row;
//   - raw SQLite inserts into ledgerq's events schema with the same payload,
//     batch size and stream mix, WAL and synchronous=FULL (SQLiteInsert);
//   - the fdatasync rate of the data directory (Fdatasync);
//   - raw go-redis XADD and XREADGROUP+XACK in batches (RedisStreams);
//   - an ordered scan of the events table that decodes every row into the
//     domain event types (ScanDecode).
//
// Each one does the least work that produces the same bytes or the same
// answer, so that "ledgerq reaches 0.4 × L" means something.
package limits
