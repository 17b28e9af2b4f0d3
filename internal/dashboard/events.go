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
	send := func() (<-chan struct{}, bool) {
		st := s.store.state()
		b, err := marshal(buildSnapshot(st, s.now()))
		if err != nil {
			return nil, false
		}
		if _, err := w.Write(append(append([]byte("event: snapshot\ndata: "), b...), '\n', '\n')); err != nil {
			return nil, false
		}
		return st.changed, rc.Flush() == nil
	}
	changed, ok := send()
	for ok {
		select {
		case <-ctx.Done():
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
			if _, err := w.Write([]byte(": ping\n\n")); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}
