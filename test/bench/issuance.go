package main

import (
	"context"
	"fmt"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sort"
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
// control plane. Each N runs in namespaces of its own (scale-bare-N, scale-keysmith-N).
type Issuance struct {
	N                   int     `json:"n"`
	Parallel            int     `json:"parallel"`
	KeysmithSeconds     float64 `json:"keysmithSeconds"`
	BareSeconds         float64 `json:"bareClientSeconds"`
	Ratio               float64 `json:"ratio"`
	WritesPerIssuance   float64 `json:"writesPerIssuance"`
	EventsPerIssuance   float64 `json:"eventsPerIssuance"`
	RefusedWrites       int     `json:"refusedWrites"`
	Reconciles          int     `json:"reconciles"`
	ReconcileMeanMillis float64 `json:"reconcileMeanMillis"`
	// KeysmithReadySeconds holds, for each ApiKey, when the harness first saw it Ready (watch or list),
	// in seconds since the creates began, sorted: the curve "ApiKeys Ready against time".
	KeysmithReadySeconds []float64 `json:"keysmithReadySeconds,omitempty"`
	// BareDoneSeconds holds, for each key of the bare client, when its last write (the Secret) returned.
	BareDoneSeconds []float64 `json:"bareClientDoneSeconds,omitempty"`
}

// Bare is the bare client's run for one N: the total and each key's completion, since the start.
type Bare struct {
	Total time.Duration
	Done  []time.Duration
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

// bareIssuance is the floor: the same writes, no operator, no decisions, in namespace ns.
func bareIssuance(ctx context.Context, c client.Client, ns string, n, workers int) (Bare, error) {
	if err := createNamespace(ctx, c, ns); err != nil {
		return Bare{}, err
	}
	var mu sync.Mutex
	done := make([]time.Duration, 0, n)
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
		if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ak.Name},
			Data: map[string][]byte{v1alpha1.SecretKeyAPIKey: []byte("x")}}); err != nil {
			return err
		}
		d := time.Since(start)
		mu.Lock()
		done = append(done, d)
		mu.Unlock()
		return nil
	})
	res := Bare{Total: time.Since(start), Done: done}
	if err != nil {
		return res, err
	}
	// Remove the floor's ApiKeys (not timed), so that the manager started next does not reconcile them.
	return res, parallel(n, workers, func(i int) error {
		ak := scaleKey(ns, i)
		if err := c.Patch(ctx, ak, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`))); err != nil {
			return err
		}
		return client.IgnoreNotFound(c.Delete(ctx, ak))
	})
}

// managerCache is the in-process manager's cache, once it runs.
var managerCache cache.Cache

// keysmithIssuance creates n ApiKeys in namespace ns with the same parallelism and waits until all are
// Ready. It returns the time until the last one was seen Ready by the list loop (every 100 ms, as
// before) and, per ApiKey, when it was first seen Ready by a watch on the namespace or by that loop.
func keysmithIssuance(ctx context.Context, c client.Client, ns string, n, workers int) (time.Duration, []time.Duration, error) {
	if err := createNamespace(ctx, c, ns); err != nil {
		return 0, nil, err
	}
	var mu sync.Mutex
	readyAt := make(map[string]time.Duration, n)
	var start time.Time
	seen := func(ak *v1alpha1.ApiKey) {
		if !meta.IsStatusConditionTrue(ak.Status.Conditions, v1alpha1.ConditionReady) {
			return
		}
		d := time.Since(start)
		mu.Lock()
		if _, ok := readyAt[ak.Name]; !ok {
			readyAt[ak.Name] = d
		}
		mu.Unlock()
	}
	start = time.Now()
	var backup client.Reader = c
	if managerCache != nil {
		// The running manager's own informer says when each ApiKey turns Ready: no extra watch or list
		// loads the API server (or this process) during the measurement.
		inf, err := managerCache.GetInformer(ctx, &v1alpha1.ApiKey{})
		if err != nil {
			return 0, nil, err
		}
		onEvent := func(obj any) {
			if ak, ok := obj.(*v1alpha1.ApiKey); ok && ak.Namespace == ns {
				seen(ak)
			}
		}
		reg, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{AddFunc: onEvent, UpdateFunc: func(_, obj any) { onEvent(obj) }})
		if err != nil {
			return 0, nil, err
		}
		defer func() { _ = inf.RemoveEventHandler(reg) }()
		backup = managerCache
	} else if wc, ok := c.(client.WithWatch); ok {
		if w, err := wc.Watch(ctx, &v1alpha1.ApiKeyList{}, client.InNamespace(ns)); err == nil {
			defer w.Stop()
			go func() {
				for ev := range w.ResultChan() {
					if ak, ok := ev.Object.(*v1alpha1.ApiKey); ok {
						seen(ak)
					}
				}
			}()
		}
	}
	if err := parallel(n, workers, func(i int) error { return c.Create(ctx, scaleKey(ns, i)) }); err != nil {
		return 0, nil, err
	}
	// The watch sees each ApiKey turn Ready; a list every 5 s only backs it up (listing thousands of
	// ApiKeys every 100 ms would load the API server during the measurement, and keysmith's figure only).
	deadline := time.Now().Add(10 * time.Minute)
	lastList := time.Now()
	for time.Now().Before(deadline) {
		if time.Since(lastList) > 5*time.Second {
			list := &v1alpha1.ApiKeyList{}
			if err := backup.List(ctx, list, client.InNamespace(ns)); err != nil {
				return 0, nil, err
			}
			for i := range list.Items {
				seen(&list.Items[i])
			}
			lastList = time.Now()
		}
		mu.Lock()
		if len(readyAt) == n {
			var total time.Duration
			each := make([]time.Duration, 0, len(readyAt))
			for _, d := range readyAt {
				each = append(each, d)
				total = max(total, d)
			}
			mu.Unlock()
			return total, each, nil
		}
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	return 0, nil, fmt.Errorf("not all %d ApiKeys Ready in %s after 10 minutes", n, ns)
}

// reconcileStats reads the manager's reconcile count and total reconcile time from its metrics.
func reconcileStats() (count uint64, seconds float64) {
	mfs, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		return 0, 0
	}
	for _, mf := range mfs {
		if mf.GetName() == "controller_runtime_reconcile_time_seconds" {
			for _, m := range mf.GetMetric() {
				count += m.GetHistogram().GetSampleCount()
				seconds += m.GetHistogram().GetSampleSum()
			}
		}
	}
	return count, seconds
}

// runIssuance runs keysmith's issuance of n keys in namespace ns and compares it with the bare client's
// run of the same n.
func runIssuance(ctx context.Context, c client.Client, writes *testenv.WriteCounter, bare Bare, ns string, n, workers int) (Issuance, error) {
	res := Issuance{N: n, Parallel: workers, BareSeconds: bare.Total.Seconds(), BareDoneSeconds: seconds(bare.Done)}
	count0, sum0 := reconcileStats()
	d, each, err := keysmithIssuance(ctx, c, ns, n, workers)
	if err != nil {
		return res, err
	}
	res.KeysmithSeconds = d.Seconds()
	res.KeysmithReadySeconds = seconds(each)
	count1, sum1 := reconcileStats()
	res.Reconciles = int(count1 - count0)
	res.ReconcileMeanMillis = 1000 * (sum1 - sum0) / float64(max(count1-count0, 1))
	res.Ratio = res.KeysmithSeconds / res.BareSeconds
	time.Sleep(2 * time.Second) // let the last events land
	res.WritesPerIssuance = float64(len(writes.In(ns))) / float64(n)
	res.EventsPerIssuance = float64(writes.Events(ns)) / float64(n)
	res.RefusedWrites = len(writes.Attempts(ns)) - len(writes.In(ns))
	return res, nil
}

// seconds converts durations to seconds rounded to the millisecond, sorted.
func seconds(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d.Milliseconds()) / 1000
	}
	sort.Float64s(out)
	return out
}
