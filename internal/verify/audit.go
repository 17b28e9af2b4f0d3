package verify

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/keysmith-dev/keysmith/internal/keys"
)

// AuditRecord is one line of the audit trail: one per decision. It never holds a key; for a key that is
// not found it holds a short fingerprint (the id the key would have).
type AuditRecord struct {
	Time        time.Time `json:"time"`
	Code        Code      `json:"code"`
	KeyID       string    `json:"keyId,omitempty"`
	Namespace   string    `json:"namespace,omitempty"`
	Name        string    `json:"name,omitempty"`
	Fingerprint string    `json:"fingerprint,omitempty"`
	Scopes      []string  `json:"requiredScopes,omitempty"`
	Caller      string    `json:"caller,omitempty"`
	Method      string    `json:"method,omitempty"`
	Path        string    `json:"path,omitempty"`
	LatencyUS   float64   `json:"latencyMicros"`
}

// Auditor writes audit records as JSON lines from a single goroutine, so that verification never waits
// on the sink. When the queue is full a record is dropped, counted in a metric, and reported in the log:
// never silently.
type Auditor struct {
	queue   chan AuditRecord
	out     *bufio.Writer
	log     logr.Logger
	dropped atomic.Int64
	onDrop  func()
	done    chan struct{}
	once    sync.Once
}

// NewAuditor returns an auditor writing to w with room for queue pending records.
func NewAuditor(w io.Writer, queue int, log logr.Logger, onDrop func()) *Auditor {
	return &Auditor{queue: make(chan AuditRecord, queue), out: bufio.NewWriterSize(w, 64<<10), log: log, onDrop: onDrop, done: make(chan struct{})}
}

// Record queues the record of one decision.
func (a *Auditor) Record(now time.Time, r Result, key string, required []string, req RequestInfo, latency time.Duration) {
	rec := AuditRecord{Time: now.UTC(), Code: r.Code, Scopes: required, Caller: req.Caller, Method: req.Method, Path: req.Path,
		LatencyUS: float64(latency.Nanoseconds()) / 1e3}
	if e := r.Entry; e != nil {
		rec.KeyID, rec.Namespace, rec.Name = e.KeyID, e.Namespace, e.Name
	} else if r.Code == CodeNotFound {
		rec.Fingerprint = keys.ID(key)
	}
	select {
	case a.queue <- rec:
	default:
		a.dropped.Add(1)
		if a.onDrop != nil {
			a.onDrop()
		}
	}
}

// Dropped returns how many records were dropped because the queue was full.
func (a *Auditor) Dropped() int64 { return a.dropped.Load() }

// Run writes queued records until ctx ends, then drains the queue and flushes.
func (a *Auditor) Run(ctx context.Context) error {
	defer close(a.done)
	enc := json.NewEncoder(a.out)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	reported := int64(0)
	write := func(rec AuditRecord) {
		if err := enc.Encode(rec); err != nil {
			a.log.Error(err, "writing an audit record")
		}
	}
	for {
		select {
		case rec := <-a.queue:
			write(rec)
			if len(a.queue) == 0 {
				_ = a.out.Flush()
			}
		case <-tick.C:
			_ = a.out.Flush()
			if d := a.dropped.Load(); d != reported {
				a.log.Info("audit records dropped: the audit sink is slower than the verification rate", "droppedTotal", d, "droppedSinceLastReport", d-reported)
				reported = d
			}
		case <-ctx.Done():
			for {
				select {
				case rec := <-a.queue:
					write(rec)
				default:
					return a.out.Flush()
				}
			}
		}
	}
}
