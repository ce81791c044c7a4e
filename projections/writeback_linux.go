package projections

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWritingBack starts the writeback of every dirty page of f and returns
// without waiting for the writes (sync_file_range(2) with only
// SYNC_FILE_RANGE_WRITE; offset 0 and length 0 mean the whole file).
func startWritingBack(f *os.File) error {
	return unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
}
