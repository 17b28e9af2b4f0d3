package dashboard

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// stalledClient is a connection whose reader stopped: every write blocks until the write deadline the
// handler set (for ever without one), as a full socket buffer does.
type stalledClient struct {
	header http.Header
	mu     sync.Mutex
	until  time.Time
	set    chan struct{}
}

func newStalledClient() *stalledClient {
	return &stalledClient{header: http.Header{}, set: make(chan struct{}, 1)}
}

func (c *stalledClient) Header() http.Header { return c.header }
func (c *stalledClient) WriteHeader(int)     {}
func (c *stalledClient) FlushError() error   { return nil }

func (c *stalledClient) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.until = t
	c.mu.Unlock()
	select {
	case c.set <- struct{}{}:
	default:
	}
	return nil
}

func (c *stalledClient) Write(b []byte) (int, error) {
	for {
		c.mu.Lock()
		until := c.until
		c.mu.Unlock()
		if !until.IsZero() && time.Now().After(until) {
			return 0, os.ErrDeadlineExceeded
		}
		if until.IsZero() {
			<-c.set // no deadline: blocked until one is set (never, without the fix)
			continue
		}
		time.Sleep(time.Until(until) + time.Millisecond)
	}
}

func (f *fixture) eventsRequest() *http.Request {
	r := httptest.NewRequest("GET", "/api/events", nil)
	r.Host = f.s.host
	r.AddCookie(&http.Cookie{Name: f.s.cookie, Value: f.s.session})
	r.Header.Set(TokenHeader, f.s.token)
	return r
}

// Clients that stopped reading cannot hold the event stream slots: each write has a deadline, after
// which the stream ends and frees its slot.
func TestStalledStreamsFreeTheirSlots(t *testing.T) {
	old := streamWriteTimeout
	streamWriteTimeout = 50 * time.Millisecond
	defer func() { streamWriteTimeout = old }()
	f := newFixture(t, Options{})
	var wg sync.WaitGroup
	for range maxStreams {
		wg.Add(1)
		go func() { defer wg.Done(); f.s.ServeHTTP(newStalledClient(), f.eventsRequest()) }()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%d stalled streams still hold their slots", len(f.s.streams))
	}
	if n := len(f.s.streams); n != 0 {
		t.Fatalf("%d slots held", n)
	}
}

// A stream ends after streamMaxLife with an event telling the page to reconnect at once (so a client
// that reads nothing but whose socket buffers take the writes holds a slot that long at most).
func TestStreamsEndAfterTheirMaximumLife(t *testing.T) {
	old := streamMaxLife
	streamMaxLife = 100 * time.Millisecond
	defer func() { streamMaxLife = old }()
	f := newFixture(t, Options{})
	w := httptest.NewRecorder()
	done := make(chan struct{})
	go func() { f.s.ServeHTTP(w, f.eventsRequest()); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end")
	}
	if b := w.Body.String(); !strings.HasPrefix(b, "event: snapshot\ndata: ") || !strings.HasSuffix(b, "event: reconnect\ndata: {}\n\n") {
		t.Fatalf("stream %q", b)
	}
	if js, _ := assets.ReadFile("assets/app.js"); !strings.Contains(string(js), "event === 'reconnect'") {
		t.Fatal("the page does not reconnect on event: reconnect")
	}
}
