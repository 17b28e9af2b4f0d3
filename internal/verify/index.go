package verify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/keys"
	"github.com/keysmith-dev/keysmith/internal/rotation"
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
	// versions holds the uid and resourceVersion of each ApiKey indexed; tombstones the resourceVersion
	// of a list that no longer held an ApiKey. An event older than either never replaces what they say.
	versions   map[types.NamespacedName]objectVersion
	tombstones map[types.NamespacedName]tombstone

	synced      func() bool
	maxStale    time.Duration
	brokenSince atomic.Int64 // unix nanos; 0 while the watch is healthy
	syncMu      sync.Mutex
	lastSync    func() string // the reflector's last synced resourceVersion
	syncAtBreak string        // its value when the watch broke
	// watches are the watch states of the ApiKey informers (one per namespace served, or one), each
	// reported by its ListerWatcher; watchesMu guards the slice, not the states.
	watchesMu sync.Mutex
	watches   []*WatchState
}

// WatchState is whether one informer's watch delivers: since when it has not (closed, or failing to
// open, which client-go retries without telling anyone), 0 while a watch is open.
type WatchState struct {
	ix      *MemoryIndex
	stopped atomic.Int64
}

// WatchStopped records that the informer has no open watch. Unless a watch opens again within
// watchGrace, the staleness clock starts at this instant.
func (w *WatchState) WatchStopped() {
	w.stopped.CompareAndSwap(0, w.ix.clock.Now().UnixNano())
}

// WatchStarted records that a watch is open again: it delivers every change since the informer's last
// resourceVersion, and the index ignores whatever of that is older than what it holds. Once every
// informer has a watch, the break is over.
func (w *WatchState) WatchStarted() {
	if w.stopped.Swap(0) != 0 && w.ix.stoppedSince() == 0 {
		w.ix.WatchHealthy()
	}
}

// NewWatchState registers the watch state of one more ApiKey informer.
func (ix *MemoryIndex) NewWatchState() *WatchState {
	w := &WatchState{ix: ix}
	ix.watchesMu.Lock()
	defer ix.watchesMu.Unlock()
	ix.watches = append(ix.watches, w)
	return w
}

// stoppedSince returns the earliest instant (unix nanos) at which a watch stopped that has not opened
// again, or 0.
func (ix *MemoryIndex) stoppedSince() int64 {
	ix.watchesMu.Lock()
	defer ix.watchesMu.Unlock()
	earliest := int64(0)
	for _, w := range ix.watches {
		if s := w.stopped.Load(); s != 0 && (earliest == 0 || s < earliest) {
			earliest = s
		}
	}
	return earliest
}

// tombstoneTTL bounds how long a tombstone is kept when the informer's resourceVersion is unknown (an
// informer per namespace): a watch resumed after longer than that starts with a fresh list anyway (etcd
// compacts every 5 minutes).
const tombstoneTTL = 10 * time.Minute

type tombstone struct {
	rv uint64
	at time.Time
}

// objectVersion identifies the version of an ApiKey the index holds.
type objectVersion struct {
	uid types.UID
	rv  uint64
}

// watchGrace is how long the watch may be stopped before the staleness clock starts: the reflector
// reopens a watch the API server closed (every few minutes, by design) within milliseconds.
const watchGrace = 2 * time.Second

// NewMemoryIndex returns an empty index. synced reports whether the informer has synced; until it has,
// Ready fails. maxStale is how long a broken watch is tolerated before Ready fails.
func NewMemoryIndex(scope Scope, clk clock.PassiveClock, synced func() bool, maxStale time.Duration) *MemoryIndex {
	ix := &MemoryIndex{
		scope: scope, clock: clk, synced: synced, maxStale: maxStale,
		byDigest: map[keys.Digest]*Entry{}, byObject: map[types.NamespacedName][]*Entry{},
		versions: map[types.NamespacedName]objectVersion{}, tombstones: map[types.NamespacedName]tombstone{},
	}
	return ix
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

// checkWatch starts the staleness clock when a watch has been stopped for longer than watchGrace.
func (ix *MemoryIndex) checkWatch() {
	if since := ix.stoppedSince(); since != 0 && ix.clock.Since(time.Unix(0, since)) > watchGrace {
		ix.brokenAt(time.Unix(0, since))
	}
}

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
func (ix *MemoryIndex) Probe(ctx context.Context, every time.Duration, ping func(context.Context) error, list func(context.Context) ([]v1alpha1.ApiKey, string, error)) {
	t := time.NewTicker(every)
	defer t.Stop()
	lastOK, wasBroken := ix.clock.Now(), false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ix.checkWatch()
		ix.pruneTombstones()
		if ix.brokenSince.Load() == 0 {
			rctx, cancel := context.WithTimeout(ctx, 2*every)
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
			ix.WatchHealthy()
			lastOK, wasBroken = ix.clock.Now(), false
			continue
		}
		start := ix.clock.Now()
		ix.syncMu.Lock()
		before := ix.lastSyncLocked()
		ix.syncMu.Unlock()
		// A list of every ApiKey takes longer than a ping on a large cluster: give it up to half the
		// staleness bound rather than abandoning it after two ticks and starting over.
		rctx, cancel := context.WithTimeout(ctx, max(2*every, ix.maxStale/2))
		items, listRV, err := list(rctx)
		cancel()
		if err != nil {
			continue
		}
		ix.syncMu.Lock()
		if ix.lastSyncLocked() == before && ix.brokenSince.Load() != 0 {
			// The watch delivered nothing meanwhile, so the list is the newest state known.
			ix.replaceAll(items, parseRV(listRV))
			ix.brokenSince.Store(start.UnixNano())
		}
		ix.syncMu.Unlock()
	}
}

// replaceAll makes the index hold exactly items, a list at resourceVersion listRV. An ApiKey the list no
// longer holds leaves a tombstone, so that a late event from before the list cannot bring it back.
func (ix *MemoryIndex) replaceAll(items []v1alpha1.ApiKey, listRV uint64) {
	present := make(map[types.NamespacedName]bool, len(items))
	for i := range items {
		present[types.NamespacedName{Namespace: items[i].Namespace, Name: items[i].Name}] = true
		ix.upsert(&items[i])
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for nn := range ix.byObject {
		if !present[nn] {
			ix.deleteLocked(nn, listRV)
		}
	}
}

// pruneTombstones forgets the tombstones the informer has caught up with (every event it delivers from
// now on is newer than they are), and, when its resourceVersion is unknown, those older than tombstoneTTL.
func (ix *MemoryIndex) pruneTombstones() {
	ix.syncMu.Lock()
	synced := parseRV(ix.lastSyncLocked())
	ix.syncMu.Unlock()
	now := ix.clock.Now()
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for nn, t := range ix.tombstones {
		if synced >= t.rv || now.Sub(t.at) > tombstoneTTL {
			delete(ix.tombstones, nn)
		}
	}
}

// parseRV reads a resourceVersion as the etcd revision it is; 0 when it is not a number (then no order
// is assumed).
func parseRV(rv string) uint64 {
	n, err := strconv.ParseUint(rv, 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// older reports whether version rv of an ApiKey is older than what the index knows of it.
func (ix *MemoryIndex) older(nn types.NamespacedName, rv uint64) bool {
	if rv == 0 {
		return false
	}
	if v, ok := ix.versions[nn]; ok && v.rv != 0 && rv < v.rv {
		return true
	}
	t, ok := ix.tombstones[nn]
	return ok && rv <= t.rv
}

// Upsert replaces what the index holds for ak. Last-used times carry over to the new entries. A version
// older than the one held (a late event after the probe listed a newer state) is ignored.
func (ix *MemoryIndex) Upsert(ak *v1alpha1.ApiKey) {
	ix.WatchHealthy()
	ix.upsert(ak)
}

func (ix *MemoryIndex) upsert(ak *v1alpha1.ApiKey) {
	nn := types.NamespacedName{Namespace: ak.Namespace, Name: ak.Name}
	rv := parseRV(ak.ResourceVersion)
	if !ix.scope.includes(ak) {
		// Out of scope from this version on: a list from before it must not bring the keys back.
		ix.mu.Lock()
		defer ix.mu.Unlock()
		if !ix.older(nn, rv) {
			ix.deleteLocked(nn, rv)
		}
		return
	}
	fresh := entriesOf(ak)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.older(nn, rv) {
		return
	}
	delete(ix.tombstones, nn)
	ix.versions[nn] = objectVersion{uid: ak.UID, rv: rv}
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

// entriesOf returns the index entries of ak's keys. What the API server says is enough to refuse a key,
// with no operator involved:
//   - a key opens only the scopes keysmith granted it (status.keys[].scopes) that spec.scopes still
//     lists: a scope removed from the spec is refused at once, one added opens nothing until granted;
//   - spec.disabled refuses every key, and so does a keysmith.dev/revoke value ("all", or key ids) that
//     status does not record as handled yet (once handled, status says which keys are revoked);
//   - a deletionTimestamp refuses every key.
func entriesOf(ak *v1alpha1.ApiKey) []*Entry {
	env := ak.Spec.Environment
	if env == "" {
		env = v1alpha1.EnvironmentLive
	}
	revokeAll, revokeIDs := ak.Spec.Disabled, map[string]bool(nil)
	if v := ak.Annotations[v1alpha1.AnnotationRevoke]; !revokeAll && !rotation.RequestHandled(v, ak.Status.HandledRevokeRequest) {
		if ids, all, problem := rotation.ParseRevokeRequest(v); problem == "" {
			revokeAll = all
			revokeIDs = make(map[string]bool, len(ids))
			for _, id := range ids {
				revokeIDs[id] = true
			}
		}
	}
	deleting := !ak.DeletionTimestamp.IsZero()
	out := make([]*Entry, 0, len(ak.Status.Keys))
	for _, k := range ak.Status.Keys {
		d, err := keys.ParseHash(k.Hash)
		if err != nil {
			continue
		}
		state := k.State
		if revokeAll || revokeIDs[k.ID] {
			state = v1alpha1.KeyRevoked
		}
		out = append(out, &Entry{
			Digest: d, KeyID: k.ID, Namespace: ak.Namespace, Name: ak.Name, Environment: env, State: state,
			Scopes: granted(k.Scopes, ak.Spec.Scopes), NotAfter: k.NotAfter.Time, Deleting: deleting,
		})
	}
	return out
}

// granted returns the scopes in both the key's grant and the spec, in grant order.
func granted(grant, spec []string) []string {
	out := make([]string, 0, len(grant))
	for _, s := range grant {
		if slices.Contains(spec, s) {
			out = append(out, s)
		}
	}
	return out
}

// Delete removes an ApiKey's keys: a deleted ApiKey's keys are unknown, hence refused.
func (ix *MemoryIndex) Delete(nn types.NamespacedName) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.deleteLocked(nn, 0)
}

// DeleteObject removes ak's keys after a delete event, unless the index holds a newer ApiKey of that
// name (created again after the one deleted, as the probe listed it).
func (ix *MemoryIndex) DeleteObject(ak *v1alpha1.ApiKey) {
	nn := types.NamespacedName{Namespace: ak.Namespace, Name: ak.Name}
	ix.WatchHealthy()
	ix.mu.Lock()
	defer ix.mu.Unlock()
	rv := parseRV(ak.ResourceVersion)
	if v, ok := ix.versions[nn]; ok && v.uid != ak.UID && ix.older(nn, rv) {
		return
	}
	ix.deleteLocked(nn, rv)
}

// deleteLocked removes nn's keys and, when rv is known, leaves a tombstone at rv: a list the probe took
// before the deletion, or a late event, cannot bring the keys back.
func (ix *MemoryIndex) deleteLocked(nn types.NamespacedName, rv uint64) {
	for _, e := range ix.byObject[nn] {
		ix.unindex(e)
	}
	delete(ix.byObject, nn)
	delete(ix.versions, nn)
	if rv != 0 && rv > ix.tombstones[nn].rv {
		ix.tombstones[nn] = tombstone{rv: rv, at: ix.clock.Now()}
	}
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
