package dashboard

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

// closingWatches is a client whose every watch closes cleanly after life (0: at once), counting lists.
func closingWatches(life func() time.Duration) (client.WithWatch, *atomic.Int64) {
	lists := &atomic.Int64{}
	c := interceptor.NewClient(fake.NewClientBuilder().WithScheme(scheme()).Build(), interceptor.Funcs{
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			lists.Add(1)
			return c.List(ctx, list, opts...)
		},
		Watch: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) (watch.Interface, error) {
			w := watch.NewFake()
			d := life()
			if d == 0 {
				w.Stop()
			} else {
				time.AfterFunc(d, w.Stop)
			}
			return w, nil
		},
	})
	return c, lists
}

// An API server that closes every watch at once is not listed in a tight loop: the store waits Min,
// doubling to Max, each wait with jitter in [d/2, d].
func TestRelistBacksOffWhenWatchesCloseAtOnce(t *testing.T) {
	c, lists := closingWatches(func() time.Duration { return 0 })
	st := newStore(c, "team-a", "")
	var mu sync.Mutex
	var waits []time.Duration
	st.retry = backoff{Min: 20 * time.Millisecond, Max: 160 * time.Millisecond, ResetAfter: time.Hour,
		OnWait: func(d time.Duration) { mu.Lock(); waits = append(waits, d); mu.Unlock() }}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st.run(ctx)
	mu.Lock()
	defer mu.Unlock()
	// Without a backoff this lists thousands of times a second; with it, 20+40+80+160+160+... ms.
	if n := lists.Load(); n > 15 || n < 3 {
		t.Fatalf("%d lists in 1s, want about 8", n)
	}
	bound := 20 * time.Millisecond
	for i, w := range waits {
		if w < bound/2 || w > bound {
			t.Errorf("wait %d is %s, want within [%s, %s]", i, w, bound/2, bound)
		}
		bound = min(2*bound, 160*time.Millisecond)
	}
	if st.state().err != nil {
		t.Errorf("a cleanly closed watch shown as an error: %v", st.state().err)
	}
}

// A watch that lived ResetAfter or longer is followed by a list at once, and the backoff starts again
// from Min.
func TestRelistAtOnceAfterALongWatch(t *testing.T) {
	var n atomic.Int64
	// Watches 1 and 2 close at once (two waits: 20, 40 ms), watch 3 lives 80 ms > ResetAfter (no wait),
	// watch 4 closes at once (a wait of 20 ms again).
	c, _ := closingWatches(func() time.Duration {
		if n.Add(1) == 3 {
			return 80 * time.Millisecond
		}
		return 0
	})
	st := newStore(c, "team-a", "")
	var mu sync.Mutex
	var waits []time.Duration
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st.retry = backoff{Min: 20 * time.Millisecond, Max: time.Second, ResetAfter: 50 * time.Millisecond,
		OnWait: func(d time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			waits = append(waits, d)
			if len(waits) == 3 {
				cancel()
			}
		}}
	done := make(chan struct{})
	go func() { st.run(ctx); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("run did not end")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(waits) != 3 || waits[0] > 20*time.Millisecond || waits[1] < 20*time.Millisecond || waits[1] > 40*time.Millisecond || waits[2] > 20*time.Millisecond {
		t.Fatalf("waits %v, want [≤20ms, 20-40ms, ≤20ms]: reset after the long watch", waits)
	}
	if got := n.Load(); got != 4 {
		t.Fatalf("%d watches, want 4", got)
	}
}

func TestJitter(t *testing.T) {
	for range 1000 {
		if d := jitter(time.Second); d < 500*time.Millisecond || d > time.Second {
			t.Fatalf("jitter(1s) = %s", d)
		}
	}
}
