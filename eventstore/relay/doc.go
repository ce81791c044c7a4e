// Package relay carries the event log to the read side.
//
// The Relay reads the event store's events table in global-position order
// through watermill-sql/v3's Subscriber (with the SQLite adapters of
// eventstore/wmsql, its offset in a file of its own) and publishes to the
// Bus: Redis Streams through watermill-redisstream, or an in-process
// gochannel when no Redis is configured. Consecutive events travel packed,
// up to 1,024 (and 1 MiB) per message (EncodePack, DecodePack), because
// Redis Streams consumers read and acknowledge one entry per round trip and
// would otherwise fall behind the event store's group commit, and because
// the read model applies a pack in one transaction: over many queues a
// larger pack shares the index pages each commit writes, which is what lets
// a lagging read side catch up.
//
// Delivery is at-least-once and in position order: a crash between a
// publish and the offset commit publishes that pack again, and after Redis
// lost data the relay publishes again from what Redis still has. Consumers
// are idempotent by position (the projections skip positions they have
// applied). When Redis is down the relay retries with a bounded backoff and
// never skips; appends never wait for it.
package relay
