package operator

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
)

// slowSink records how many writes were in flight at once.
type slowSink struct {
	inFlight, most, done atomic.Int32
}

func (s *slowSink) write() (*eventsv1.Event, error) {
	n := s.inFlight.Add(1)
	for {
		m := s.most.Load()
		if n <= m || s.most.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(2 * time.Millisecond)
	s.inFlight.Add(-1)
	s.done.Add(1)
	return &eventsv1.Event{}, nil
}

func (s *slowSink) Create(context.Context, *eventsv1.Event) (*eventsv1.Event, error) {
	return s.write()
}
func (s *slowSink) Update(context.Context, *eventsv1.Event) (*eventsv1.Event, error) {
	return s.write()
}
func (s *slowSink) Patch(context.Context, *eventsv1.Event, []byte) (*eventsv1.Event, error) {
	return s.write()
}

func TestBoundedSink(t *testing.T) {
	for _, tc := range []struct {
		name   string
		slots  int
		writes int
	}{
		{"a burst waits its turn", EventWriters, 60},
		{"one at a time", 1, 20},
		{"fewer writes than slots", 4, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inner := &slowSink{}
			s := &boundedSink{sink: inner, slots: make(chan struct{}, tc.slots)}
			var wg sync.WaitGroup
			for i := 0; i < tc.writes; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					var err error
					switch i % 3 {
					case 0:
						_, err = s.Create(context.Background(), &eventsv1.Event{})
					case 1:
						_, err = s.Update(context.Background(), &eventsv1.Event{})
					default:
						_, err = s.Patch(context.Background(), &eventsv1.Event{}, nil)
					}
					if err != nil {
						t.Errorf("write %d: %v", i, err)
					}
				}(i)
			}
			wg.Wait()
			if got := int(inner.done.Load()); got != tc.writes {
				t.Errorf("%d writes reached the sink, want all %d", got, tc.writes)
			}
			if most := int(inner.most.Load()); most > tc.slots || most > tc.writes {
				t.Errorf("%d writes in flight at once, want at most %d", most, min(tc.slots, tc.writes))
			}
		})
	}
}

func TestBoundedSinkGivesUpWhenStopped(t *testing.T) {
	s := &boundedSink{sink: &slowSink{}, slots: make(chan struct{}, 1)}
	s.slots <- struct{}{} // every slot taken
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := s.Create(ctx, &eventsv1.Event{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Create with every slot taken and the context ending: %v, want the context's error", err)
	}
}
