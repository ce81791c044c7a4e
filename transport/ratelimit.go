package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/sethvargo/go-limiter"
	"github.com/sethvargo/go-limiter/memorystore"
)

// RateLimitConfig limits requests per token subject (per client address for
// requests without a valid token). go-limiter's memory store counts in
// fixed windows: Burst requests per window of Burst/PerSecond seconds, so
// the sustained rate is PerSecond.
type RateLimitConfig struct {
	// PerSecond is the sustained rate; 0 turns rate limiting off.
	PerSecond uint64
	// Burst is how many requests fit in one window; default PerSecond.
	Burst uint64
}

// Validate checks that the window the configuration implies is sane.
func (c RateLimitConfig) Validate() error {
	if c.PerSecond == 0 {
		return nil
	}
	if c.window() < time.Millisecond {
		return errors.New("rate limit: Burst/PerSecond gives a window under 1ms; raise Burst")
	}
	if c.window() > time.Hour {
		return errors.New("rate limit: Burst/PerSecond gives a window over an hour; raise PerSecond")
	}
	return nil
}

func (c RateLimitConfig) burst() uint64 {
	if c.Burst == 0 {
		return c.PerSecond
	}
	return c.Burst
}

func (c RateLimitConfig) window() time.Duration {
	return time.Duration(float64(time.Second) * float64(c.burst()) / float64(c.PerSecond))
}

// rateLimiter wraps the memory store; nil when limits are off.
type rateLimiter struct {
	store limiter.Store
}

func newRateLimiter(c RateLimitConfig, done <-chan struct{}) (*rateLimiter, error) {
	if c.PerSecond == 0 {
		return nil, nil
	}
	store, err := memorystore.New(&memorystore.Config{Tokens: c.burst(), Interval: c.window()})
	if err != nil {
		return nil, fmt.Errorf("rate limit: %w", err)
	}
	if done != nil {
		// The store runs a sweeper goroutine until closed.
		go func() {
			<-done
			_ = store.Close(context.Background())
		}()
	}
	return &rateLimiter{store: store}, nil
}

// limit takes one request from key's budget, sets the X-RateLimit headers
// and returns a rate_limited error when the budget is spent.
func (l *rateLimiter) limit(w http.ResponseWriter, r *http.Request, key string) error {
	if l == nil {
		return nil
	}
	limit, remaining, reset, ok, err := l.store.Take(r.Context(), key)
	if err != nil {
		// The store only fails once closed, at shutdown: let the request
		// through rather than refuse everyone.
		return nil
	}
	resetAt := time.Unix(0, int64(reset))
	h := w.Header()
	h.Set("X-RateLimit-Limit", formatUint(limit))
	h.Set("X-RateLimit-Remaining", formatUint(remaining))
	// Reset is the Unix time (seconds) at which the window refills.
	h.Set("X-RateLimit-Reset", formatUint(uint64((reset+uint64(time.Second)-1)/uint64(time.Second))))
	if !ok {
		return &apiError{code: codeRateLimited, detail: "too many requests; retry after the time in Retry-After", retryAfter: retryAfterSeconds(time.Until(resetAt))}
	}
	return nil
}

// limitKey is the subject of a verified token, else the client address.
// The prefixes keep a subject that looks like an address apart from it.
func limitKey(r *http.Request, p *principal) string {
	if p != nil {
		return "sub:" + p.subject
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "addr:" + host
}

// streamCounter caps the SSE streams one subject holds open at once.
type streamCounter struct {
	mu   sync.Mutex
	max  int
	open map[string]int
}

func newStreamCounter(max int) *streamCounter {
	return &streamCounter{max: max, open: make(map[string]int)}
}

// acquire reserves a stream for subject; release must follow when true.
func (c *streamCounter) acquire(subject string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open[subject] >= c.max {
		return false
	}
	c.open[subject]++
	return true
}

func (c *streamCounter) release(subject string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open[subject] <= 1 {
		delete(c.open, subject)
		return
	}
	c.open[subject]--
}
