//go:build linux && cgo

package main

/*
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

// ledgerq_slack_ns reads LEDGERQ_TIMER_SLACK's value: a number and a unit
// of ns, us, µs or ms, as timerslack.go's parseTimerSlack; 0 for anything
// else. strtod takes a little more than Go (an exponent, hex, leading
// spaces), but whatever parseTimerSlack refuses stops the start anyway.
static unsigned long ledgerq_slack_ns(const char *v) {
	char *end;
	double n = strtod(v, &end);
	if (end == v || n <= 0) return 0;
	double mul;
	if (strcmp(end, "ns") == 0) mul = 1;
	else if (strcmp(end, "us") == 0 || strcmp(end, "\xc2\xb5s") == 0) mul = 1e3;
	else if (strcmp(end, "ms") == 0) mul = 1e6;
	else return 0;
	double ns = n * mul;
	if (ns < 1 || ns > 100e6) return 0;
	return (unsigned long)(ns + 0.5);
}

// ledgerq_timer_slack runs before the Go runtime starts its threads, and
// sets the timer slack of the first thread, which every thread created
// after inherits: the runtime's monitor thread (sysmon) among them, which
// Go code could no longer reach. Only "ledgerq serve" gets it (argv[1]);
// the bench, which paces requests with its timers, keeps the default.
static void __attribute__((constructor)) ledgerq_timer_slack(void) {
	char args[4096]; // argv[0] may be a long path: read up to PATH_MAX
	FILE *f = fopen("/proc/self/cmdline", "r");
	if (f == NULL) return;
	size_t n = fread(args, 1, sizeof args - 1, f);
	fclose(f);
	args[n] = 0;
	size_t arg0 = strlen(args);
	if (arg0 + 1 >= n || strcmp(args + arg0 + 1, "serve") != 0) return;
	unsigned long ns = 1000000; // defaultTimerSlack
	const char *v = getenv("LEDGERQ_TIMER_SLACK");
	if (v != NULL && v[0] != 0) {
		if (strcmp(v, "off") == 0) return;
		ns = ledgerq_slack_ns(v);
		if (ns == 0) return;
	}
	prctl(PR_SET_TIMERSLACK, ns, 0, 0, 0);
}
*/
import "C"

import (
	"time"

	"golang.org/x/sys/unix"
)

// currentTimerSlack is the calling thread's timer slack; every thread of
// the process has the same unless something changed one.
func currentTimerSlack() (time.Duration, bool) {
	ns, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err != nil {
		return 0, false
	}
	return time.Duration(ns), true
}
