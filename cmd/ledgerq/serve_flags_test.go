package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ledgerq/ledgerq/eventstore"
)

// TestCommitDelayFlag: --commit-delay (or LEDGERQ_COMMIT_DELAY) defaults to
// the store's default, 0 turns the wait off, and a negative or longer than
// 100 ms wait is refused with a message that says what is allowed.
func TestCommitDelayFlag(t *testing.T) {
	noEnv := func(string) string { return "" }
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want time.Duration
		err  string
	}{
		{want: eventstore.DefaultCommitDelay},
		{args: []string{"--commit-delay", "0"}, want: 0},
		{args: []string{"--commit-delay", "5ms"}, want: 5 * time.Millisecond},
		{env: map[string]string{"LEDGERQ_COMMIT_DELAY": "250us"}, want: 250 * time.Microsecond},
		{args: []string{"--commit-delay", "-1ms"}, err: "want 0 (off) to 100ms"},
		{args: []string{"--commit-delay", "1s"}, err: "want 0 (off) to 100ms"},
	} {
		env := envFunc(noEnv)
		if tc.env != nil {
			env = func(k string) string { return tc.env[k] }
		}
		c, err := parseServe(tc.args, env, io.Discard)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v %v: error %v, want one saying %q", tc.args, tc.env, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v %v: %v", tc.args, tc.env, err)
			continue
		}
		if c.commitDelay != tc.want {
			t.Errorf("%v %v: commit delay %s, want %s", tc.args, tc.env, c.commitDelay, tc.want)
		}
	}
}
