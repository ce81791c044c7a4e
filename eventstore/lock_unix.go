//go:build unix

package eventstore

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// fileLock is an advisory lock on "<db>.lock" held while a Store is open.
// The in-memory stream heads and head position are only right while this
// Store is the file's only writer; a second ledgerq process on the same data
// directory would assign the same positions. The lock lives in its own file
// because opening and closing the database file itself would drop SQLite's
// POSIX locks on it.
type fileLock struct{ f *os.File }

func lockFile(dbPath string) (*fileLock, error) {
	name := dbPath + ".lock"
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s is open in another store (lock %s held)", dbPath, name)
		}
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	return &fileLock{f: f}, nil
}

// release drops the lock; the kernel also drops it when the process dies.
func (l *fileLock) release() error { return l.f.Close() }
