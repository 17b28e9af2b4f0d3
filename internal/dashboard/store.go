package dashboard

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
)

// store keeps the ApiKeys the user can see, from a list and then a watch with their client, and tells
// the event streams when anything changed.
type store struct {
	c        client.WithWatch
	explicit bool   // the namespace was asked for (-n): never widened or narrowed
	ns       string // "" = every namespace
	fallback string

	mu      sync.Mutex
	items   map[string]*v1alpha1.ApiKey
	synced  bool   // the first list succeeded
	live    bool   // a watch is open
	err     error  // the last list or watch error, nil when live
	notice  string // why the scope is narrower than asked
	changed chan struct{}
	version uint64

	// retry is the relist backoff (tests shorten it).
	retry backoff
}

// backoff is how long run waits before listing again after a failed list or watch, or a watch that
// ended sooner than ResetAfter (an API server that closes every watch at once must not be listed in a
// tight loop): Min doubling to Max, each wait drawn at random in [d/2, d] (jitter, so that many
// dashboards do not relist in step). A watch that lived ResetAfter or longer starts again from Min, and
// is listed again at once.
type backoff struct {
	Min, Max, ResetAfter time.Duration
	// OnWait, if set, is told of every wait (tests).
	OnWait func(time.Duration)
}

var defaultBackoff = backoff{Min: time.Second, Max: 30 * time.Second, ResetAfter: time.Minute}

// jitter returns a wait in [d/2, d].
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

func newStore(c client.WithWatch, ns, fallback string) *store {
	if fallback == "" {
		fallback = "default"
	}
	return &store{c: c, explicit: ns != "", ns: ns, fallback: fallback, items: map[string]*v1alpha1.ApiKey{}, changed: make(chan struct{}), retry: defaultBackoff}
}

// state is a consistent copy of what the store holds.
type state struct {
	items     []*v1alpha1.ApiKey // sorted by namespace and name
	namespace string
	synced    bool
	live      bool
	err       error
	notice    string
	version   uint64
	changed   <-chan struct{} // closed at the next change
}

func (s *store) state() state {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := state{namespace: s.ns, synced: s.synced, live: s.live, err: s.err, notice: s.notice, version: s.version, changed: s.changed}
	st.items = make([]*v1alpha1.ApiKey, 0, len(s.items))
	for _, a := range s.items {
		st.items = append(st.items, a)
	}
	sort.Slice(st.items, func(i, j int) bool {
		if st.items[i].Namespace != st.items[j].Namespace {
			return st.items[i].Namespace < st.items[j].Namespace
		}
		return st.items[i].Name < st.items[j].Name
	})
	return st
}

func (s *store) get(ns, name string) *v1alpha1.ApiKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.items[ns+"/"+name]
}

// update applies f under the lock and wakes the streams.
func (s *store) update(f func()) {
	s.mu.Lock()
	f()
	s.version++
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// run lists and watches until ctx ends, listing again after a broken, expired or closed watch: at once
// after a watch that lived long enough (the API server ends every watch after a while), else after a
// backoff with jitter (see backoff).
func (s *store) run(ctx context.Context) {
	b := s.retry
	next := b.Min
	for ctx.Err() == nil {
		rv, err := s.list(ctx)
		if err == nil {
			started := time.Now()
			err = s.watch(ctx, rv)
			if ctx.Err() != nil {
				return
			}
			if time.Since(started) >= b.ResetAfter {
				next = b.Min
				if err == nil || apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
					continue // closed by the server, or too old, after a healthy life: list again at once
				}
			}
			if err == nil || apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
				err = nil // ended soon: not an error to show, but no reason to list again at once
			}
		}
		if ctx.Err() != nil {
			return
		}
		s.update(func() {
			s.live = false
			if err != nil {
				s.err = err
			}
		})
		wait := jitter(next)
		if b.OnWait != nil {
			b.OnWait(wait)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		next = min(2*next, b.Max)
	}
}

// list replaces the store's content. A user who may not list ApiKeys across namespaces (Forbidden) and
// did not name a namespace sees the kubeconfig context's namespace instead.
func (s *store) list(ctx context.Context) (string, error) {
	var l v1alpha1.ApiKeyList
	err := s.c.List(ctx, &l, client.InNamespace(s.ns))
	if apierrors.IsForbidden(err) && !s.explicit && s.ns == "" {
		notice := fmt.Sprintf("You may not list ApiKeys in every namespace (%v); showing namespace %s.", err, s.fallback)
		s.update(func() { s.ns, s.notice = s.fallback, notice })
		err = s.c.List(ctx, &l, client.InNamespace(s.ns))
	}
	if err != nil {
		return "", err
	}
	s.update(func() {
		s.items = make(map[string]*v1alpha1.ApiKey, len(l.Items))
		for i := range l.Items {
			a := &l.Items[i]
			s.items[a.Namespace+"/"+a.Name] = strip(a)
		}
		s.synced, s.live, s.err = true, true, nil
	})
	return l.ResourceVersion, nil
}

// watch applies the watch's events until it closes (nil) or fails.
func (s *store) watch(ctx context.Context, rv string) error {
	w, err := s.c.Watch(ctx, &v1alpha1.ApiKeyList{}, client.InNamespace(s.ns),
		&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true}})
	if err != nil {
		return err
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.ResultChan():
			if !ok {
				return nil
			}
			switch ev.Type {
			case watch.Added, watch.Modified:
				if a, ok := ev.Object.(*v1alpha1.ApiKey); ok {
					s.update(func() { s.items[a.Namespace+"/"+a.Name] = strip(a) })
				}
			case watch.Deleted:
				if a, ok := ev.Object.(*v1alpha1.ApiKey); ok {
					s.update(func() { delete(s.items, a.Namespace+"/"+a.Name) })
				}
			case watch.Error:
				if st, ok := ev.Object.(*metav1.Status); ok {
					return &apierrors.StatusError{ErrStatus: *st}
				}
				return fmt.Errorf("watch error: %v", ev.Object)
			}
		}
	}
}

// strip drops what the dashboard never shows and should not keep: annotations (keysmith.dev/revoke may
// hold a key someone pasted instead of its id) and managed fields.
func strip(a *v1alpha1.ApiKey) *v1alpha1.ApiKey {
	a = a.DeepCopy()
	a.Annotations = nil
	a.ManagedFields = nil
	return a
}
