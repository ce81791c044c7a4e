// Package bench holds the smoke tests of `ledgerq bench`: they build the real
// binary and let it start its own server, so the load generator, the limits
// in tests/bench/limits and the comparison table are exercised end to end
// against ledgerq itself.
package bench
