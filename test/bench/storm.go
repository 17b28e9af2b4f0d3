package main

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/testenv"
)

// Storm is a rotation storm: every key due at the same instant.
type Storm struct {
	N                 int     `json:"n"`
	RotatedSeconds    float64 `json:"allRotatedSeconds"`
	WritesPerRotation float64 `json:"writesPerRotation"`
	RetiredSeconds    float64 `json:"allRetiredSeconds"`
}

const stormNS = "storm"

// runStorm issues n keys with a 1h period and 10m overlap, moves the manager's clock past the period
// and wakes every ApiKey at once (the wake-up timers run on real time, so the harness pokes each ApiKey
// with an annotation, as a clock jump cannot fire them). It measures the time until every Secret holds
// a new key, the writes per rotation, and the time until every previous key is retired once the clock
// passes the end of the overlap.
func runStorm(ctx context.Context, c client.Client, clk *clocktesting.FakeClock, writes *testenv.WriteCounter, n, workers int) (Storm, error) {
	res := Storm{N: n}
	if err := createNamespace(ctx, c, stormNS); err != nil {
		return res, err
	}
	if err := parallel(n, workers, func(i int) error {
		ak := scaleKey(stormNS, i)
		ak.Spec.Rotation = &v1alpha1.RotationSpec{Period: metav1.Duration{Duration: time.Hour}, Overlap: &metav1.Duration{Duration: 10 * time.Minute}}
		return c.Create(ctx, ak)
	}); err != nil {
		return res, err
	}
	first, err := waitAll(ctx, c, n, func(ak *v1alpha1.ApiKey, s *corev1.Secret) bool {
		return meta.IsStatusConditionTrue(ak.Status.Conditions, v1alpha1.ConditionReady) && s != nil &&
			string(s.Data[v1alpha1.SecretKeyKeyID]) == ak.Status.CurrentKeyID
	}, nil)
	if err != nil {
		return res, err
	}
	before := len(writes.In(stormNS))
	clk.Step(time.Hour)
	start := time.Now()
	if err := pokeAll(ctx, c, n, workers, "rotate"); err != nil {
		return res, err
	}
	_, err = waitAll(ctx, c, n, func(ak *v1alpha1.ApiKey, s *corev1.Secret) bool {
		return ak.Status.CurrentKeyID != first[ak.Name] && s != nil && string(s.Data[v1alpha1.SecretKeyKeyID]) == ak.Status.CurrentKeyID
	}, nil)
	if err != nil {
		return res, err
	}
	res.RotatedSeconds = time.Since(start).Seconds()
	time.Sleep(time.Second)
	res.WritesPerRotation = float64(len(writes.In(stormNS))-before) / float64(n)

	clk.Step(10 * time.Minute)
	start = time.Now()
	if err := pokeAll(ctx, c, n, workers, "retire"); err != nil {
		return res, err
	}
	if _, err := waitAll(ctx, c, n, func(ak *v1alpha1.ApiKey, _ *corev1.Secret) bool {
		for _, k := range ak.Status.Keys {
			if k.ID == first[ak.Name] {
				return k.State == v1alpha1.KeyExpired
			}
		}
		return false
	}, nil); err != nil {
		return res, err
	}
	res.RetiredSeconds = time.Since(start).Seconds()
	return res, nil
}

func pokeAll(ctx context.Context, c client.Client, n, workers int, value string) error {
	return parallel(n, workers, func(i int) error {
		ak := scaleKey(stormNS, i)
		patch := fmt.Sprintf(`{"metadata":{"annotations":{"bench.keysmith.dev/poke":%q}}}`, value)
		return c.Patch(ctx, ak, client.RawPatch(types.MergePatchType, []byte(patch)))
	})
}

// waitAll waits until ok holds for all n ApiKeys in the storm namespace and returns their current ids.
func waitAll(ctx context.Context, c client.Client, n int, ok func(*v1alpha1.ApiKey, *corev1.Secret) bool, _ any) (map[string]string, error) {
	deadline := time.Now().Add(15 * time.Minute)
	for time.Now().Before(deadline) {
		aks := &v1alpha1.ApiKeyList{}
		secrets := &corev1.SecretList{}
		if err := c.List(ctx, aks, client.InNamespace(stormNS)); err != nil {
			return nil, err
		}
		if err := c.List(ctx, secrets, client.InNamespace(stormNS)); err != nil {
			return nil, err
		}
		byName := map[string]*corev1.Secret{}
		for i := range secrets.Items {
			byName[secrets.Items[i].Name] = &secrets.Items[i]
		}
		ids := map[string]string{}
		for i := range aks.Items {
			ak := &aks.Items[i]
			if ok(ak, byName[ak.Spec.SecretName]) {
				ids[ak.Name] = ak.Status.CurrentKeyID
			}
		}
		if len(ids) == n {
			return ids, nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil, fmt.Errorf("storm: not every ApiKey reached the expected state in 15 minutes")
}
