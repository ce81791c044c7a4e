package limits

import "time"

// Result is what one limit run did: Ops operations (requests, rows,
// syncs, entries …) completed in Elapsed.
type Result struct {
	Ops     int64
	Elapsed time.Duration
}

// Rate is operations per second; 0 when nothing was measured.
func (r Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Elapsed.Seconds()
}
