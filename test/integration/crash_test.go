package integration

import (
	"context"
	"errors"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/controllers"
	"github.com/keysmith-dev/keysmith/internal/keys"
	"github.com/keysmith-dev/keysmith/internal/operator"
)

var errCrash = errors.New("injected crash")

// faults counts the reconciler's writes and fails one of them: before it reaches the API server (a crash
// just before the write) or after it succeeded (a crash just after, the response lost).
type faults struct {
	n      int
	failAt int
	after  bool
	// secretWrites checks every Secret the reconciler is about to write.
	secretWrites func(*corev1.Secret)
}

func (f *faults) write(do func() error) error {
	f.n++
	if f.n == f.failAt && !f.after {
		return errCrash
	}
	if err := do(); err != nil {
		return err
	}
	if f.n == f.failAt {
		return errCrash
	}
	return nil
}

func (f *faults) client(c client.WithWatch) client.WithWatch {
	return interceptor.NewClient(c, interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if s, ok := obj.(*corev1.Secret); ok {
				f.secretWrites(s)
			}
			return f.write(func() error { return c.Create(ctx, obj, opts...) })
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			if s, ok := obj.(*corev1.Secret); ok {
				f.secretWrites(s)
			}
			return f.write(func() error { return c.Update(ctx, obj, opts...) })
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, p client.Patch, opts ...client.PatchOption) error {
			return f.write(func() error { return c.Patch(ctx, obj, p, opts...) })
		},
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			return f.write(func() error { return c.Delete(ctx, obj, opts...) })
		},
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
			return f.write(func() error { return c.SubResource(sub).Patch(ctx, obj, p, opts...) })
		},
		SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			return f.write(func() error { return c.SubResource(sub).Update(ctx, obj, opts...) })
		},
	})
}

// harness runs the reconciler on one ApiKey, directly and synchronously.
type harness struct {
	ns, name string
	clk      *clocktesting.FakeClock
	last     ctrl.Result // of the last reconcile
}

func (h *harness) reconciler(f *faults) *controllers.ApiKeyReconciler {
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: operator.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	wrapped := f.client(c)
	return &controllers.ApiKeyReconciler{
		Client: wrapped, APIReader: wrapped, Scheme: operator.Scheme(),
		Recorder: &events.FakeRecorder{}, Clock: h.clk, KeyPrefix: "ks",
	}
}

func (h *harness) reconcile(f *faults) error {
	var err error
	h.last, err = h.reconciler(f).Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: h.ns, Name: h.name}})
	return err
}

// converge reconciles without faults until a reconcile writes nothing, and returns how many it took.
func (h *harness) converge() int {
	for i := 1; i <= 10; i++ {
		f := &faults{secretWrites: h.checkSecretWrite}
		Expect(h.reconcile(f)).To(Succeed())
		h.checkSecret()
		if f.n == 0 {
			return i
		}
	}
	Fail("no convergence after 10 reconciles")
	return 0
}

func (h *harness) apiKey() (*v1alpha1.ApiKey, bool) {
	ak := &v1alpha1.ApiKey{}
	err := live.Get(context.Background(), types.NamespacedName{Namespace: h.ns, Name: h.name}, ak)
	if apierrors.IsNotFound(err) {
		return nil, false
	}
	Expect(err).NotTo(HaveOccurred())
	return ak, true
}

func listed(ak *v1alpha1.ApiKey, hash string) *v1alpha1.IssuedKey {
	for i := range ak.Status.Keys {
		if ak.Status.Keys[i].Hash == hash {
			return &ak.Status.Keys[i]
		}
	}
	return nil
}

// checkSecretWrite: a key reaches the Secret only after status records it as Active, except a first key
// (status lists no key yet), which status records right after: nothing accepts it before.
func (h *harness) checkSecretWrite(s *corev1.Secret) {
	key := string(s.Data[v1alpha1.SecretKeyAPIKey])
	ak, ok := h.apiKey()
	Expect(ok).To(BeTrue())
	if len(ak.Status.Keys) == 0 {
		return
	}
	k := listed(ak, keys.Hash(key))
	Expect(k).NotTo(BeNil(), "the key being written to the Secret is not recorded in status")
	Expect(k.State).To(Equal(v1alpha1.KeyActive), "the key being written to the Secret is not Active in status")
}

// checkSecret: whatever state a crash left, the Secret never holds a key that status does not list (but
// for a first key whose status write was lost, which nothing accepts), and
// while the ApiKey is not being deleted that key is still accepted (Active or Retiring, before notAfter).
func (h *harness) checkSecret() {
	s := &corev1.Secret{}
	err := live.Get(context.Background(), types.NamespacedName{Namespace: h.ns, Name: h.name + "-key"}, s)
	if apierrors.IsNotFound(err) {
		return
	}
	Expect(err).NotTo(HaveOccurred())
	ak, ok := h.apiKey()
	if !ok || !ak.DeletionTimestamp.IsZero() {
		return
	}
	if len(ak.Status.Keys) == 0 {
		// A crash between a first key's Secret and its status write: the key is refused by the verifier
		// (status does not list it) until the next reconcile replaces it.
		return
	}
	k := listed(ak, keys.Hash(string(s.Data[v1alpha1.SecretKeyAPIKey])))
	Expect(k).NotTo(BeNil(), "the Secret holds a key that status does not list")
	Expect(k.State).To(BeElementOf(v1alpha1.KeyActive, v1alpha1.KeyRetiring), "the Secret holds a key that is no longer accepted")
	Expect(h.clk.Now().Before(k.NotAfter.Time)).To(BeTrue(), "the Secret holds a key past its notAfter")
}

// checkConverged: Ready, one Active key, and the Secret holds it.
func (h *harness) checkConverged() *v1alpha1.ApiKey {
	ak, ok := h.apiKey()
	Expect(ok).To(BeTrue())
	Expect(ak.Finalizers).To(ContainElement(v1alpha1.Finalizer))
	active := 0
	for _, k := range ak.Status.Keys {
		if k.State == v1alpha1.KeyActive {
			active++
			Expect(k.ID).To(Equal(ak.Status.CurrentKeyID))
		}
	}
	Expect(active).To(Equal(1), "exactly one Active key")
	s := &corev1.Secret{}
	Expect(live.Get(context.Background(), types.NamespacedName{Namespace: h.ns, Name: h.name + "-key"}, s)).To(Succeed())
	Expect(keys.ID(string(s.Data[v1alpha1.SecretKeyAPIKey]))).To(Equal(ak.Status.CurrentKeyID), "the Secret holds the current key")
	Expect(metav1.IsControlledBy(s, ak)).To(BeTrue())
	Expect(ak.Status.Conditions).To(ContainElement(And(HaveField("Type", v1alpha1.ConditionReady), HaveField("Status", metav1.ConditionTrue))))
	return ak
}

// checkWake: the last reconcile asked to wake exactly at the next due instant: the rotation, or the end
// of a valid key's life, whichever comes first.
func (h *harness) checkWake(ak *v1alpha1.ApiKey) {
	due := ak.Status.NextRotationAt.Time
	for _, k := range ak.Status.Keys {
		if (k.State == v1alpha1.KeyActive || k.State == v1alpha1.KeyRetiring) && k.NotAfter.Time.Before(due) {
			due = k.NotAfter.Time
		}
	}
	Expect(h.last.RequeueAfter).To(Equal(due.Sub(h.clk.Now())), "RequeueAfter is exactly the time to the next due instant")
}

func newHarness() *harness {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "crash-"}}
	Expect(live.Create(context.Background(), ns)).To(Succeed())
	h := &harness{ns: ns.Name, name: "svc", clk: clocktesting.NewFakeClock(time.Now().UTC().Truncate(time.Second))}
	ak := &v1alpha1.ApiKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: h.name},
		Spec: v1alpha1.ApiKeySpec{
			Scopes: []string{"users:read"}, SecretName: h.name + "-key",
			Rotation: &v1alpha1.RotationSpec{Period: metav1.Duration{Duration: time.Hour}, Overlap: &metav1.Duration{Duration: 10 * time.Minute}},
		},
	}
	Expect(live.Create(context.Background(), ak)).To(Succeed())
	return h
}

var _ = Describe("a crash at any write", func() {
	type scenario struct {
		name   string
		writes int // writes the step takes without faults
		setup  func(h *harness)
		verify func(h *harness, before *v1alpha1.ApiKey)
	}
	issued := func(h *harness) *v1alpha1.ApiKey { h.converge(); return h.checkConverged() }

	scenarios := []scenario{
		{
			name: "while issuing the first key", writes: 3,
			setup: func(h *harness) {},
			verify: func(h *harness, _ *v1alpha1.ApiKey) {
				h.checkWake(h.checkConverged())
			},
		},
		{
			name: "while rotating", writes: 2,
			setup: func(h *harness) {
				issued(h)
				h.clk.Step(time.Hour)
			},
			verify: func(h *harness, before *v1alpha1.ApiKey) {
				ak := h.checkConverged()
				Expect(ak.Status.CurrentKeyID).NotTo(Equal(before.Status.CurrentKeyID), "rotated")
				old := listed(ak, before.Status.Keys[0].Hash)
				Expect(old).NotTo(BeNil())
				Expect(old.State).To(Equal(v1alpha1.KeyRetiring), "the key workloads held stays valid for the overlap")
				Expect(h.last.RequeueAfter).To(Equal(10*time.Minute), "wakes exactly at the end of the overlap")
				h.checkWake(ak)
			},
		},
		{
			name: "while deleting", writes: 3,
			setup: func(h *harness) {
				ak := issued(h)
				Expect(live.Delete(context.Background(), ak)).To(Succeed())
			},
			verify: func(h *harness, _ *v1alpha1.ApiKey) {
				_, exists := h.apiKey()
				Expect(exists).To(BeFalse(), "the ApiKey is released")
				s := &corev1.Secret{}
				err := live.Get(context.Background(), types.NamespacedName{Namespace: h.ns, Name: h.name + "-key"}, s)
				Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the Secret is deleted")
			},
		},
	}

	for _, sc := range scenarios {
		It(fmt.Sprintf("%s takes %d writes without faults", sc.name, sc.writes), func() {
			h := newHarness()
			sc.setup(h)
			before, _ := h.apiKey()
			f := &faults{secretWrites: h.checkSecretWrite}
			Expect(h.reconcile(f)).To(Succeed())
			Expect(f.n).To(Equal(sc.writes))
			h.converge()
			sc.verify(h, before)
		})
		for i := 1; i <= sc.writes; i++ {
			for _, after := range []bool{false, true} {
				when := "before"
				if after {
					when = "after"
				}
				It(fmt.Sprintf("%s, crashing %s write %d, converges", sc.name, when, i), func() {
					h := newHarness()
					sc.setup(h)
					before, _ := h.apiKey()
					f := &faults{failAt: i, after: after, secretWrites: h.checkSecretWrite}
					err := h.reconcile(f)
					Expect(err).To(HaveOccurred(), "the injected fault surfaced")
					h.checkSecret()
					n := h.converge()
					GinkgoWriter.Printf("%s, crash %s write %d: converged in %d reconciles\n", sc.name, when, i, n)
					sc.verify(h, before)
				})
			}
		}
	}
})
