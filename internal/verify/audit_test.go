package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
)

// flakyWriter fails the writes whose number (from 1) is in fail, after writing their first line and 5
// bytes of the next (a torn line), and keeps the bytes of every write.
type flakyWriter struct {
	mu     sync.Mutex
	fail   map[int]bool
	none   bool // failed writes write nothing
	writes int
	buf    bytes.Buffer
}

var errDiskFull = errors.New("write audit.log: no space left on device")

func (w *flakyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	if w.fail[w.writes] && w.none {
		return 0, errDiskFull
	}
	if w.fail[w.writes] {
		lead := len(p) - len(bytes.TrimLeft(p, "\n"))
		n := min(len(p), lead+bytes.IndexByte(p[lead:], '\n')+1+5)
		w.buf.Write(p[:n])
		return n, errDiskFull
	}
	return w.buf.Write(p)
}

func (w *flakyWriter) lines() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Split(strings.TrimSuffix(w.buf.String(), "\n"), "\n")
}

func labelled(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestAuditWriterRecoversAfterAnError is the silent loss of the audit trail: a bufio.Writer keeps the
// first write error for ever, so every later record failed and none was counted. Now a failed write loses
// its batch, counted, and the next batch is written (after a newline that ends the torn line).
func TestAuditWriterRecoversAfterAnError(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, func() float64 { return 0 })
	sink := &flakyWriter{fail: map[int]bool{2: true, 3: true}}
	a := NewAuditor(sink, AuditOptions{Log: logr.Discard(), Metrics: m})
	w := &auditWriter{a: a}
	w.enc = json.NewEncoder(&w.buf)
	batch := func(path string, n int) {
		for i := 0; i < n; i++ {
			w.add(AuditRecord{Code: CodeValid, Path: path})
		}
		w.flush()
	}
	batch("/first", 2)  // written
	batch("/second", 3) // fails after one record
	batch("/third", 4)  // fails too, after one record
	batch("/fourth", 5) // written
	lines := sink.lines()
	var good []string
	for _, l := range lines {
		var r AuditRecord
		if json.Unmarshal([]byte(l), &r) == nil {
			good = append(good, r.Path)
		}
	}
	if strings.Join(good, " ") != "/first /first /second /third /fourth /fourth /fourth /fourth /fourth" {
		t.Fatalf("records written %v, lines %q", good, lines)
	}
	// Of the failed batches, the records written whole before the failure stay; the others are counted.
	if got := a.DroppedFor(DropWriteError); got != 2+3 {
		t.Fatalf("lost %d, want 5", got)
	}
	if a.WriteErrors() != 2 || testCounter(t, reg, "keysmith_verify_audit_write_errors_total") != 2 {
		t.Fatalf("write errors %d, metric %v", a.WriteErrors(), testCounter(t, reg, "keysmith_verify_audit_write_errors_total"))
	}
	if got := labelled(t, reg, "keysmith_verify_audit_dropped_total", "reason", DropWriteError); got != 5 {
		t.Fatalf("dropped{reason=write_error} = %v", got)
	}
	if torn := len(lines) - len(good); torn != 2 {
		t.Fatalf("%d torn lines, want 2 (each ended by the next write): %q", torn, lines)
	}
}

// TestAuditTrailKeepsWritingAfterASinkError runs the same through Run: records decided after a failed
// write reach the sink.
func TestAuditTrailKeepsWritingAfterASinkError(t *testing.T) {
	f := newFixture(t)
	sink := &flakyWriter{fail: map[int]bool{1: true}, none: true}
	a := NewAuditor(sink, AuditOptions{Log: logr.Discard()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	a.Record(f.clk.Now(), Result{Code: CodeValid}, Request{}, RequestInfo{Path: "/lost"}, 0)
	if !eventually(func() bool { return a.WriteErrors() == 1 }) {
		t.Fatal("the write error was not seen")
	}
	for i := 0; i < 10; i++ {
		a.Record(f.clk.Now(), Result{Code: CodeValid}, Request{}, RequestInfo{Path: "/after"}, 0)
	}
	cancel()
	<-done
	if n := strings.Count(strings.Join(sink.lines(), "\n"), `"path":"/after"`); n != 10 {
		t.Fatalf("%d of 10 records written after the error", n)
	}
	if a.DroppedFor(DropWriteError) != 1 {
		t.Fatalf("lost %d, want 1", a.DroppedFor(DropWriteError))
	}
}

// TestDecisionsAfterTheAuditTrailClosedAreCounted: the HTTP and gRPC servers may answer after the final
// drain; what they decide then is counted, never lost silently.
func TestDecisionsAfterTheAuditTrailClosedAreCounted(t *testing.T) {
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, func() float64 { return 0 })
	var buf safeBuffer
	a := NewAuditor(&buf, AuditOptions{Log: logr.Discard(), Metrics: m})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()

	// Decisions race with the close: each one is written or counted.
	var recorded atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				a.Record(f.clk.Now(), Result{Code: CodeValid}, Request{}, RequestInfo{Path: "/x"}, 0)
				recorded.Add(1)
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	t0 := time.Now()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("closed in %s, %d recorded", time.Since(t0), recorded.Load())
	time.Sleep(5 * time.Millisecond)
	close(stop)
	wg.Wait()
	a.Record(f.clk.Now(), Result{Code: CodeValid}, Request{}, RequestInfo{Path: "/late"}, 0)
	recorded.Add(1)

	written := int64(strings.Count(buf.String(), "\n"))
	closed := a.DroppedFor(DropClosed)
	if closed == 0 {
		t.Fatal("no record counted after the close")
	}
	if written+a.Dropped() != recorded.Load() {
		t.Fatalf("%d recorded, %d written + %d dropped (%d after the close): some were lost silently", recorded.Load(), written, a.Dropped(), closed)
	}
	if got := labelled(t, reg, "keysmith_verify_audit_dropped_total", "reason", DropClosed); got != float64(closed) {
		t.Fatalf("dropped{reason=closed} = %v, want %d", got, closed)
	}
}

type safeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestAuditQueueIsBoundedInBytes: the queue was bounded by count only, so 65,536 records holding large
// requests could take gigabytes. Records are cut to bounded sizes and the queue holds at most QueueBytes.
func TestAuditQueueIsBoundedInBytes(t *testing.T) {
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, func() float64 { return 0 })
	bw := blockingWriter{release: make(chan struct{})}
	defer close(bw.release)
	const budget = 256 << 10
	a := NewAuditor(bw, AuditOptions{Queue: 65536, QueueBytes: budget, Log: logr.Discard(), Metrics: m})
	huge := strings.Repeat("p", 1<<20)
	var scopes []string
	for i := 0; i < 2*MaxRequiredScopes; i++ {
		scopes = append(scopes, strings.Repeat("s", 300)+":read")
	}
	for i := 0; i < 1000; i++ {
		a.Record(f.clk.Now(), Result{Code: CodeValid}, Request{Scopes: scopes}, RequestInfo{Caller: huge, Method: huge, Path: huge}, 0)
	}
	queued := int64(len(a.queue))
	if queued == 0 || queued+a.DroppedFor(DropQueueFull) != 1000 {
		t.Fatalf("%d queued, %d dropped", queued, a.DroppedFor(DropQueueFull))
	}
	if p := a.pending.Load(); p > budget {
		t.Fatalf("%d bytes queued, over the %d budget", p, budget)
	}
	if got := labelled(t, reg, "keysmith_verify_audit_dropped_total", "reason", DropQueueFull); got != float64(a.DroppedFor(DropQueueFull)) {
		t.Fatalf("metric %v", got)
	}
	q := <-a.queue
	r := q.rec
	if len(r.Caller) != MaxAuditCaller || len(r.Method) != MaxAuditMethod || len(r.Path) != MaxAuditPath || len(r.Scopes) != MaxRequiredScopes || len(r.Scopes[0]) != MaxScopeLength || !r.Truncated {
		t.Fatalf("record not cut: caller %d, method %d, path %d, %d scopes of %d, truncated %v", len(r.Caller), len(r.Method), len(r.Path), len(r.Scopes), len(r.Scopes[0]), r.Truncated)
	}
	// The record holds copies: the request's memory is not kept alive by a queued record.
	if start, end := uintptr(unsafe.Pointer(unsafe.StringData(huge))), uintptr(unsafe.Pointer(unsafe.StringData(huge)))+uintptr(len(huge)); inside(r.Path, start, end) || inside(r.Caller, start, end) {
		t.Fatal("the record points into the request")
	}
	if inside(r.Scopes[0], uintptr(unsafe.Pointer(unsafe.StringData(scopes[0]))), uintptr(unsafe.Pointer(unsafe.StringData(scopes[0])))+uintptr(len(scopes[0]))) {
		t.Fatal("the record's scopes point into the request")
	}
}

func inside(s string, start, end uintptr) bool {
	p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
	return p >= start && p < end
}

func TestTruncateKeepsCharacters(t *testing.T) {
	s, cut := truncate("/é/"+strings.Repeat("ü", 600), MaxAuditPath)
	if !cut || len(s) > MaxAuditPath || !strings.HasPrefix(s, "/é/") || strings.ContainsRune(s, '\uFFFD') || !utf8Valid(s) {
		t.Fatalf("cut to %d bytes, valid %v", len(s), utf8Valid(s))
	}
	if s, cut := truncate("short", 10); s != "short" || cut {
		t.Fatal("cut a short string")
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

func TestAuditRecordsConstraints(t *testing.T) {
	f := newFixture(t)
	var buf bytes.Buffer
	s := newService(t, f, &buf)
	rec := httptestAuthz(s, "/authz?namespaces=other,elsewhere&environment=live", f.active)
	if rec != 403 {
		t.Fatalf("status %d", rec)
	}
	recs := drain(t, s.Audit, &buf)
	if len(recs) != 1 || recs[0].Code != CodeNotAccepted || recs[0].Namespace != "pay" ||
		strings.Join(recs[0].AcceptNamespaces, ",") != "other,elsewhere" || recs[0].AcceptEnvironment != "live" || recs[0].Truncated {
		t.Fatalf("records %+v", recs)
	}
}

func httptestAuthz(s *Service, target, key string) int {
	req := httptest.NewRequest("GET", target, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	return rec.Code
}
