package controllers

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// superseded remembers, per ApiKey, the resourceVersions that keysmith itself replaced with a write. The
// informer delivers keysmith's own writes a moment after they succeed, so the reconcile that follows a
// write often reads the version just replaced. Acting on it would redo the work and fail on the
// optimistic lock; instead the reconcile ends and waits for the watch event of the newer version, which
// is already on its way. Lost on restart, when the caches start fresh anyway.
type superseded struct {
	mu  sync.Mutex
	rvs map[types.UID]map[string]struct{}
}

// add records that rv of uid was replaced by keysmith's own write.
func (s *superseded) add(uid types.UID, rv string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rvs == nil {
		s.rvs = map[types.UID]map[string]struct{}{}
	}
	if s.rvs[uid] == nil {
		s.rvs[uid] = map[string]struct{}{}
	}
	s.rvs[uid][rv] = struct{}{}
}

// stale reports whether rv is a version keysmith already replaced. Seeing any other version means the
// cache has caught up, and the record is dropped.
func (s *superseded) stale(uid types.UID, rv string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	set, ok := s.rvs[uid]
	if !ok {
		return false
	}
	if _, old := set[rv]; old {
		return true
	}
	delete(s.rvs, uid)
	return false
}

// forget drops what is known about uid (the ApiKey is gone).
func (s *superseded) forget(uid types.UID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.rvs, uid)
}

// ownWrites remembers the Secret versions keysmith wrote itself, so that their watch events do not
// trigger a reconcile that could only find nothing to do. Any other version (someone else's edit) and
// every deletion still do. The watch event of a write can arrive before the write call returns, so a
// Secret with a write in flight counts as keysmith's own too: a foreign edit in that window makes the
// write fail on its resourceVersion (an update) or cannot exist yet (a create), and the failed write
// requeues the ApiKey anyway.
type ownWrites struct {
	mu sync.Mutex
	m  map[types.NamespacedName]*ownWrite
}

type ownWrite struct {
	inFlight int
	rv       string // version produced by the last finished write, until its event is seen
	early    string // version whose event arrived while a write was in flight
}

// track runs write, a create or update of the Secret key that returns the version it produced.
func (o *ownWrites) track(key types.NamespacedName, write func() (string, error)) error {
	o.mu.Lock()
	if o.m == nil {
		o.m = map[types.NamespacedName]*ownWrite{}
	}
	w := o.m[key]
	if w == nil {
		w = &ownWrite{}
		o.m[key] = w
	}
	w.inFlight++
	o.mu.Unlock()

	rv, err := write()

	o.mu.Lock()
	defer o.mu.Unlock()
	w.inFlight--
	if err == nil && rv != w.early {
		w.rv = rv
	}
	w.early = ""
	if w.inFlight == 0 && w.rv == "" {
		delete(o.m, key)
	}
	return err
}

// mine reports (once) whether this version of the Secret is keysmith's own write.
func (o *ownWrites) mine(key types.NamespacedName, rv string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	w := o.m[key]
	switch {
	case w == nil:
		return false
	case w.inFlight > 0:
		w.early = rv
		return true
	case w.rv == rv:
		delete(o.m, key)
		return true
	}
	return false
}
