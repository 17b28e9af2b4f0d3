package verify

import (
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/keys"
	"github.com/keysmith-dev/keysmith/internal/rotation"
)

// entryOf returns the index entry of key, or nil.
func entryOf(ix *MemoryIndex, key string) *Entry {
	e, ok := ix.Lookup(keys.Sum(key))
	if !ok {
		return nil
	}
	return e
}

func TestIndexGrants(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name  string
		spec  []string
		grant []string
		want  []string
	}{
		{name: "grant and spec agree", spec: []string{"users:read", "roles:manage"}, grant: []string{"users:read", "roles:manage"}, want: []string{"users:read", "roles:manage"}},
		{name: "a scope added to the spec opens nothing until granted", spec: []string{"users:read", "admin:write"}, grant: []string{"users:read"}, want: []string{"users:read"}},
		{name: "a scope removed from the spec is refused at once", spec: []string{"users:read"}, grant: []string{"users:read", "roles:manage"}, want: []string{"users:read"}},
		{name: "a key with no recorded grant opens nothing", spec: []string{"users:read"}, grant: nil, want: []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ak := f.apiKey()
			ak.Spec.Scopes = tc.spec
			ak.Status.Keys[0].Scopes = tc.grant
			f.ix.Upsert(ak)
			if got := entryOf(f.ix, f.active).Scopes; !slices.Equal(got, tc.want) {
				t.Errorf("scopes = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCheckRefusesAKeyGrantedNothing(t *testing.T) {
	f := newFixture(t)
	ak := f.apiKey()
	ak.Status.Keys[0].Scopes = nil
	f.ix.Upsert(ak)
	for _, scopes := range [][]string{nil, {"users:read"}} {
		if got := Check(f.ix, f.clk.Now(), Request{Key: f.active, Scopes: scopes}).Code; got != CodeInsufficientScope {
			t.Errorf("required %v: %s, want %s", scopes, got, CodeInsufficientScope)
		}
	}
	if got := Check(f.ix, f.clk.Now(), Request{Key: f.retiring}).Code; got != CodeValid {
		t.Errorf("a granted key: %s", got)
	}
}

func TestIndexEmergencyRevocation(t *testing.T) {
	f := newFixture(t)
	activeID := keys.ID(f.active)
	for _, tc := range []struct {
		name     string
		mutate   func(*v1alpha1.ApiKey)
		refused  bool // the active key
		retiring bool // the retiring key refused too
	}{
		{name: "nothing requested", mutate: func(*v1alpha1.ApiKey) {}},
		{name: "spec.disabled", mutate: func(ak *v1alpha1.ApiKey) { ak.Spec.Disabled = true }, refused: true, retiring: true},
		{name: "revoke all, not handled yet", mutate: func(ak *v1alpha1.ApiKey) { ak.Annotations = map[string]string{v1alpha1.AnnotationRevoke: "all"} }, refused: true, retiring: true},
		{name: "revoke one id, not handled yet", mutate: func(ak *v1alpha1.ApiKey) { ak.Annotations = map[string]string{v1alpha1.AnnotationRevoke: activeID} }, refused: true},
		{name: "revoke a pasted key, not handled yet", mutate: func(ak *v1alpha1.ApiKey) { ak.Annotations = map[string]string{v1alpha1.AnnotationRevoke: f.active} }, refused: true},
		{name: "revoke all, handled: status decides", mutate: func(ak *v1alpha1.ApiKey) {
			ak.Annotations = map[string]string{v1alpha1.AnnotationRevoke: "all"}
			ak.Status.HandledRevokeRequest = rotation.RequestDigest("all")
		}},
		{name: "revoke all, handled by an earlier release (verbatim)", mutate: func(ak *v1alpha1.ApiKey) {
			ak.Annotations = map[string]string{v1alpha1.AnnotationRevoke: "all"}
			ak.Status.HandledRevokeRequest = "all"
		}},
		{name: "a malformed value revokes nothing", mutate: func(ak *v1alpha1.ApiKey) { ak.Annotations = map[string]string{v1alpha1.AnnotationRevoke: "oops"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ak := f.apiKey()
			tc.mutate(ak)
			f.ix.Upsert(ak)
			if got := entryOf(f.ix, f.active).State == v1alpha1.KeyRevoked; got != tc.refused {
				t.Errorf("active key revoked = %v, want %v", got, tc.refused)
			}
			if got := entryOf(f.ix, f.retiring).State == v1alpha1.KeyRevoked; got != tc.retiring {
				t.Errorf("retiring key revoked = %v, want %v", got, tc.retiring)
			}
		})
	}
}

func TestIndexNeverGoesBack(t *testing.T) {
	f := newFixture(t)
	nn := types.NamespacedName{Namespace: "pay", Name: "billing"}
	at := func(rv string, mutate func(*v1alpha1.ApiKey)) *v1alpha1.ApiKey {
		ak := f.apiKey()
		ak.UID, ak.ResourceVersion = "uid-1", rv
		mutate(ak)
		return ak
	}
	revoked := func(ak *v1alpha1.ApiKey) { ak.Status.Keys[0].State = v1alpha1.KeyRevoked }
	same := func(*v1alpha1.ApiKey) {}

	// The probe listed the revocation (rv 20); a late watch event from before it (rv 15) arrives.
	f.ix.replaceAll([]v1alpha1.ApiKey{*at("20", revoked)}, 20)
	f.ix.Upsert(at("15", same))
	if entryOf(f.ix, f.active).State != v1alpha1.KeyRevoked {
		t.Fatal("an older event un-revoked a key")
	}
	f.ix.Upsert(at("21", same))
	if entryOf(f.ix, f.active).State != v1alpha1.KeyActive {
		t.Fatal("a newer event was ignored")
	}

	// The probe's list no longer holds the ApiKey (deleted); a late add from before the list comes.
	f.ix.replaceAll(nil, 30)
	f.ix.Upsert(at("25", same))
	if entryOf(f.ix, f.active) != nil {
		t.Fatal("a late event brought a deleted ApiKey back")
	}
	// Once the informer has synced past the tombstone, it is forgotten; a newer ApiKey of that name
	// is indexed.
	f.ix.TrackReflector(func() string { return "31" })
	f.ix.pruneTombstones()
	if len(f.ix.tombstones) != 0 {
		t.Fatal("tombstone kept after the informer caught up")
	}
	recreated := at("32", same)
	recreated.UID = "uid-2"
	f.ix.Upsert(recreated)
	if entryOf(f.ix, f.active) == nil {
		t.Fatal("the recreated ApiKey is not indexed")
	}
	// The delete event of the first incarnation, older than the recreated one, leaves it alone; the
	// delete of the recreated one removes it.
	f.ix.DeleteObject(at("29", same))
	if entryOf(f.ix, f.active) == nil {
		t.Fatal("a stale delete removed a newer ApiKey of the same name")
	}
	f.ix.DeleteObject(recreated)
	if _, ok := f.ix.entries()[nn]; ok || entryOf(f.ix, f.active) != nil {
		t.Fatal("delete of the current ApiKey ignored")
	}
}

// A delete event that arrives between the probe's check of the informer and its replaceAll of a list
// taken before the deletion must not bring the deleted ApiKey's keys back.
func TestDeleteBeatsAnOlderList(t *testing.T) {
	f := newFixture(t)
	ak := f.apiKey()
	ak.UID, ak.ResourceVersion = "uid-1", "90"
	f.ix.Upsert(ak)
	deleted := ak.DeepCopy()
	deleted.ResourceVersion = "95"
	f.ix.DeleteObject(deleted)
	f.ix.replaceAll([]v1alpha1.ApiKey{*ak}, 92)
	if entryOf(f.ix, f.active) != nil {
		t.Fatal("a list from before the deletion brought the keys back")
	}
	// Going out of the verifier's scope (a label removed at rv 100) holds against an older list too.
	sel := f.apiKey()
	sel.UID, sel.ResourceVersion, sel.Name = "uid-2", "99", "scoped"
	scoped := NewMemoryIndex(Scope{Selector: mustSelector(t, "team=pay")}, f.clk, func() bool { return true }, time.Minute)
	sel.Labels = map[string]string{"team": "pay"}
	scoped.Upsert(sel)
	out := sel.DeepCopy()
	out.ResourceVersion, out.Labels = "100", nil
	scoped.Upsert(out)
	scoped.replaceAll([]v1alpha1.ApiKey{*sel}, 99)
	if entryOf(scoped, f.active) != nil {
		t.Fatal("a list from before the label change brought the keys back")
	}
}

func mustSelector(t *testing.T, s string) labels.Selector {
	sel, err := labels.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return sel
}

func TestWatchStopped(t *testing.T) {
	f := newFixture(t)
	w := f.ix.NewWatchState()
	w.WatchStopped()
	f.ix.checkWatch()
	if f.ix.brokenSince.Load() != 0 {
		t.Fatal("the staleness clock started within the grace of a reopening watch")
	}
	stopped := f.clk.Now()
	f.clk.Step(watchGrace + time.Second)
	w.WatchStopped() // further failed attempts keep the first instant
	f.ix.checkWatch()
	if got := f.ix.brokenSince.Load(); got != stopped.UnixNano() {
		t.Fatalf("staleness clock = %v, want the instant the watch stopped (%v)", time.Unix(0, got), stopped)
	}
	f.clk.Step(31 * time.Second)
	if f.ix.Ready() != ErrStale {
		t.Fatal("ready with a watch that has not delivered for longer than the bound")
	}
	w.WatchStarted()
	if f.ix.Ready() != nil {
		t.Fatal("a reopened watch did not end the break")
	}
}

// With one informer per namespace served, the watch is healthy only while every one of them has one.
func TestWatchStatesPerInformer(t *testing.T) {
	f := newFixture(t)
	a, b := f.ix.NewWatchState(), f.ix.NewWatchState()
	a.WatchStopped()
	f.clk.Step(watchGrace + time.Second)
	b.WatchStopped()
	f.ix.checkWatch()
	if f.ix.brokenSince.Load() == 0 {
		t.Fatal("a watch stopped past the grace did not start the staleness clock")
	}
	a.WatchStarted()
	if f.ix.brokenSince.Load() == 0 {
		t.Fatal("one informer's watch ended the break while another's is still stopped")
	}
	b.WatchStarted()
	if f.ix.brokenSince.Load() != 0 {
		t.Fatal("every watch is open again, but the break goes on")
	}
}

func TestTombstonesExpireWithoutAResourceVersion(t *testing.T) {
	f := newFixture(t)
	f.ix.replaceAll(nil, 50)
	f.ix.pruneTombstones()
	if len(f.ix.tombstones) != 1 {
		t.Fatalf("%d tombstones, want 1", len(f.ix.tombstones))
	}
	f.clk.Step(tombstoneTTL + time.Second)
	f.ix.pruneTombstones()
	if len(f.ix.tombstones) != 0 {
		t.Fatal("a tombstone outlived its TTL with no informer resourceVersion to prune it by")
	}
}
