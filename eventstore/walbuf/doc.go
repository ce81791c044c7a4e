// Package walbuf registers a SQLite VFS shim, "ledgerq-walbuf", that gathers
// the frames a connection appends to its WAL and hands them to the file in
// one write per commit.
//
// SQLite writes each WAL frame with two calls of its VFS's xWrite, one for
// the 24-byte frame header and one for the page, so a commit of n pages is
// 2n pwrite(2) calls. On the paravirtualised hosts ledgerq is measured on a
// system call is expensive (the guest pays for re-enabling interrupts on
// every return), and the log's writer and the read model's writer made ~9
// pwrites per published message between them. Through the shim they make
// ~1.2: at a fixed 3,500 publishes/s the server spent 4-7 % less CPU per
// publish (docs/performance.md).
//
// Only the two writer connections open their files through it; readers,
// checkpointers and the audit tools use SQLite's default VFS and read the
// same files. Every file but a WAL is the default VFS's own file, with
// nothing in between. For a WAL the rules are:
//
//   - A write is held in the file's buffer only when it continues the
//     buffer, or when it is the header of a frame without the commit mark
//     (the start of a run of frames). Anything else (the WAL header, a page
//     overwritten in place, the checksums SQLite rewrites after a spill, a
//     commit frame that starts a run) first hands over what is held and
//     then goes straight to the file.
//   - Once the held bytes include a whole commit frame (the header with the
//     commit mark and its page), they are handed over before xWrite
//     returns. SQLite publishes a commit in the wal-index (where other
//     connections find it) only after its last frame's xWrite returned, so
//     no reader ever looks for a frame that is still held, and a write
//     error fails the COMMIT that caused it, as without the shim.
//   - Every other operation on the WAL (read, sync, truncate, size, file
//     control, close) hands over what is held first, so to SQLite the file
//     always looks as if nothing were held. The log's syncer, which
//     fdatasyncs the WAL from a descriptor of its own after a COMMIT
//     returned, finds every frame of that commit in the file.
//
// The base VFS's xWrite takes at most 128 KiB at a time (the unix VFS masks
// the length with 0x1ffff), so a buffer is handed over in pieces of 31
// pages. A buffer holds at most Capacity bytes.
package walbuf
