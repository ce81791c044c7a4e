package limits

import (
	"context"
	"fmt"
	"os"
	"time"
)

const (
	// syncBlock is one SQLite page: the smallest write a WAL commit makes.
	syncBlock = 4096
	// syncFileBytes is the preallocated file the blocks cycle through, so
	// every sync flushes data only (the file size never changes), the
	// cheapest durable write the file system offers.
	syncFileBytes = 16 << 20
)

// Fdatasync measures how many durable 4 KiB writes per second the file
// system under dir takes: it preallocates a file, then overwrites one block
// at a time and fdatasyncs after each, for d (or until ctx ends). The file
// is removed afterwards. A group-committing store needs far fewer syncs than
// appends; this rate is the ceiling of a store that syncs once per append.
func Fdatasync(ctx context.Context, dir string, d time.Duration) (Result, error) {
	f, err := os.CreateTemp(dir, "fdatasync-*.bin")
	if err != nil {
		return Result{}, fmt.Errorf("limits: fdatasync file: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	block := make([]byte, syncBlock)
	for i := range block {
		block[i] = byte(i)
	}
	for off := int64(0); off < syncFileBytes; off += syncBlock {
		if _, err := f.WriteAt(block, off); err != nil {
			return Result{}, fmt.Errorf("limits: preallocate: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		return Result{}, fmt.Errorf("limits: fsync: %w", err)
	}
	var n int64
	start := time.Now()
	deadline := start.Add(d)
	for off := int64(0); ; off = (off + syncBlock) % syncFileBytes {
		if _, err := f.WriteAt(block, off); err != nil {
			return Result{}, fmt.Errorf("limits: write: %w", err)
		}
		if err := datasync(f); err != nil {
			return Result{}, fmt.Errorf("limits: fdatasync: %w", err)
		}
		n++
		if n%16 == 0 && (time.Now().After(deadline) || ctx.Err() != nil) {
			break
		}
	}
	return Result{Ops: n, Elapsed: time.Since(start)}, ctx.Err()
}
