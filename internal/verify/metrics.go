package verify

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the verifier's Prometheus metrics.
type Metrics struct {
	verifications *prometheus.CounterVec
	byCode        map[Code]prometheus.Counter
	duration      prometheus.Histogram
	auditDropped  *prometheus.CounterVec
	auditWriteErr prometheus.Counter
	invalidReqs   *prometheus.CounterVec
	droppedBy     map[string]prometheus.Counter
	invalidBy     map[ErrorCode]prometheus.Counter
}

// NewMetrics registers the verifier's metrics with reg. indexSize is read at scrape time.
func NewMetrics(reg prometheus.Registerer, indexSize func() float64) *Metrics {
	m := &Metrics{
		verifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keysmith_verifications_total", Help: "Key verifications by outcome code.",
		}, []string{"code"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "keysmith_verification_duration_seconds", Help: "Time to decide one verification (parse, hash, lookup, checks).",
			Buckets: []float64{1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2},
		}),
		auditDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keysmith_verify_audit_dropped_total",
			Help: "Audit records not written, by reason: queue_full (the sink fell behind), write_error (lost in a failed write to the sink), closed (decided after the audit trail closed at shutdown).",
		}, []string{"reason"}),
		auditWriteErr: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keysmith_verify_audit_write_errors_total", Help: "Writes to the audit sink that failed (their records are counted in keysmith_verify_audit_dropped_total{reason=\"write_error\"}).",
		}),
		invalidReqs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keysmith_verify_invalid_requests_total", Help: "Requests refused with 400 before any decision (not audited), by code.",
		}, []string{"code"}),
	}
	m.verifications = register(reg, m.verifications)
	m.duration = register(reg, m.duration)
	m.auditDropped = register(reg, m.auditDropped)
	m.auditWriteErr = register(reg, m.auditWriteErr)
	m.invalidReqs = register(reg, m.invalidReqs)
	register(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "keysmith_verify_index_keys", Help: "Keys in the verifier's index (all states).",
	}, indexSize))
	m.byCode = map[Code]prometheus.Counter{}
	for _, c := range Codes {
		m.byCode[c] = m.verifications.WithLabelValues(string(c))
	}
	m.droppedBy = map[string]prometheus.Counter{}
	for _, r := range DropReasons {
		m.droppedBy[r] = m.auditDropped.WithLabelValues(r)
	}
	m.invalidBy = map[ErrorCode]prometheus.Counter{}
	for _, c := range ErrorCodes {
		m.invalidBy[c] = m.invalidReqs.WithLabelValues(string(c))
	}
	return m
}

// register registers c, or returns the collector already registered under the same name (a second
// Service in the same process shares the first one's metrics).
func register[T prometheus.Collector](reg prometheus.Registerer, c T) T {
	if err := reg.Register(c); err != nil {
		are, ok := err.(prometheus.AlreadyRegisteredError)
		if !ok {
			panic(err)
		}
		if existing, ok := are.ExistingCollector.(T); ok {
			return existing
		}
	}
	return c
}

func (m *Metrics) observe(c Code, d time.Duration) {
	m.byCode[c].Inc()
	if d > 0 {
		m.duration.Observe(d.Seconds())
	}
}

// AuditDropped counts n audit records not written for reason (one of DropReasons).
func (m *Metrics) AuditDropped(reason string, n int64) { m.droppedBy[reason].Add(float64(n)) }

// AuditWriteError counts one failed write to the audit sink.
func (m *Metrics) AuditWriteError() { m.auditWriteErr.Inc() }

// invalid counts a request refused before any decision.
func (m *Metrics) invalid(c ErrorCode) {
	if counter, ok := m.invalidBy[c]; ok {
		counter.Inc()
	}
}
