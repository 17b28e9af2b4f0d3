package operator

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/verify"
)

// OutageRetry is how often the informers try the API server again while it cannot be reached.
const OutageRetry = time.Second

// newInformer builds the cache's informers on a ListerWatcher that waits out an API server outage.
//
// client-go's reflector backs off exponentially while the API server refuses connections: after an
// outage of half a minute it waits 30 to 60 s before its next attempt, and all that time the manager
// acts on what it saw before the outage (the first rotation after a 35 s restart took 44 to 47 s in
// make chaos). Here a List or Watch that fails because the API server cannot be reached is retried every
// OutageRetry instead, inside the call, so the reflector never backs off for it and resumes within a
// second of the API server's return. Every other error reaches the reflector unchanged.
//
// Each ApiKey informer (one per namespace served, or one) also tells the verifier's index whether its
// watch is open (a verify.WatchState of its own): while these retries go on, or between a watch's end and
// the next one, the index is not being kept current, although no watch error handler hears of it.
func newInformer(ix *verify.MemoryIndex) func(toolscache.ListerWatcher, runtime.Object, time.Duration, toolscache.Indexers) toolscache.SharedIndexInformer {
	return func(lw toolscache.ListerWatcher, obj runtime.Object, resync time.Duration, indexers toolscache.Indexers) toolscache.SharedIndexInformer {
		p := &patientListerWatcher{lw: toolscache.ToListerWatcherWithContext(lw), retry: OutageRetry}
		if _, ok := obj.(*v1alpha1.ApiKey); ok {
			p.report = ix.NewWatchState()
		}
		return toolscache.NewSharedIndexInformer(p, obj, resync, indexers)
	}
}

// watchReporter hears when an ApiKey informer's watch stops and starts (verify.WatchState).
type watchReporter interface {
	WatchStopped()
	WatchStarted()
}

type patientListerWatcher struct {
	lw     toolscache.ListerWatcherWithContext
	retry  time.Duration
	report watchReporter // nil for informers of other kinds
}

func (p *patientListerWatcher) stopped() {
	if p.report != nil {
		p.report.WatchStopped()
	}
}

// unreachable reports whether err means the API server could not be reached or is shutting down, as
// opposed to an answer about the request.
func unreachable(err error) bool {
	var netErr net.Error
	return utilnet.IsConnectionRefused(err) || utilnet.IsConnectionReset(err) || utilnet.IsProbableEOF(err) ||
		apierrors.IsServiceUnavailable(err) || apierrors.IsTooManyRequests(err) ||
		(errors.As(err, &netErr) && netErr.Timeout())
}

func patiently[T any](ctx context.Context, retry time.Duration, call func() (T, error)) (T, error) {
	for {
		v, err := call()
		if err == nil || !unreachable(err) || ctx.Err() != nil {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(retry):
		}
	}
}

// ListWithContext lists: the reflector lists when it has no watch (at start, and after a watch failed
// in a way that resuming cannot fix).
func (p *patientListerWatcher) ListWithContext(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	p.stopped()
	return patiently(ctx, p.retry, func() (runtime.Object, error) { return p.lw.ListWithContext(ctx, opts) })
}

func (p *patientListerWatcher) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	w, err := patiently(ctx, p.retry, func() (watch.Interface, error) {
		w, err := p.lw.WatchWithContext(ctx, opts)
		if err != nil {
			p.stopped()
		}
		return w, err
	})
	if err != nil || p.report == nil {
		return w, err
	}
	p.report.WatchStarted()
	return &reportedWatch{Interface: w, report: p.report}, nil
}

// reportedWatch reports its end: the reflector stops every watch it is done with (closed by the API
// server, an error event, a stop).
type reportedWatch struct {
	watch.Interface
	report watchReporter
	once   sync.Once
}

func (w *reportedWatch) Stop() {
	w.once.Do(w.report.WatchStopped)
	w.Interface.Stop()
}

func (p *patientListerWatcher) List(opts metav1.ListOptions) (runtime.Object, error) {
	return p.ListWithContext(context.Background(), opts)
}

func (p *patientListerWatcher) Watch(opts metav1.ListOptions) (watch.Interface, error) {
	return p.WatchWithContext(context.Background(), opts)
}
