//go:build !linux

package eventstore

import "os"

// datasync falls back to File.Sync where fdatasync(2) is missing (on macOS
// it asks for F_FULLFSYNC, as SQLite's own fullfsync would).
func datasync(f *os.File) error { return f.Sync() }
