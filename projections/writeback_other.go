//go:build !linux

package projections

import (
	"errors"
	"os"
)

// startWritingBack: only Linux has sync_file_range(2). Elsewhere the WAL's
// pages reach the disk when the checkpointer syncs them.
func startWritingBack(*os.File) error { return errors.ErrUnsupported }
