// Package cluster tests ledgerq across processes: a write node and a query
// node (`ledgerq serve --role query`) sharing a Redis server that the tests
// start, kill and restart themselves (tests/redistest). They check that the
// query node serves what was written to the write node, that a Redis outage
// costs no publish and no event, and that every read model afterwards equals
// a rebuild from the log. With LEDGERQ_FIGURES=1 they also measure how long
// an append takes to become visible on the read side.
package cluster
