package dashboard

import (
	"net/http"
	"time"
)

// Event stream timing: changes are sent at most every debounce, and a snapshot at least every refresh
// (the relative times, "in 3d", and the warnings move with the clock).
const (
	debounce  = 150 * time.Millisecond
	refresh   = 30 * time.Second
	keepalive = 15 * time.Second
)

// A stalled client (a suspended tab, a process that stopped reading) must not hold one of the
// maxStreams slots for ever: each write has streamWriteTimeout to complete (http.ResponseController's
// write deadline), and a stream ends after streamMaxLife with an "event: reconnect" that the page
// answers by opening a new one at once (a stream whose client reads nothing can live that long, as long
// as the socket buffers take the writes). Variables for tests.
var (
	streamWriteTimeout = 10 * time.Second
	streamMaxLife      = 10 * time.Minute
)

// events streams a snapshot now and after every change, as Server-Sent Events (event: snapshot).
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	select {
	case s.streams <- struct{}{}:
		defer func() { <-s.streams }()
	default:
		writeError(w, http.StatusServiceUnavailable, "too many open event streams: close other dashboard tabs", "")
		return
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	ctx := r.Context()
	tick := time.NewTicker(refresh)
	defer tick.Stop()
	ping := time.NewTicker(keepalive)
	defer ping.Stop()
	end := time.NewTimer(streamMaxLife)
	defer end.Stop()
	// write sends one event within streamWriteTimeout; false when the client did not take it.
	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	send := func() (<-chan struct{}, bool) {
		st := s.store.state()
		b, err := marshal(buildSnapshot(st, s.now()))
		if err != nil {
			return nil, false
		}
		return st.changed, write(append(append([]byte("event: snapshot\ndata: "), b...), '\n', '\n'))
	}
	changed, ok := send()
	for ok {
		select {
		case <-ctx.Done():
			return
		case <-end.C:
			write([]byte("event: reconnect\ndata: {}\n\n"))
			return
		case <-changed:
			// Let a burst of watch events (a rotation writes status and the Secret) settle.
			select {
			case <-ctx.Done():
				return
			case <-time.After(debounce):
			}
			changed, ok = send()
		case <-tick.C:
			changed, ok = send()
		case <-ping.C:
			ok = write([]byte(": ping\n\n"))
		}
	}
}
