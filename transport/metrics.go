package transport

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
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
	// AppendBatchSize observes, once a second, the mean number of events
	// per group commit over that second.
	AppendBatchSize prometheus.Histogram
	// AppendCommits counts group commits.
	AppendCommits prometheus.Counter
	// AppendSyncs counts the fdatasyncs of the log's WAL; one makes durable
	// every group commit made while the one before it ran.
	AppendSyncs prometheus.Counter
	// AppendCommitWaits counts the times a small group commit waited for
	// more appends first (serve --commit-delay).
	AppendCommitWaits prometheus.Counter
	// RelayLag is how many events the relay is behind the head of the log.
	RelayLag prometheus.Gauge
	// ProjectionLag is, per projection (label "projection"), how many
	// events it is behind the head of the log.
	ProjectionLag *prometheus.GaugeVec
	// SSEClients is the number of open SSE streams; the server keeps it.
	SSEClients prometheus.Gauge
	// AppendCommitSeconds observes each group commit of the log, from its
	// BEGIN to the end of its COMMIT (the fsync included).
	AppendCommitSeconds prometheus.Histogram
	// ProjectionTransactionSeconds observes each read-model transaction
	// that applied a pack from the bus, BEGIN to COMMIT.
	ProjectionTransactionSeconds prometheus.Histogram
	// ReadDelaySeconds observes, per event applied from the bus, the time
	// from its recording in the log to the commit of the read-model
	// transaction that applied it (append → read model; SSE frames leave
	// right after that commit).
	ReadDelaySeconds prometheus.Histogram

	depths   *depthCollector
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	gatherer prometheus.Gatherer
}

// latencyBuckets are the buckets, in seconds, of every latency histogram.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 25}

// QueueDepth is one queue's message counts, the series of the
// ledgerq_queue_messages gauge (label "state": ready, delayed, in_flight).
type QueueDepth struct {
	Queue                    string
	Ready, Delayed, InFlight int64
}

// depthScrapeTimeout bounds the read of the queue depths in one scrape.
const depthScrapeTimeout = 5 * time.Second

// depthCollector reads the queue depths when /metrics is scraped, not on a
// timer: a read costs a query per queue, and a scrape comes every 15 s or
// so, where a refresh every second cost an idle server with 250 queues 5 %
// of a core.
type depthCollector struct {
	desc *prometheus.Desc
	mu   sync.Mutex
	read func(ctx context.Context) ([]QueueDepth, error)
}

func (c *depthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *depthCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	read := c.read
	c.mu.Unlock()
	if read == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), depthScrapeTimeout)
	defer cancel()
	depths, err := read(ctx)
	if err != nil {
		// The scrape still serves every other metric (ContinueOnError).
		ch <- prometheus.NewInvalidMetric(c.desc, fmt.Errorf("queue depths: %w", err))
		return
	}
	for _, d := range depths {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(d.Ready), d.Queue, "ready")
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(d.Delayed), d.Queue, "delayed")
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(d.InFlight), d.Queue, "in_flight")
	}
}

// CollectQueueDepths sets where the ledgerq_queue_messages series come
// from: read is called once per scrape, with a deadline. Until it is set
// there are none.
func (m *Metrics) CollectQueueDepths(read func(ctx context.Context) ([]QueueDepth, error)) {
	m.depths.mu.Lock()
	m.depths.read = read
	m.depths.mu.Unlock()
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
			Name: "ledgerq_append_batch_size", Help: "Mean events per group commit, observed once a second over that second.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}),
		AppendCommits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ledgerq_append_commits_total", Help: "Group commits of the event log.",
		}),
		AppendSyncs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ledgerq_append_syncs_total", Help: "fdatasyncs of the event log's WAL; one makes durable every group commit made while the one before it ran.",
		}),
		AppendCommitWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ledgerq_append_commit_waits_total", Help: "Times a small group commit waited for more appends first (--commit-delay).",
		}),
		RelayLag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ledgerq_relay_lag_events", Help: "Events the relay is behind the head of the log.",
		}),
		ProjectionLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ledgerq_projection_lag_events", Help: "Events a projection is behind the head of the log.",
		}, []string{"projection"}),
		depths: &depthCollector{desc: prometheus.NewDesc("ledgerq_queue_messages",
			"Messages in a queue by state.", []string{"queue", "state"}, nil)},
		SSEClients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ledgerq_sse_clients", Help: "Open server-sent event streams.",
		}),
		AppendCommitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ledgerq_append_commit_seconds", Help: "Duration of a group commit of the event log, from its BEGIN to the end of the fdatasync that made it durable, when its appends are answered.",
			Buckets: latencyBuckets,
		}),
		ProjectionTransactionSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ledgerq_projection_transaction_seconds", Help: "Duration of a read-model transaction applying a pack from the bus, from its BEGIN to the end of its COMMIT.",
			Buckets: latencyBuckets,
		}),
		ReadDelaySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ledgerq_read_delay_seconds", Help: "Per event applied from the bus: time from its recording in the log (millisecond precision) to the commit of the read-model transaction that applied it.",
			Buckets: latencyBuckets,
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ledgerq_http_requests_total", Help: "HTTP requests by route template, method and status.",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ledgerq_http_request_duration_seconds", Help: "HTTP request latency by route template, method and status.",
			Buckets: latencyBuckets,
		}, []string{"route", "method", "status"}),
		gatherer: prometheus.DefaultGatherer,
	}
	for _, c := range []prometheus.Collector{m.EventsAppended, m.AppendBatchSize, m.AppendCommits, m.AppendSyncs, m.AppendCommitWaits, m.RelayLag, m.ProjectionLag, m.depths, m.SSEClients,
		m.AppendCommitSeconds, m.ProjectionTransactionSeconds, m.ReadDelaySeconds, m.requests, m.duration} {
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
	// A metric that cannot be read (the read model's depths) must not hide
	// the others: they are what an operator needs to see then.
	return promhttp.HandlerFor(m.gatherer, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
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
