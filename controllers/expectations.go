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
// every deletion still do.
type ownWrites struct {
	mu  sync.Mutex
	rvs map[types.UID]string
}

func (o *ownWrites) add(uid types.UID, rv string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.rvs == nil {
		o.rvs = map[types.UID]string{}
	}
	o.rvs[uid] = rv
}

// mine reports (once) whether this version of the object is keysmith's own write.
func (o *ownWrites) mine(uid types.UID, rv string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.rvs[uid] != rv {
		return false
	}
	delete(o.rvs, uid)
	return true
}
