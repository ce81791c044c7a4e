package walbuf

/*
#include "walbuf.h"
*/
import "C"

import (
	"fmt"
	"sync"

	// The SQLite library the shim wraps and registers with.
	_ "github.com/mattn/go-sqlite3"
)

// Name is the VFS to open a connection with (the "vfs" URI parameter) for
// its WAL writes to be gathered.
const Name = "ledgerq-walbuf"

// Capacity is the most a WAL file holds before it hands its bytes over:
// 256 frames of 4 KiB pages. A commit larger than that is written in
// pieces of this size.
const Capacity = 256 * (4096 + 24)

var (
	once   sync.Once
	regErr error
	cname  = C.CString(Name) // kept for the life of the process: SQLite keeps the pointer
)

// Register makes the VFS known to SQLite (once; later calls return the first
// call's result). Connections opened before it cannot use it.
func Register() error {
	once.Do(func() {
		if rc := C.lq_walbuf_register(cname, C.int(Capacity)); rc != 0 {
			regErr = fmt.Errorf("walbuf: registering the %s VFS failed (SQLite code %d)", Name, int(rc))
		}
	})
	return regErr
}

// Stats counts what every WAL file opened through the VFS did since the
// process started.
type Stats struct {
	Held         int64 // writes held in a buffer
	Flushes      int64 // writes that handed held bytes to the file
	FlushedBytes int64
	Direct       int64 // writes passed straight through
}

// ReadStats returns the counters.
func ReadStats() Stats {
	return Stats{
		Held:         int64(C.lq_walbuf_stat(0)),
		Flushes:      int64(C.lq_walbuf_stat(1)),
		FlushedBytes: int64(C.lq_walbuf_stat(2)),
		Direct:       int64(C.lq_walbuf_stat(3)),
	}
}
