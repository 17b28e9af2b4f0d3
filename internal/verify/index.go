package verify

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/keys"
)

// Errors returned by Ready.
var (
	ErrNotSynced = errors.New("the ApiKey informer has not synced yet")
	ErrStale     = errors.New("the ApiKey watch has been broken for longer than the staleness bound")
)

// Scope limits which ApiKeys a verifier serves.
type Scope struct {
	// Namespaces, when not empty, are the only namespaces served.
	Namespaces []string
	// Selector, when not nil, selects the ApiKeys served by label.
	Selector labels.Selector
}

func (s Scope) includes(ak *v1alpha1.ApiKey) bool {
	if len(s.Namespaces) > 0 {
		found := false
		for _, ns := range s.Namespaces {
			found = found || ns == ak.Namespace
		}
		if !found {
			return false
		}
	}
	return s.Selector == nil || s.Selector.Matches(labels.Set(ak.Labels))
}

// MemoryIndex is the Index fed by ApiKey watch events.
type MemoryIndex struct {
	scope Scope
	clock clock.PassiveClock

	mu       sync.RWMutex
	byDigest map[keys.Digest]*Entry
	byObject map[types.NamespacedName][]*Entry

	synced      func() bool
	maxStale    time.Duration
	brokenSince atomic.Int64 // unix nanos; 0 while the watch is healthy
}

// NewMemoryIndex returns an empty index. synced reports whether the informer has synced; until it has,
// Ready fails. maxStale is how long a broken watch is tolerated before Ready fails.
func NewMemoryIndex(scope Scope, clk clock.PassiveClock, synced func() bool, maxStale time.Duration) *MemoryIndex {
	return &MemoryIndex{
		scope: scope, clock: clk, synced: synced, maxStale: maxStale,
		byDigest: map[keys.Digest]*Entry{}, byObject: map[types.NamespacedName][]*Entry{},
	}
}

// Lookup implements Index.
func (ix *MemoryIndex) Lookup(d keys.Digest) (*Entry, bool) {
	ix.mu.RLock()
	e, ok := ix.byDigest[d]
	ix.mu.RUnlock()
	return e, ok
}

// Ready implements Index.
func (ix *MemoryIndex) Ready() error {
	if !ix.synced() {
		return ErrNotSynced
	}
	if since := ix.brokenSince.Load(); since != 0 && ix.clock.Since(time.Unix(0, since)) > ix.maxStale {
		return ErrStale
	}
	return nil
}

// Len returns the number of keys indexed.
func (ix *MemoryIndex) Len() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return len(ix.byDigest)
}

// WatchBroken records that the watch failed. The first failure starts the staleness clock.
func (ix *MemoryIndex) WatchBroken() {
	ix.brokenSince.CompareAndSwap(0, ix.clock.Now().UnixNano())
}

// WatchHealthy records that the watch delivers again (an event arrived, or the API server answered).
func (ix *MemoryIndex) WatchHealthy() { ix.brokenSince.Store(0) }

// Upsert replaces what the index holds for ak. Last-used times carry over to the new entries.
func (ix *MemoryIndex) Upsert(ak *v1alpha1.ApiKey) {
	ix.WatchHealthy()
	nn := types.NamespacedName{Namespace: ak.Namespace, Name: ak.Name}
	if !ix.scope.includes(ak) {
		ix.Delete(nn)
		return
	}
	deleting := !ak.DeletionTimestamp.IsZero()
	scopes := append([]string(nil), ak.Spec.Scopes...)
	fresh := make([]*Entry, 0, len(ak.Status.Keys))
	for _, k := range ak.Status.Keys {
		d, err := keys.ParseHash(k.Hash)
		if err != nil {
			continue
		}
		fresh = append(fresh, &Entry{
			Digest: d, KeyID: k.ID, Namespace: ak.Namespace, Name: ak.Name, State: k.State,
			Scopes: scopes, NotAfter: k.NotAfter.Time, Deleting: deleting,
		})
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	old := ix.byObject[nn]
	for _, e := range old {
		delete(ix.byDigest, e.Digest)
	}
	for _, e := range fresh {
		for _, o := range old {
			if o.Digest == e.Digest {
				e.lastUsed.carry(&o.lastUsed)
			}
		}
		ix.byDigest[e.Digest] = e
	}
	ix.byObject[nn] = fresh
}

// Delete removes an ApiKey's keys: a deleted ApiKey's keys are unknown, hence refused.
func (ix *MemoryIndex) Delete(nn types.NamespacedName) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for _, e := range ix.byObject[nn] {
		delete(ix.byDigest, e.Digest)
	}
	delete(ix.byObject, nn)
}

// entriesOf returns the current entries of every ApiKey (for the last-used flusher).
func (ix *MemoryIndex) entries() map[types.NamespacedName][]*Entry {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	out := make(map[types.NamespacedName][]*Entry, len(ix.byObject))
	for nn, es := range ix.byObject {
		out[nn] = es
	}
	return out
}

// Probe keeps the staleness clock honest while the watch is broken: as soon as the API server answers a
// list again (the informer's reflector is then relisting too), the watch counts as healthy again.
func (ix *MemoryIndex) Probe(ctx context.Context, every time.Duration, list func(context.Context) error) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if ix.brokenSince.Load() == 0 {
			continue
		}
		if err := list(ctx); err == nil {
			ix.WatchHealthy()
		}
	}
}

// String describes the index state for logs.
func (ix *MemoryIndex) String() string {
	return fmt.Sprintf("%d keys, ready=%v", ix.Len(), ix.Ready() == nil)
}

// lastUsed is the newest accepted use of a key (unix seconds) and the newest value already flushed.
type lastUsed struct {
	used    atomic.Int64
	flushed atomic.Int64
}

func (l *lastUsed) record(now time.Time) {
	s := now.Unix()
	for {
		cur := l.used.Load()
		if s <= cur || l.used.CompareAndSwap(cur, s) {
			return
		}
	}
}

func (l *lastUsed) carry(from *lastUsed) {
	l.used.Store(from.used.Load())
	l.flushed.Store(from.flushed.Load())
}
