package operator

import (
	"context"
	"errors"
	"net"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"
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
func newInformer(lw toolscache.ListerWatcher, obj runtime.Object, resync time.Duration, indexers toolscache.Indexers) toolscache.SharedIndexInformer {
	return toolscache.NewSharedIndexInformer(&patientListerWatcher{lw: toolscache.ToListerWatcherWithContext(lw), retry: OutageRetry}, obj, resync, indexers)
}

type patientListerWatcher struct {
	lw    toolscache.ListerWatcherWithContext
	retry time.Duration
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

func (p *patientListerWatcher) ListWithContext(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	return patiently(ctx, p.retry, func() (runtime.Object, error) { return p.lw.ListWithContext(ctx, opts) })
}

func (p *patientListerWatcher) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return patiently(ctx, p.retry, func() (watch.Interface, error) { return p.lw.WatchWithContext(ctx, opts) })
}

func (p *patientListerWatcher) List(opts metav1.ListOptions) (runtime.Object, error) {
	return p.ListWithContext(context.Background(), opts)
}

func (p *patientListerWatcher) Watch(opts metav1.ListOptions) (watch.Interface, error) {
	return p.WatchWithContext(context.Background(), opts)
}
