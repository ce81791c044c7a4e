package projections

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWritingBack starts the writeback of every dirty page of f and returns
// without waiting for those writes (sync_file_range(2); offset 0 and length 0
// mean the whole file). It first waits for the writes it started last time
// (SYNC_FILE_RANGE_WAIT_BEFORE): a WAL frame is 24 bytes longer than a page,
// so a commit often dirties again the page the previous writeback is still
// writing, and SYNC_FILE_RANGE_WRITE alone skips pages under write-out.
func startWritingBack(f *os.File) error {
	return unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE)
}
