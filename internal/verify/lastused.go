package verify

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
)

// Flusher writes the newest use of each key into status.keys[].lastUsedAt (and status.lastUsedAt), at
// most once per key per interval. Times only move forward, and every patch carries an optimistic lock,
// so verifier replicas never undo each other's writes: the loser of a race retries on the next tick with
// what the winner wrote.
type Flusher struct {
	Index    *MemoryIndex
	Reader   client.Reader
	Client   client.Client
	Interval time.Duration
	Log      logr.Logger
}

// Start flushes every Interval until ctx ends, and once more on the way out.
func (f *Flusher) Start(ctx context.Context) error {
	t := time.NewTicker(f.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			flushCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			f.Flush(flushCtx)
			return nil
		case <-t.C:
			f.Flush(ctx)
		}
	}
}

// Flush writes what was used since the last flush. It returns the number of ApiKeys patched.
func (f *Flusher) Flush(ctx context.Context) int {
	patched := 0
	for nn, entries := range f.Index.entries() {
		pending := false
		for _, e := range entries {
			pending = pending || e.lastUsed.used.Load() > e.lastUsed.flushed.Load()
		}
		if !pending {
			continue
		}
		done, err := f.flushOne(ctx, nn, entries)
		switch {
		case err == nil:
			if done {
				patched++
			}
		case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
			// Someone else wrote first (or the ApiKey is gone); the next tick works from fresh state.
		default:
			f.Log.Error(err, "flushing lastUsedAt", "apiKey", nn)
		}
	}
	return patched
}

func (f *Flusher) flushOne(ctx context.Context, nn types.NamespacedName, entries []*Entry) (bool, error) {
	ak := &v1alpha1.ApiKey{}
	if err := f.Reader.Get(ctx, nn, ak); err != nil {
		return false, err
	}
	base := ak.DeepCopy()
	used := map[string]int64{}
	for _, e := range entries {
		used[e.KeyID] = e.lastUsed.used.Load()
	}
	changed := false
	for i := range ak.Status.Keys {
		k := &ak.Status.Keys[i]
		u, ok := used[k.ID]
		if !ok || u == 0 {
			continue
		}
		t := metav1.Time{Time: time.Unix(u, 0).UTC()}
		if k.LastUsedAt == nil || t.After(k.LastUsedAt.Time) {
			k.LastUsedAt = &t
			changed = true
		}
		if ak.Status.LastUsedAt == nil || t.After(ak.Status.LastUsedAt.Time) {
			ak.Status.LastUsedAt = &t
			changed = true
		}
	}
	if changed {
		if err := f.Client.Status().Patch(ctx, ak, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
			return false, err
		}
	}
	for _, e := range entries {
		e.lastUsed.flushed.Store(used[e.KeyID])
	}
	return changed, nil
}
