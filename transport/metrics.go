package transport

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are ledgerq's Prometheus metrics. The HTTP ones are kept by the
// server; the exported fields are for the rest of the process to set (main
// wires them to the event store, the relay and the projections).
type Metrics struct {
	// EventsAppended counts events committed to the log.
	EventsAppended prometheus.Counter
	// AppendBatchSize observes how many events each group commit wrote.
	AppendBatchSize prometheus.Histogram
	// RelayLag is how many events the relay is behind the head of the log.
	RelayLag prometheus.Gauge
	// ProjectionLag is, per projection (label "projection"), how many
	// events it is behind the head of the log.
	ProjectionLag *prometheus.GaugeVec
	// QueueDepth is the number of messages per queue and state (labels
	// "queue" and "state": ready, delayed, in_flight).
	QueueDepth *prometheus.GaugeVec
	// SSEClients is the number of open SSE streams; the server keeps it.
	SSEClients prometheus.Gauge

	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	gatherer prometheus.Gatherer
}

// NewMetrics creates the metrics and registers them on reg. /metrics
// serves reg when it is also a Gatherer (a *prometheus.Registry is), else
// the default gatherer.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("metrics: a registerer is required")
	}
	m := &Metrics{
		EventsAppended: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ledgerq_events_appended_total", Help: "Events committed to the event log.",
		}),
		AppendBatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ledgerq_append_batch_size", Help: "Events written per group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}),
		RelayLag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ledgerq_relay_lag_events", Help: "Events the relay is behind the head of the log.",
		}),
		ProjectionLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ledgerq_projection_lag_events", Help: "Events a projection is behind the head of the log.",
		}, []string{"projection"}),
		QueueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ledgerq_queue_messages", Help: "Messages in a queue by state.",
		}, []string{"queue", "state"}),
		SSEClients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ledgerq_sse_clients", Help: "Open server-sent event streams.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ledgerq_http_requests_total", Help: "HTTP requests by route template, method and status.",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ledgerq_http_request_duration_seconds", Help: "HTTP request latency by route template, method and status.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 25},
		}, []string{"route", "method", "status"}),
		gatherer: prometheus.DefaultGatherer,
	}
	for _, c := range []prometheus.Collector{m.EventsAppended, m.AppendBatchSize, m.RelayLag, m.ProjectionLag, m.QueueDepth, m.SSEClients, m.requests, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: register: %w", err)
		}
	}
	if g, ok := reg.(prometheus.Gatherer); ok {
		m.gatherer = g
	}
	return m, nil
}

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.gatherer, promhttp.HandlerOpts{})
}

func (m *Metrics) observeRequest(route, method string, status int, took time.Duration) {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
	default:
		// Any token is a valid method; keep the label set bounded.
		method = "other"
	}
	code := strconv.Itoa(status)
	m.requests.WithLabelValues(route, method, code).Inc()
	m.duration.WithLabelValues(route, method, code).Observe(took.Seconds())
}
