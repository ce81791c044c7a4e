package eventstore_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/ledgerq/ledgerq/eventstore"
)

// VerifyFile works on a log in a directory nobody may write, such as a
// read-only backup: SQLite cannot create the WAL index there, so the file
// is read in immutable mode.
func TestVerifyFileOnReadOnlyDirectory(t *testing.T) {
	src := filepath.Join(t.TempDir(), "events.db")
	s, err := eventstore.Open(src, eventstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		if _, err := s.Append(ctx, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
			StreamID: "s", ExpectedVersion: eventstore.AnyVersion,
			Events: []eventstore.NewEvent{{Type: "T", SchemaVersion: 1, Data: []byte(`{"i":1}`)}},
		}}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil { // a clean close checkpoints the WAL
		t.Fatal(err)
	}

	dir := t.TempDir()
	if os.Geteuid() == 0 {
		// Root ignores permission bits: only a read-only mount stops it.
		if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=8m"); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("mount tmpfs as root: %v", err)
			}
			t.Skipf("cannot mount a tmpfs: %v", err)
		}
		t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	}
	dst := filepath.Join(dir, "events.db")
	copyFile(t, src, dst)
	if os.Geteuid() == 0 {
		if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
			t.Fatalf("remount read-only: %v", err)
		}
	} else {
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Chmod(dir, 0o755) })
	}

	r, err := eventstore.VerifyFile(ctx, dst, 0, 0)
	if err != nil {
		t.Fatalf("VerifyFile on a read-only directory: %v", err)
	}
	if !r.OK || r.Checked != 20 || r.HeadPosition != 20 {
		t.Fatalf("VerifyFile = %+v, want 20 events intact", r)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
