package eventstore

// Test hooks, compiled only into this package's tests.

// ExecWriter runs q on the writer connection, between batches (the pool of
// one connection serialises it with the writer goroutine). Tests use it to
// shrink PRAGMA max_page_count and make the disk look full.
func ExecWriter(s *Store, q string) error {
	_, err := s.wdb.Exec(q)
	return err
}

// QueryWriterInt runs a query returning one integer on the writer connection.
func QueryWriterInt(s *Store, q string) (int64, error) {
	var n int64
	err := s.wdb.QueryRow(q).Scan(&n)
	return n, err
}

// SetSyncHook makes fn run before each fdatasync of the WAL; an error from
// it counts as a failed fdatasync. nil removes it.
func SetSyncHook(s *Store, fn func() error) {
	if fn == nil {
		s.syncHook.Store(nil)
		return
	}
	s.syncHook.Store(&fn)
}
