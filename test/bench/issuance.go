package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/testenv"
)

// Issuance compares keysmith issuing N first keys with a bare client doing the same minimal writes per
// key (create, finalizer patch, status update, Secret create) with the same parallelism, on the same
// control plane.
type Issuance struct {
	N                   int     `json:"n"`
	Parallel            int     `json:"parallel"`
	KeysmithSeconds     float64 `json:"keysmithSeconds"`
	BareSeconds         float64 `json:"bareClientSeconds"`
	Ratio               float64 `json:"ratio"`
	WritesPerIssuance   float64 `json:"writesPerIssuance"`
	EventsPerIssuance   float64 `json:"eventsPerIssuance"`
	IdleSeconds         float64 `json:"idleSeconds"`
	IdleWrites          int     `json:"idleWrites"`
	RefusedWrites       int     `json:"refusedWrites"`
	Reconciles          int     `json:"reconciles"`
	ReconcileMeanMillis float64 `json:"reconcileMeanMillis"`
}

func createNamespace(ctx context.Context, c client.Client, name string) error {
	return client.IgnoreAlreadyExists(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}))
}

// parallel runs f(i) for i in [0, n) on workers goroutines and returns the first error.
func parallel(n, workers int, f func(i int) error) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

func scaleKey(ns string, i int) *v1alpha1.ApiKey {
	name := fmt.Sprintf("k-%05d", i)
	return &v1alpha1.ApiKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.ApiKeySpec{Scopes: []string{"users:read"}, SecretName: name},
	}
}

// bareIssuance is the floor: the same writes, no operator, no decisions.
func bareIssuance(ctx context.Context, c client.Client, n, workers int) (time.Duration, error) {
	const ns = "scale-bare"
	if err := createNamespace(ctx, c, ns); err != nil {
		return 0, err
	}
	start := time.Now()
	err := parallel(n, workers, func(i int) error {
		ak := scaleKey(ns, i)
		if err := c.Create(ctx, ak); err != nil {
			return err
		}
		base := ak.DeepCopy()
		ak.Finalizers = []string{v1alpha1.Finalizer}
		if err := c.Patch(ctx, ak, client.MergeFrom(base)); err != nil {
			return err
		}
		ak.Status.CurrentKeyID = "000000000000"
		ak.Status.Keys = []v1alpha1.IssuedKey{{ID: "000000000000", Hash: "sha256:" + fmt.Sprintf("%064d", i), State: v1alpha1.KeyActive,
			IssuedAt: metav1.Now(), NotAfter: metav1.NewTime(time.Now().Add(v1alpha1.DefaultExpiresAfter))}}
		if err := c.Status().Update(ctx, ak); err != nil {
			return err
		}
		return c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ak.Name},
			Data: map[string][]byte{v1alpha1.SecretKeyAPIKey: []byte("x")}})
	})
	elapsed := time.Since(start)
	if err != nil {
		return 0, err
	}
	// Remove the floor's ApiKeys (not timed), so that the manager started next does not reconcile them.
	return elapsed, parallel(n, workers, func(i int) error {
		ak := scaleKey(ns, i)
		if err := c.Patch(ctx, ak, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`))); err != nil {
			return err
		}
		return client.IgnoreNotFound(c.Delete(ctx, ak))
	})
}

// keysmithIssuance creates n ApiKeys with the same parallelism and waits until all are Ready.
func keysmithIssuance(ctx context.Context, c client.Client, n, workers int) (time.Duration, error) {
	const ns = "scale-keysmith"
	if err := createNamespace(ctx, c, ns); err != nil {
		return 0, err
	}
	start := time.Now()
	if err := parallel(n, workers, func(i int) error { return c.Create(ctx, scaleKey(ns, i)) }); err != nil {
		return 0, err
	}
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		list := &v1alpha1.ApiKeyList{}
		if err := c.List(ctx, list, client.InNamespace(ns)); err != nil {
			return 0, err
		}
		ready := 0
		for _, ak := range list.Items {
			if meta.IsStatusConditionTrue(ak.Status.Conditions, v1alpha1.ConditionReady) {
				ready++
			}
		}
		if ready == n {
			return time.Since(start), nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return 0, fmt.Errorf("not all %d ApiKeys Ready after 10 minutes", n)
}

func runIssuance(ctx context.Context, c client.Client, writes *testenv.WriteCounter, bare time.Duration, n, workers int, idle time.Duration) (Issuance, error) {
	res := Issuance{N: n, Parallel: workers, BareSeconds: bare.Seconds()}
	d, err := keysmithIssuance(ctx, c, n, workers)
	if err != nil {
		return res, err
	}
	res.KeysmithSeconds = d.Seconds()
	if mfs, err := ctrlmetrics.Registry.Gather(); err == nil {
		for _, mf := range mfs {
			if mf.GetName() == "controller_runtime_reconcile_total" {
				for _, m := range mf.GetMetric() {
					for _, l := range m.GetLabel() {
						if l.GetName() == "result" && m.GetCounter().GetValue() > 0 {
							fmt.Printf("  reconcile result %s: %.0f\n", l.GetValue(), m.GetCounter().GetValue())
						}
					}
				}
			}
			switch mf.GetName() {
			case "controller_runtime_reconcile_time_seconds":
				for _, m := range mf.GetMetric() {
					h := m.GetHistogram()
					res.Reconciles = int(h.GetSampleCount())
					res.ReconcileMeanMillis = 1000 * h.GetSampleSum() / float64(max(h.GetSampleCount(), 1))
				}
			}
		}
	}
	res.Ratio = res.KeysmithSeconds / res.BareSeconds
	time.Sleep(2 * time.Second) // let the last events land
	res.WritesPerIssuance = float64(len(writes.In("scale-keysmith"))) / float64(n)
	res.EventsPerIssuance = float64(writes.Events("scale-keysmith")) / float64(n)
	res.RefusedWrites = len(writes.Attempts("scale-keysmith")) - len(writes.In("scale-keysmith"))
	before := len(writes.Attempts("scale-keysmith"))
	time.Sleep(idle)
	res.IdleSeconds = idle.Seconds()
	res.IdleWrites = len(writes.Attempts("scale-keysmith")) - before
	return res, nil
}
