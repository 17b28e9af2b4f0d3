package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
)

// converge waits until every ApiKey in ns has settled: observedGeneration current, Ready (or Expired at
// its notAfter), not Reconciling or Stalled, its Secret holding the current key and the verifier
// accepting it, its next rotation not overdue. It returns how long that took and, after timeout, an
// error naming what is stuck.
func (s *suite) converge(ctx context.Context, ns string, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	var problems []string
	for time.Since(start) < timeout {
		problems = s.unsettled(ctx, ns)
		if len(problems) == 0 {
			return time.Since(start), nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	return time.Since(start), fmt.Errorf("not settled after %s: %s", timeout, joinProblems(problems))
}

func (s *suite) unsettled(ctx context.Context, ns string) []string {
	aks := &v1alpha1.ApiKeyList{}
	if err := s.c.List(ctx, aks, client.InNamespace(ns)); err != nil {
		return []string{err.Error()}
	}
	var p []string
	now := time.Now()
	for i := range aks.Items {
		ak := &aks.Items[i]
		if !ak.DeletionTimestamp.IsZero() {
			p = append(p, ak.Name+" deleting")
			continue
		}
		ready := meta.FindStatusCondition(ak.Status.Conditions, v1alpha1.ConditionReady)
		switch {
		case ak.Status.ObservedGeneration != ak.Generation:
			p = append(p, ak.Name+" observedGeneration behind")
			continue
		case meta.IsStatusConditionTrue(ak.Status.Conditions, v1alpha1.ConditionReconciling):
			p = append(p, ak.Name+" Reconciling")
			continue
		case ready != nil && ready.Status != metav1.ConditionTrue && ready.Reason == v1alpha1.ReasonExpired:
			continue // expired at its notAfter, as asked (and Stalled: only a person can move it on)
		case meta.IsStatusConditionTrue(ak.Status.Conditions, v1alpha1.ConditionStalled):
			p = append(p, ak.Name+" Stalled")
			continue
		case ready == nil:
			p = append(p, ak.Name+" has no Ready condition")
			continue
		case ready.Status != metav1.ConditionTrue:
			p = append(p, ak.Name+" Ready="+string(ready.Status)+" "+ready.Reason)
			continue
		}
		if ak.Spec.Rotation != nil && (ak.Status.NextRotationAt == nil || now.Sub(ak.Status.NextRotationAt.Time) > 5*time.Second) {
			p = append(p, ak.Name+" rotation overdue")
			continue
		}
		sec := &corev1.Secret{}
		if err := s.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: ak.Spec.SecretName}, sec); err != nil {
			p = append(p, ak.Name+" Secret: "+err.Error())
			continue
		}
		if id := string(sec.Data[v1alpha1.SecretKeyKeyID]); id != ak.Status.CurrentKeyID {
			p = append(p, fmt.Sprintf("%s Secret holds %s, status says %s", ak.Name, id, ak.Status.CurrentKeyID))
			continue
		}
		if v := check(s.obs.httpClient(), s.verifier.verifyAddr, string(sec.Data[v1alpha1.SecretKeyAPIKey])); v != accepted {
			p = append(p, ak.Name+" key in the Secret not accepted")
		}
	}
	return p
}

// churn keeps the crash loop busy: a manual rotation every second, and an expiring ApiKey deleted and
// recreated every 3 seconds.
func (s *suite) churn(ctx context.Context, manual *atomic.Int64) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		name := fmt.Sprintf("rot-%02d", s.rnd.IntN(s.o.rotating))
		if s.requestRotation(ctx, nsChaos, name, fmt.Sprintf("chaos-%d", n)) == nil {
			manual.Add(1)
		}
		if n%3 == 0 && s.o.expiring > 0 {
			name := fmt.Sprintf("exp-%02d", s.rnd.IntN(s.o.expiring))
			ak := expiringKey(name)
			if err := s.c.Delete(ctx, ak); err == nil || apierrors.IsNotFound(err) {
				// Recreated once the finalizer is gone (the manager may be down meanwhile).
				go func() {
					for i := 0; i < 600 && ctx.Err() == nil; i++ {
						if err := s.c.Create(ctx, expiringKey(name)); err == nil || apierrors.IsAlreadyExists(err) && i > 300 {
							return
						}
						time.Sleep(100 * time.Millisecond)
					}
				}()
			}
		}
	}
}

// crashLoop kills the manager with SIGKILL at random moments while rotations are due, restarting it
// each time.
func (s *suite) crashLoop(ctx context.Context) (result, error) {
	m := s.managers[0]
	skip := auditLines(s.audit)
	churnCtx, stop := context.WithCancel(ctx)
	var manual atomic.Int64
	go s.churn(churnCtx, &manual)
	start := time.Now()
	for i := 1; i <= s.o.kills; i++ {
		// Up to 3 s: many kills land during start-up, cache sync and the first reconciles.
		time.Sleep(time.Duration(200+s.rnd.IntN(2800)) * time.Millisecond)
		m.kill()
		if i%25 == 0 {
			fmt.Printf("   %d kills, %s\n", i, time.Since(start).Round(time.Second))
		}
	}
	stop()
	killed := time.Since(start)
	settle, err := s.converge(ctx, nsChaos, 90*time.Second)
	if err != nil {
		s.violate("no ApiKey stuck", "%v", err)
	}
	w, _ := auditWrites(s.audit, nsChaos, skip)
	if m.exits > 0 {
		s.violate("manager exits only when killed", "%d exits not caused by the harness (log %s)", m.exits, m.log)
	}
	_, _, _, keysSeen, maxKeys, maxLag := s.obs.snapshot()
	return result{Trials: s.o.kills, Figures: fmt.Sprintf("%d kills in %s (%d restarts), %d manual rotations and %d delete/recreate meanwhile; "+
		"settled %.1f s after the last kill; %d keys seen in Secrets; longest status.keys %d; longest verifier lag behind a Secret %.0f ms; "+
		"manager writes: %s",
		s.o.kills, killed.Round(time.Second), m.starts-1, manual.Load(), int(killed/(3*time.Second)), settle.Seconds(), keysSeen, maxKeys,
		float64(maxLag.Milliseconds()), fmtWrites(w))}, nil
}

func fmtWrites(w map[string]int) string {
	var parts []string
	for k, v := range w {
		parts = append(parts, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// tampering deletes a Secret, overwrites its key, or strips keysmith's label, then measures how long until
// the Secret holds a key the verifier accepts again (a fresh key after a deletion or an overwrite).
func (s *suite) tampering(ctx context.Context) (result, error) {
	// The crash loop may end with the manager just restarted: what is measured here is how fast a running
	// manager repairs a Secret, so the first trial waits until the manager is ready (its caches synced) and
	// has worked through the reconciles of every ApiKey that follow its start.
	for _, m := range s.managers {
		if err := m.waitReady(ctx, 60*time.Second); err != nil {
			return result{}, err
		}
		if err := m.waitIdle(ctx, 60*time.Second); err != nil {
			return result{}, err
		}
	}
	kinds := []string{"deleted", "key overwritten", "labels removed"}
	times := map[string][]time.Duration{}
	for i := 0; i < s.o.tampers; i++ {
		kind := kinds[i%len(kinds)]
		name := fmt.Sprintf("rot-%02d", s.rnd.IntN(s.o.rotating))
		key := types.NamespacedName{Namespace: nsChaos, Name: name}
		sec := &corev1.Secret{}
		if err := s.c.Get(ctx, key, sec); err != nil {
			return result{}, err
		}
		old := string(sec.Data[v1alpha1.SecretKeyKeyID])
		var err error
		switch kind {
		case "deleted":
			err = s.c.Delete(ctx, sec)
		case "key overwritten":
			sec.Data[v1alpha1.SecretKeyAPIKey] = []byte("tampered-" + fmt.Sprint(i))
			err = s.c.Update(ctx, sec)
		case "labels removed":
			sec.Labels = nil
			err = s.c.Update(ctx, sec)
		}
		if err != nil {
			return result{}, err
		}
		start := time.Now()
		for {
			got := &corev1.Secret{}
			if s.c.Get(ctx, key, got) == nil && got.Labels[v1alpha1.LabelManagedBy] == v1alpha1.ManagedByValue {
				id := string(got.Data[v1alpha1.SecretKeyKeyID])
				fresh := id != old || kind == "labels removed"
				if fresh && check(s.obs.httpClient(), s.verifier.verifyAddr, string(got.Data[v1alpha1.SecretKeyAPIKey])) == accepted {
					break
				}
			}
			if time.Since(start) > 30*time.Second {
				s.violate("tampered Secret restored within 2 s", "%s (%s) not restored after 30 s", name, kind)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		d := time.Since(start)
		times[kind] = append(times[kind], d)
		if d > 2*time.Second {
			s.violate("tampered Secret restored within 2 s", "%s (%s) restored after %.2f s", name, kind, d.Seconds())
		}
		time.Sleep(200 * time.Millisecond)
	}
	var figs []string
	for _, k := range kinds {
		figs = append(figs, fmt.Sprintf("%s: p50 %s max %s", k, ms(pct(times[k], 0.5)), ms(pct(times[k], 1))))
	}
	return result{Trials: s.o.tampers, Figures: "restored with a key the verifier accepts, " + strings.Join(figs, "; ")}, nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d.Microseconds())/1000) }

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sorted := append([]time.Duration(nil), ds...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

// argoKey is the object another field manager keeps applying (as Argo CD does with server-side apply).
func argoKey(name string, round int) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(v1alpha1.GroupVersion.String())
	u.SetKind("ApiKey")
	u.SetNamespace(nsArgo)
	u.SetName(name)
	u.SetLabels(map[string]string{"app.kubernetes.io/instance": "payments"})
	u.SetAnnotations(map[string]string{"argocd.argoproj.io/tracking-id": "payments:keysmith.dev/ApiKey:argo/" + name,
		"chaos.keysmith.dev/sync-round": fmt.Sprint(round)})
	_ = unstructured.SetNestedField(u.Object, map[string]any{
		"scopes":       []any{"payments:read", "payments:write"},
		"secretName":   name,
		"rotation":     map[string]any{"period": "1m0s", "overlap": "20s"},
		"expiresAfter": "3m0s",
	}, "spec")
	return u
}

const argoManager = "argocd-controller"

// conflictStorm applies the same ApiKeys every 100 ms as another field manager, with an annotation
// that changes every round (so each apply is a real write and a watch event), while their rotations fall
// due. Spec must not drift, status must not be lost, and rotations happen only when due.
func (s *suite) conflictStorm(ctx context.Context) (result, error) {
	names := keyNames("argo", 8)
	for _, n := range names {
		if err := s.c.Patch(ctx, argoKey(n, 0), client.Apply, client.FieldOwner(argoManager)); err != nil {
			return result{}, err
		}
		time.Sleep(period / time.Duration(len(names)))
	}
	if _, err := s.converge(ctx, nsArgo, 60*time.Second); err != nil {
		return result{}, err
	}
	before := map[string]*v1alpha1.ApiKey{}
	for _, n := range names {
		ak := &v1alpha1.ApiKey{}
		if err := s.c.Get(ctx, types.NamespacedName{Namespace: nsArgo, Name: n}, ak); err != nil {
			return result{}, err
		}
		before[n] = ak
	}
	skip := auditLines(s.audit)
	start := time.Now()
	var applies, failures int
	var mu sync.Mutex
	for round := 1; time.Since(start) < s.o.storm; round++ {
		t := time.Now()
		var wg sync.WaitGroup
		for _, n := range names {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := s.c.Patch(ctx, argoKey(n, round), client.Apply, client.FieldOwner(argoManager))
				mu.Lock()
				defer mu.Unlock()
				applies++
				if err != nil {
					failures++
					if failures <= 3 {
						s.violate("apply never conflicts", "%s: %v", n, err)
					}
				}
			}()
		}
		wg.Wait()
		time.Sleep(time.Until(t.Add(100 * time.Millisecond)))
	}
	if _, err := s.converge(ctx, nsArgo, 30*time.Second); err != nil {
		s.violate("no ApiKey stuck", "%v", err)
	}
	w, _ := auditWrites(s.audit, nsArgo, skip)
	checked := time.Now()
	rotations, due := 0, 0
	for _, n := range names {
		ak := &v1alpha1.ApiKey{}
		if err := s.c.Get(ctx, types.NamespacedName{Namespace: nsArgo, Name: n}, ak); err != nil {
			return result{}, err
		}
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("ApiKey"))
		if err := s.c.Get(ctx, types.NamespacedName{Namespace: nsArgo, Name: n}, u); err != nil {
			return result{}, err
		}
		if want := argoKey(n, 0).Object["spec"]; fmt.Sprint(u.Object["spec"]) != fmt.Sprint(want) {
			s.violate("no spec drift", "%s spec is %v", n, u.Object["spec"])
		}
		for _, mf := range ak.ManagedFields {
			if mf.Manager != argoManager && mf.Subresource == "" && mf.FieldsV1 != nil && strings.Contains(string(mf.FieldsV1.Raw), `"f:spec"`) {
				s.violate("no spec drift", "%s: field manager %s owns spec fields", n, mf.Manager)
			}
		}
		// No lost status: every key listed before is still listed, in the same or a later state.
		for _, k := range before[n].Status.Keys {
			if findKey(ak.Status.Keys, k.ID) == nil {
				s.violate("no lost status", "%s lost key %s from status", n, k.ID)
			}
		}
		// No extra rotations: one new key per due instant that passed since the storm began.
		dueHere := 0
		for next := before[n].Status.NextRotationAt.Time; !next.After(checked); next = next.Add(period) {
			dueHere++
		}
		issued := 0
		for _, k := range ak.Status.Keys {
			if findKey(before[n].Status.Keys, k.ID) == nil {
				issued++
			}
		}
		rotations, due = rotations+issued, due+dueHere
		if issued > dueHere {
			s.violate("no extra rotations", "%s: %d keys issued during the storm, %d rotations were due", n, issued, dueHere)
		}
	}
	if w["apikeys"] > 0 {
		s.violate("no spec drift", "keysmith wrote the ApiKeys themselves %d times during the storm", w["apikeys"])
	}
	if w["secrets"] > rotations {
		s.violate("no extra rotations", "%d Secret writes for %d rotations", w["secrets"], rotations)
	}
	return result{Trials: applies, Figures: fmt.Sprintf("%d applies by %s over %s (%d ApiKeys, every 100 ms); %d failed; %d rotations for %d due; keysmith writes in that time: %s",
		applies, argoManager, s.o.storm, len(names), failures, rotations, due, fmtWrites(w))}, nil
}

func findKey(ks []v1alpha1.IssuedKey, id string) *v1alpha1.IssuedKey {
	for i := range ks {
		if ks[i].ID == id {
			return &ks[i]
		}
	}
	return nil
}
