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
	syncMu      sync.Mutex
	lastSync    func() string // the reflector's last synced resourceVersion
	syncAtBreak string        // its value when the watch broke
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

// TrackReflector gives the index the informer's last synced resourceVersion, which moves whenever the
// reflector has listed or watched successfully.
func (ix *MemoryIndex) TrackReflector(lastSync func() string) {
	ix.syncMu.Lock()
	defer ix.syncMu.Unlock()
	ix.lastSync = lastSync
}

// WatchBroken records that the watch failed. The first failure starts the staleness clock.
func (ix *MemoryIndex) WatchBroken() { ix.brokenAt(ix.clock.Now()) }

// brokenAt starts the staleness clock at t, the last instant the index is known to have been current,
// unless it already runs.
func (ix *MemoryIndex) brokenAt(t time.Time) {
	ix.syncMu.Lock()
	defer ix.syncMu.Unlock()
	if ix.brokenSince.CompareAndSwap(0, t.UnixNano()) {
		ix.syncAtBreak = ix.lastSyncLocked()
	}
}

func (ix *MemoryIndex) lastSyncLocked() string {
	if ix.lastSync == nil {
		return ""
	}
	return ix.lastSync()
}

// WatchHealthy records that the watch delivers again (an event arrived, or the reflector synced).
func (ix *MemoryIndex) WatchHealthy() { ix.brokenSince.Store(0) }

// resynced reports whether the reflector has synced since the watch broke.
func (ix *MemoryIndex) resynced() bool {
	ix.syncMu.Lock()
	defer ix.syncMu.Unlock()
	return ix.lastSync != nil && ix.lastSyncLocked() != ix.syncAtBreak
}

// Probe keeps the staleness clock honest; it runs every interval until ctx ends.
//
// While the watch is healthy it pings the API server: client-go retries a watch whose connection is
// refused without reporting an error, so a dead API server would otherwise go unnoticed. A failed ping
// starts the staleness clock at the last successful one.
//
// While the watch is broken it lists the ApiKeys itself and replaces the index with the answer, so the
// index is current as of that list (the reflector may wait up to 30 s before it retries after an
// outage). Once the reflector has synced again (its resourceVersion moved), the watch is healthy and
// the listing stops.
func (ix *MemoryIndex) Probe(ctx context.Context, every time.Duration, ping func(context.Context) error, list func(context.Context) ([]v1alpha1.ApiKey, error)) {
	t := time.NewTicker(every)
	defer t.Stop()
	lastOK, wasBroken := ix.clock.Now(), false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, 2*every)
		if ix.brokenSince.Load() == 0 {
			if wasBroken { // an event ended the break
				lastOK, wasBroken = ix.clock.Now(), false
			}
			if err := ping(rctx); err == nil {
				lastOK = ix.clock.Now()
			} else if ctx.Err() == nil {
				ix.brokenAt(lastOK)
			}
			cancel()
			continue
		}
		wasBroken = true
		if ix.resynced() {
			cancel()
			ix.WatchHealthy()
			lastOK, wasBroken = ix.clock.Now(), false
			continue
		}
		start := ix.clock.Now()
		ix.syncMu.Lock()
		before := ix.lastSyncLocked()
		ix.syncMu.Unlock()
		items, err := list(rctx)
		cancel()
		if err != nil {
			continue
		}
		ix.syncMu.Lock()
		if ix.lastSyncLocked() == before && ix.brokenSince.Load() != 0 {
			// The watch delivered nothing meanwhile, so the list is the newest state known.
			ix.replaceAll(items)
			ix.brokenSince.Store(start.UnixNano())
		}
		ix.syncMu.Unlock()
	}
}

// replaceAll makes the index hold exactly items.
func (ix *MemoryIndex) replaceAll(items []v1alpha1.ApiKey) {
	present := make(map[types.NamespacedName]bool, len(items))
	for i := range items {
		present[types.NamespacedName{Namespace: items[i].Namespace, Name: items[i].Name}] = true
		ix.upsert(&items[i])
	}
	for nn := range ix.entries() {
		if !present[nn] {
			ix.Delete(nn)
		}
	}
}

// Upsert replaces what the index holds for ak. Last-used times carry over to the new entries.
func (ix *MemoryIndex) Upsert(ak *v1alpha1.ApiKey) {
	ix.WatchHealthy()
	ix.upsert(ak)
}

func (ix *MemoryIndex) upsert(ak *v1alpha1.ApiKey) {
	nn := types.NamespacedName{Namespace: ak.Namespace, Name: ak.Name}
	if !ix.scope.includes(ak) {
		ix.Delete(nn)
		return
	}
	deleting := !ak.DeletionTimestamp.IsZero()
	env := ak.Spec.Environment
	if env == "" {
		env = v1alpha1.EnvironmentLive
	}
	scopes := append([]string(nil), ak.Spec.Scopes...)
	fresh := make([]*Entry, 0, len(ak.Status.Keys))
	for _, k := range ak.Status.Keys {
		d, err := keys.ParseHash(k.Hash)
		if err != nil {
			continue
		}
		fresh = append(fresh, &Entry{
			Digest: d, KeyID: k.ID, Namespace: ak.Namespace, Name: ak.Name, Environment: env, State: k.State,
			Scopes: scopes, NotAfter: k.NotAfter.Time, Deleting: deleting,
		})
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	old := ix.byObject[nn]
	for _, e := range old {
		ix.unindex(e)
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
		ix.unindex(e)
	}
	delete(ix.byObject, nn)
}

// unindex drops e from the digest map, unless the digest now belongs to another entry.
func (ix *MemoryIndex) unindex(e *Entry) {
	if ix.byDigest[e.Digest] == e {
		delete(ix.byDigest, e.Digest)
	}
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
