package limits

import (
	"os"
	"syscall"
)

// datasync is fdatasync(2): what SQLite calls on Linux to make a commit
// durable.
func datasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
