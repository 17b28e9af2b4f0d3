package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/go-logr/logr"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/keys"
)

// AuditRecord is one line of the audit trail: one per decision. It never holds a key; for a key that is
// not found it holds a short fingerprint (the id the key would have). Caller, method and path are cut to
// bounded lengths (Truncated says so), required scopes and constraints are validated before any decision.
// What the request itself says (caller, method, path, scopes, namespaces) may still hold a key, which a
// client put in its URL or headers: the writer redacts it before the record is written (redactKeys).
type AuditRecord struct {
	Time        time.Time `json:"time"`
	Code        Code      `json:"code"`
	KeyID       string    `json:"keyId,omitempty"`
	Namespace   string    `json:"namespace,omitempty"`
	Name        string    `json:"name,omitempty"`
	Fingerprint string    `json:"fingerprint,omitempty"`
	Scopes      []string  `json:"requiredScopes,omitempty"`
	// AcceptNamespaces and AcceptEnvironment are the request's constraints.
	AcceptNamespaces  []string             `json:"acceptNamespaces,omitempty"`
	AcceptEnvironment v1alpha1.Environment `json:"acceptEnvironment,omitempty"`
	Caller            string               `json:"caller,omitempty"`
	Method            string               `json:"method,omitempty"`
	Path              string               `json:"path,omitempty"`
	Truncated         bool                 `json:"truncated,omitempty"`
	LatencyUS         float64              `json:"latencyMicros"`

	// cut says which of caller, method and path were cut at their end (never written).
	cut cutFields
}

// cutFields is a set of the free-text fields that own cut.
type cutFields uint8

const (
	cutCaller cutFields = 1 << iota
	cutMethod
	cutPath
)

// Bounds of what an audit record keeps of a request.
const (
	MaxAuditCaller = 64
	MaxAuditMethod = 32
	MaxAuditPath   = 1024
	// auditRecordCost is what a queued record costs besides its own strings: the struct, its slices and
	// its slot in the queue.
	auditRecordCost = 320
	// MinAuditQueueBytes is the smallest byte bound accepted for the queue: a few of the largest records.
	MinAuditQueueBytes = 64 << 10
	// DefaultAuditQueueBytes is the default byte bound of the queue.
	DefaultAuditQueueBytes = 8 << 20
)

// Why an audit record was not written: the reason label of keysmith_verify_audit_dropped_total.
const (
	// DropQueueFull: the queue held its maximum of records or of bytes (the sink is too slow).
	DropQueueFull = "queue_full"
	// DropWriteError: the record was in a batch that the sink failed to write.
	DropWriteError = "write_error"
	// DropClosed: the decision came after the audit trail closed at shutdown.
	DropClosed = "closed"
)

// DropReasons lists every reason, for metrics and tests.
var DropReasons = []string{DropQueueFull, DropWriteError, DropClosed}

// AuditOptions configure an Auditor.
type AuditOptions struct {
	// Queue and QueueBytes bound the records waiting for the sink, by count and by their size in memory.
	Queue      int
	QueueBytes int64
	Log        logr.Logger
	// Metrics counts drops and write errors; nil counts them only in the Auditor.
	Metrics *Metrics
}

// Auditor writes audit records as JSON lines from a single goroutine, so that verification never waits
// on the sink. A record that is not written is counted (by reason, in a metric and in the Auditor) and
// reported in the log: when the queue is full, when the sink fails a write, and when a decision comes after
// the trail has closed. Never silently.
type Auditor struct {
	queue    chan queuedRecord
	maxBytes int64
	pending  atomic.Int64 // bytes queued
	sink     io.Writer
	log      logr.Logger
	metrics  *Metrics

	dropped     map[string]*atomic.Int64
	writeErrors atomic.Int64
	lastErr     atomic.Value // error
	lateLogged  atomic.Bool

	mu     sync.RWMutex // held for reading while a record is queued; for writing to close
	closed bool
	done   chan struct{}
}

type queuedRecord struct {
	rec  AuditRecord
	size int64
}

// NewAuditor returns an auditor writing to w.
func NewAuditor(w io.Writer, o AuditOptions) *Auditor {
	if o.Queue <= 0 {
		o.Queue = 65536
	}
	if o.QueueBytes <= 0 {
		o.QueueBytes = DefaultAuditQueueBytes
	}
	a := &Auditor{queue: make(chan queuedRecord, o.Queue), maxBytes: o.QueueBytes, sink: w, log: o.Log, metrics: o.Metrics,
		dropped: map[string]*atomic.Int64{}, done: make(chan struct{})}
	for _, r := range DropReasons {
		a.dropped[r] = new(atomic.Int64)
	}
	return a
}

// Record queues the record of one decision.
func (a *Auditor) Record(now time.Time, r Result, req Request, info RequestInfo, latency time.Duration) {
	rec := AuditRecord{Time: now.UTC(), Code: r.Code, LatencyUS: float64(latency.Nanoseconds()) / 1e3}
	if e := r.Entry; e != nil {
		rec.KeyID, rec.Namespace, rec.Name = e.KeyID, e.Namespace, e.Name
	} else if r.Code == CodeNotFound {
		rec.Fingerprint = keys.ID(req.Key)
	}
	size := auditRecordCost + rec.own(req, info)

	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.closed {
		a.drop(DropClosed, 1)
		if a.lateLogged.CompareAndSwap(false, true) {
			a.log.Info("a decision came after the audit trail closed: its record is counted, not written", "reason", DropClosed)
		}
		return
	}
	if a.pending.Add(size) > a.maxBytes {
		a.pending.Add(-size)
		a.drop(DropQueueFull, 1)
		return
	}
	select {
	case a.queue <- queuedRecord{rec: rec, size: size}:
	default:
		a.pending.Add(-size)
		a.drop(DropQueueFull, 1)
	}
}

// own fills the request's part of rec with copies cut to the audit bounds, made in one allocation, so
// that a queued record never keeps a request's headers alive. It returns the bytes it holds.
func (rec *AuditRecord) own(req Request, info RequestInfo) int64 {
	scopes, namespaces := req.Scopes, req.Accept.Namespaces
	cut := false
	if len(scopes) > MaxRequiredScopes {
		scopes, cut = scopes[:MaxRequiredScopes], true
	}
	if len(namespaces) > MaxNamespaces {
		namespaces, cut = namespaces[:MaxNamespaces], true
	}
	parts := make([]string, 0, 4+len(scopes)+len(namespaces))
	var fields cutFields
	add := func(s string, n int, f cutFields) {
		s, c := truncate(s, n)
		if c {
			cut, fields = true, fields|f
		}
		parts = append(parts, s)
	}
	add(info.Caller, MaxAuditCaller, cutCaller)
	add(info.Method, MaxAuditMethod, cutMethod)
	add(info.Path, MaxAuditPath, cutPath)
	add(string(req.Accept.Environment), len(v1alpha1.EnvironmentLive), 0)
	for _, s := range scopes {
		add(s, MaxScopeLength, 0)
	}
	for _, s := range namespaces {
		add(s, MaxScopeLength, 0)
	}
	all, off := strings.Join(parts, ""), 0
	for i, p := range parts {
		parts[i], off = all[off:off+len(p)], off+len(p)
	}
	rec.Caller, rec.Method, rec.Path, rec.AcceptEnvironment = parts[0], parts[1], parts[2], v1alpha1.Environment(parts[3])
	lists := parts[4:]
	if len(scopes) > 0 {
		rec.Scopes = lists[:len(scopes):len(scopes)]
	}
	if len(namespaces) > 0 {
		rec.AcceptNamespaces = lists[len(scopes):]
	}
	rec.Truncated, rec.cut = cut, fields
	return int64(len(all) + 16*len(parts))
}

// truncate cuts s to at most n bytes, at a character boundary.
func truncate(s string, n int) (string, bool) {
	if len(s) <= n {
		return s, false
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n], true
}

func (a *Auditor) drop(reason string, n int64) {
	a.dropped[reason].Add(n)
	if a.metrics != nil {
		a.metrics.AuditDropped(reason, n)
	}
}

// Dropped returns how many records were not written, for every reason.
func (a *Auditor) Dropped() int64 {
	n := int64(0)
	for _, c := range a.dropped {
		n += c.Load()
	}
	return n
}

// DroppedFor returns how many records were not written for reason.
func (a *Auditor) DroppedFor(reason string) int64 { return a.dropped[reason].Load() }

// WriteErrors returns how many writes to the sink failed.
func (a *Auditor) WriteErrors() int64 { return a.writeErrors.Load() }

// Run writes queued records until ctx ends, then closes the trail: later records are refused (and
// counted), the queue is drained and the sink flushed.
func (a *Auditor) Run(ctx context.Context) error {
	defer close(a.done)
	w := &auditWriter{a: a}
	w.enc = json.NewEncoder(&w.buf)
	// The trail is JSON lines, not HTML: redactions read <key:…>, not \u003ckey:…\u003e.
	w.enc.SetEscapeHTML(false)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var reported auditReport
	for {
		select {
		case q := <-a.queue:
			a.pending.Add(-q.size)
			w.add(q.rec)
			if len(a.queue) == 0 {
				w.flush()
			}
		case <-tick.C:
			w.flush()
			reported = a.report(reported)
		case <-ctx.Done():
			// Once closed, no record enters the queue: the drain ends however busy the front ends are.
			a.mu.Lock()
			a.closed = true
			a.mu.Unlock()
			a.drainTo(w)
			w.flush()
			a.report(reported)
			return nil
		}
	}
}

func (a *Auditor) drainTo(w *auditWriter) {
	for {
		select {
		case q := <-a.queue:
			a.pending.Add(-q.size)
			w.add(q.rec)
		default:
			return
		}
	}
}

// auditReport is what the log was last told.
type auditReport struct {
	dropped, writeErrors int64
}

// report logs what was dropped and which writes failed since the last report.
func (a *Auditor) report(last auditReport) auditReport {
	now := auditReport{dropped: a.Dropped(), writeErrors: a.writeErrors.Load()}
	if now.writeErrors != last.writeErrors {
		err, _ := a.lastErr.Load().(error)
		a.log.Error(err, "writing the audit trail failed: the records of the failed writes are lost (counted in keysmith_verify_audit_dropped_total{reason=\"write_error\"})",
			"writeErrorsTotal", now.writeErrors, "writeErrorsSinceLastReport", now.writeErrors-last.writeErrors, "lostTotal", a.DroppedFor(DropWriteError))
	}
	if now.dropped != last.dropped {
		a.log.Info("audit records dropped", "droppedTotal", now.dropped, "droppedSinceLastReport", now.dropped-last.dropped,
			DropQueueFull, a.DroppedFor(DropQueueFull), DropWriteError, a.DroppedFor(DropWriteError), DropClosed, a.DroppedFor(DropClosed))
	}
	return now
}

// auditWriter batches encoded records for the sink. A failed write loses its batch, which is counted, but
// not the writer: the next batch is written afresh, after a newline that ends a line the failed write may
// have left torn.
type auditWriter struct {
	a       *Auditor
	buf     bytes.Buffer
	enc     *json.Encoder
	records int  // records in buf
	lead    int  // 1 when buf starts with the newline that ends a torn line
	torn    bool // the sink's last line is incomplete
}

const auditBatchBytes = 64 << 10

func (w *auditWriter) add(rec AuditRecord) {
	if w.buf.Len() == 0 && w.torn {
		w.buf.WriteByte('\n')
		w.lead = 1
	}
	before := w.buf.Len()
	rec.redactKeys()
	if err := w.enc.Encode(rec); err != nil {
		w.buf.Truncate(before)
		w.failed(err, 1)
		return
	}
	w.records++
	if w.buf.Len() >= auditBatchBytes {
		w.flush()
	}
}

func (w *auditWriter) flush() {
	b := w.buf.Bytes()
	if w.records == 0 {
		return
	}
	n, err := w.a.sink.Write(b)
	if err == nil && n < len(b) {
		err = io.ErrShortWrite
	}
	if err != nil {
		n = max(0, min(n, len(b)))
		written := 0
		if n > w.lead {
			written = bytes.Count(b[w.lead:n], []byte{'\n'})
		}
		if n > 0 {
			w.torn = b[n-1] != '\n'
		}
		w.failed(err, int64(w.records-written))
	} else {
		w.torn = false
	}
	w.buf.Reset()
	w.records, w.lead = 0, 0
}

func (w *auditWriter) failed(err error, lost int64) {
	if err == nil {
		err = errors.New("audit write failed")
	}
	w.a.lastErr.Store(err)
	w.a.writeErrors.Add(1)
	if m := w.a.metrics; m != nil {
		m.AuditWriteError()
	}
	if lost > 0 {
		w.a.drop(DropWriteError, lost)
	}
}

// Redaction of keys in what a request says. A client may put its key anywhere it controls: in the query
// (GET /orders?api_key=…, which nginx forwards in X-Original-URI), in the path, as the method (any token
// is one). The writer goroutine scans each free-text field of a record before encoding it, so the
// decision path pays nothing; fields are already cut (at most MaxAuditPath bytes), so the scan is bounded,
// linear, and allocates only when it replaces something.
const (
	// keyEnvLen is the length of "_live_" and "_test_".
	keyEnvLen = 1 + 4 + 1
	// redactedKey replaces something key-shaped that is not a valid key (a bad checksum, no prefix, a key
	// cut short): its body would still be most of a secret.
	redactedKey = "<redacted>"
)

// redactKeys replaces the keys in the record's free-text fields, with the function redactKeys. Scopes and
// namespaces are validated before any decision, so never cut; a redacted list is a copy, never the
// array the record was given.
func (rec *AuditRecord) redactKeys() {
	rec.Caller = redactKeys(rec.Caller, rec.cut&cutCaller != 0)
	rec.Method = redactKeys(rec.Method, rec.cut&cutMethod != 0)
	rec.Path = redactKeys(rec.Path, rec.cut&cutPath != 0)
	rec.Scopes = redactKeysIn(rec.Scopes)
	rec.AcceptNamespaces = redactKeysIn(rec.AcceptNamespaces)
}

func redactKeysIn(list []string) []string {
	for i, s := range list {
		if r := redactKeys(s, false); r != s {
			out := append([]string(nil), list...)
			out[i] = r
			for j := i + 1; j < len(out); j++ {
				out[j] = redactKeys(out[j], false)
			}
			return out
		}
	}
	return list
}

// redactKeys returns s with every key-shaped substring replaced. Key-shaped is "_live_" or "_test_"
// followed by 36 base62 characters (the body), with the lowercase letters and digits just before it, at
// most keys.MaxPrefixLength of them (the prefix): a superset of the pattern in package keys, without
// word boundaries, since a key inside a longer word is still a key. A substring that keys.Valid accepts
// becomes <key:id> (its public id, keys.ID); anything else key-shaped becomes <redacted>, and so does,
// when cut says s was cut at its end, a separator followed by 1 to 35 base62 characters up to the end (a
// key the truncation cut short; when <redacted> is longer than what it would replace, the few body
// characters are cut off instead). Text without either passes unchanged, without allocating.
//
// The output never holds a substring that keys.Valid accepts: every separator followed by a body is
// replaced, and a replacement starts with '<' and ends with '>', which neither a prefix nor a body holds,
// so no new key can form across one. It is never longer than s (a replacement is shorter than a key).
func redactKeys(s string, cut bool) string {
	var b strings.Builder
	done := 0 // s[:done] is in b already, or replaced
	for i := 0; i+keyEnvLen <= len(s); {
		if s[i] != '_' {
			j := strings.IndexByte(s[i:], '_')
			if j < 0 {
				break
			}
			if i += j; i+keyEnvLen > len(s) {
				break
			}
		}
		if env := s[i : i+keyEnvLen]; env != "_live_" && env != "_test_" {
			i++
			continue
		}
		bodyStart := i + keyEnvLen
		n := base62Run(s[bodyStart:], keys.BodyLength)
		if n < keys.BodyLength && (!cut || n == 0 || bodyStart+n != len(s)) {
			i++
			continue
		}
		start := i
		for start > done && i-start < keys.MaxPrefixLength && lowerAlnum(s[start-1]) {
			start--
		}
		end := bodyStart + n
		if b.Len() == 0 {
			b.Grow(len(s))
		}
		b.WriteString(s[done:start])
		switch candidate := s[start:end]; {
		case n == keys.BodyLength && keys.Valid(candidate):
			b.WriteString("<key:")
			b.WriteString(keys.ID(candidate))
			b.WriteByte('>')
		case len(candidate) < len(redactedKey):
			// A key cut after a few characters of its body: cut it before the body instead, so that
			// the field stays within its bound.
			b.WriteString(s[start:bodyStart])
		default:
			b.WriteString(redactedKey)
		}
		done, i = end, end
	}
	if done == 0 {
		return s
	}
	b.WriteString(s[done:])
	return b.String()
}

// base62Run returns how many of the first characters of s, at most limit, are base62 digits.
func base62Run(s string, limit int) int {
	n := 0
	for n < len(s) && n < limit {
		c := s[n]
		if !lowerAlnum(c) && (c < 'A' || c > 'Z') {
			break
		}
		n++
	}
	return n
}

func lowerAlnum(c byte) bool { return ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') }
