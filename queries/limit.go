package queries

import "github.com/ledgerq/ledgerq/domain"

// pageLimit turns a requested page size into the one to use: 0 means the
// default, anything outside 1…MaxLimit is refused rather than clamped, so a
// client that asks for 5000 learns it gets at most 1000.
func pageLimit(limit int) (int, error) {
	switch {
	case limit == 0:
		return DefaultLimit, nil
	case limit < 0 || limit > MaxLimit:
		return 0, domain.Invalid("limit", "must be between 1 and %d", MaxLimit)
	}
	return limit, nil
}
