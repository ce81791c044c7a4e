//go:build !unix

package eventstore

// fileLock is a no-op where flock is unavailable: one Store per file is then
// the caller's responsibility.
type fileLock struct{}

func lockFile(string) (*fileLock, error) { return &fileLock{}, nil }

func (*fileLock) release() error { return nil }
