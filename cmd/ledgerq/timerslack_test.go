package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseTimerSlack(t *testing.T) {
	for v, want := range map[string]time.Duration{
		"":      defaultTimerSlack,
		"off":   0,
		"1ns":   time.Nanosecond,
		"200us": 200 * time.Microsecond,
		"200µs": 200 * time.Microsecond,
		"1.5ms": 1500 * time.Microsecond,
		"100ms": 100 * time.Millisecond,
	} {
		got, err := parseTimerSlack(v)
		if err != nil || got != want {
			t.Errorf("parseTimerSlack(%q) = %v, %v; want %v", v, got, err, want)
		}
	}
	// What the C constructor cannot read (seconds, exponents, spaces) is
	// refused here too, so that the two never disagree silently.
	for _, v := range []string{"0", "0ms", "-1ms", "101ms", "1s", "1e3ns", "1ms ", " 1ms", "1", "fast", "1ms500us", "OFF"} {
		if _, err := parseTimerSlack(v); err == nil || !strings.Contains(err.Error(), timerSlackEnv) {
			t.Errorf("parseTimerSlack(%q): err %v, want one naming %s", v, err, timerSlackEnv)
		}
	}
}
