//go:build !linux || !cgo

package main

import "time"

// currentTimerSlack: timer slack is Linux's; elsewhere serve leaves the
// timers as they are.
func currentTimerSlack() (time.Duration, bool) { return 0, false }
