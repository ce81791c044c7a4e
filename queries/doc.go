// Package queries answers ledgerq's GET routes from read models only (never
// the command side's memory), waits for the read side to reach a position
// when a caller asks to read its own writes, and fans projection updates out
// to SSE subscribers.
package queries
