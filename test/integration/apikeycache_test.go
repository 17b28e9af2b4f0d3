package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/operator"
	"github.com/keysmith-dev/keysmith/internal/rotation"
	"github.com/keysmith-dev/keysmith/internal/testenv"
	"github.com/keysmith-dev/keysmith/internal/verify"
)

// The ApiKey cache of the manager and of the standalone verifier (internal/operator/apikeycache.go), on
// the real control plane: both run in this process, so that their caches can be read and the verifier's
// heap measured.
var _ = Describe("The ApiKey cache", Ordered, ContinueOnFailure, func() {
	ctx := context.Background()
	const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

	// run starts m and stops it when the spec ends.
	run := func(m *operator.Manager) {
		stop := testenv.Run(m)
		DeferCleanup(func() { Expect(stop()).To(Succeed()) })
		Expect(m.GetCache().WaitForCacheSync(ctx)).To(BeTrue())
	}
	newNamespace := func(prefix string) string {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix}}
		Expect(live.Create(ctx, ns)).To(Succeed())
		return ns.Name
	}
	verifyOptions := func() verify.Options {
		return verify.Options{HTTPAddress: "0", GRPCAddress: "0", AuditSink: filepath.Join(GinkgoT().TempDir(), "audit.log")}
	}

	It("grows a standalone verifier's heap by less than 8 MiB for 100 ApiKeys with 200 KiB of annotations each", func() {
		const n, size = 100, 200 << 10
		ns := newNamespace("bloat-")
		v, err := operator.NewVerifierManager(cfg, operator.VerifierOptions{MetricsBindAddress: "0", HealthProbeBindAddress: "0", Verify: verifyOptions()})
		Expect(err).NotTo(HaveOccurred())
		run(v)
		Eventually(v.Verifier.Index.Ready, 20*time.Second, 50*time.Millisecond).Should(Succeed())

		payload := strings.Repeat("a", size)
		heap := testenv.HeapAfterGC
		inCache := func() []v1alpha1.ApiKey {
			list := &v1alpha1.ApiKeyList{}
			Expect(v.GetCache().List(ctx, list, client.InNamespace(ns), client.UnsafeDisableDeepCopy)).To(Succeed())
			return list.Items
		}
		Expect(inCache()).To(BeEmpty())
		DeferCleanup(func() {
			// Later specs' managers would reconcile these; no manager holds a finalizer on them.
			Expect(live.DeleteAllOf(ctx, &v1alpha1.ApiKey{}, client.InNamespace(ns))).To(Succeed())
			Eventually(func() int { return len(inCache()) }, 30*time.Second, 100*time.Millisecond).Should(BeZero())
		})
		before := heap()
		for i := range n {
			Expect(live.Create(ctx, &v1alpha1.ApiKey{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("bloat-%03d", i),
					Labels:      map[string]string{"team": "a"},
					Annotations: map[string]string{lastApplied: payload, v1alpha1.AnnotationRotate: "1"}},
				Spec: v1alpha1.ApiKeySpec{Scopes: []string{"users:read"}, SecretName: fmt.Sprintf("bloat-%03d", i)},
			})).To(Succeed())
		}
		Eventually(func() int { return len(inCache()) }, 60*time.Second, 100*time.Millisecond).Should(Equal(n))
		after := heap()
		runtime.KeepAlive(payload)
		grew := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / (1 << 20)
		inuse := float64(int64(after.HeapInuse)-int64(before.HeapInuse)) / (1 << 20)
		GinkgoWriter.Printf("verifier heap after %d ApiKeys with %d bytes of annotations: HeapAlloc %+.1f MiB (%.1f -> %.1f), HeapInuse %+.1f MiB\n",
			n, size, grew, float64(before.HeapAlloc)/(1<<20), float64(after.HeapAlloc)/(1<<20), inuse)
		AddReportEntry("verifier heap growth (MiB)", fmt.Sprintf("HeapAlloc %+.1f, HeapInuse %+.1f", grew, inuse))

		By("the cache keeps the labels, keysmith's annotations and the digest of the others only")
		for _, ak := range inCache() {
			Expect(ak.Annotations).To(HaveLen(2), ak.Name)
			Expect(ak.Annotations).To(HaveKeyWithValue(v1alpha1.AnnotationRotate, "1"), ak.Name)
			Expect(ak.Annotations).To(HaveKey(operator.CachedAnnotationsDigest), ak.Name)
			Expect(ak.Labels).To(Equal(map[string]string{"team": "a"}), ak.Name)
			Expect(ak.ManagedFields).To(BeEmpty(), ak.Name)
		}
		Expect(grew).To(BeNumerically("<", 8), "HeapAlloc grew by %.1f MiB", grew)
		Expect(inuse).To(BeNumerically("<", 8), "HeapInuse grew by %.1f MiB", inuse)

	})

	It("keeps an ApiKey's annotations, labels and others' finalizers on the API server through the manager's writes from its cache", func() {
		ns := newNamespace("bloat-")
		mgr, err := operator.NewManager(cfg, operator.Options{MetricsBindAddress: "0", HealthProbeBindAddress: "0", Verify: verifyOptions()})
		Expect(err).NotTo(HaveOccurred())
		run(mgr)

		// 200 KiB of annotations and 100 labels (more than the cache keeps), and someone else's finalizer.
		annotations := map[string]string{lastApplied: strings.Repeat("a", 200<<10), "example.com/note": "kept"}
		labels := map[string]string{}
		for i := range 100 {
			labels[fmt.Sprintf("l%03d", i)] = "v"
		}
		const hold = "example.com/hold"
		// The tenant's writes have their own field manager, so that managedFields show whether keysmith's
		// writes took the tenant's annotations and labels from it.
		tenant := client.FieldOwner("tenant")
		Expect(live.Create(ctx, &v1alpha1.ApiKey{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "svc", Labels: labels, Annotations: maps.Clone(annotations), Finalizers: []string{hold}},
			Spec:       v1alpha1.ApiKeySpec{Scopes: []string{"users:read"}, SecretName: "svc-key"},
		}, tenant)).To(Succeed())
		key := types.NamespacedName{Namespace: ns, Name: "svc"}
		DeferCleanup(func() {
			// Release our finalizer and let the manager (still running) release keysmith's.
			ak := &v1alpha1.ApiKey{}
			Expect(live.Get(ctx, key, ak)).To(Succeed())
			patch := client.MergeFrom(ak.DeepCopy())
			ak.Finalizers = []string{v1alpha1.Finalizer}
			Expect(live.Patch(ctx, ak, patch)).To(Succeed())
			Expect(live.Delete(ctx, ak)).To(Succeed())
			Eventually(func() error { return live.Get(ctx, key, &v1alpha1.ApiKey{}) }, 20*time.Second, 50*time.Millisecond).ShouldNot(Succeed())
		})

		// owned returns the metadata fields (annotations or labels) that the tenant's managedFields entry
		// lists, and fails when a status entry lists any metadata.
		owned := func(g Gomega, ak *v1alpha1.ApiKey, field string) map[string]any {
			var out map[string]any
			for _, mf := range ak.ManagedFields {
				var fields map[string]map[string]any
				g.Expect(json.Unmarshal(mf.FieldsV1.Raw, &fields)).To(Succeed())
				if mf.Subresource == "status" {
					g.Expect(fields).NotTo(HaveKey("f:metadata"), "%s's status writes own metadata", mf.Manager)
				}
				if mf.Manager == "tenant" && mf.Subresource == "" {
					out, _ = fields["f:metadata"]["f:"+field].(map[string]any)
				}
			}
			return out
		}
		// stored checks what the API server holds, after a write from the manager's cache: every
		// annotation, label and finalizer, and the tenant still owning its annotations and labels.
		stored := func(g Gomega, want map[string]string) *v1alpha1.ApiKey {
			ak := &v1alpha1.ApiKey{}
			g.Expect(live.Get(ctx, key, ak)).To(Succeed())
			g.Expect(ak.Annotations).To(Equal(want), "the stored annotations")
			g.Expect(ak.Labels).To(Equal(labels), "the stored labels")
			g.Expect(ak.Finalizers).To(ConsistOf(hold, v1alpha1.Finalizer), "the stored finalizers")
			annotationsOwned, labelsOwned := owned(g, ak, "annotations"), owned(g, ak, "labels")
			for k := range want {
				g.Expect(annotationsOwned).To(HaveKey("f:"+k), "the tenant owns annotation %s", k)
			}
			for k := range labels {
				g.Expect(labelsOwned).To(HaveKey("f:"+k), "the tenant owns label %s", k)
			}
			return ak
		}

		By("the first key: a finalizer patch and status updates from the cached ApiKey")
		var first *v1alpha1.ApiKey
		Eventually(func(g Gomega) {
			first = stored(g, annotations)
			g.Expect(meta.IsStatusConditionTrue(first.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue(), "Ready")
		}, 20*time.Second, 50*time.Millisecond).Should(Succeed())

		By("the manager's cache holds the stripped ApiKey it wrote from")
		c := &v1alpha1.ApiKey{}
		Expect(mgr.GetClient().Get(ctx, key, c)).To(Succeed())
		Expect(c.Annotations).To(HaveLen(1))
		Expect(c.Annotations).To(HaveKey(operator.CachedAnnotationsDigest))
		Expect(c.Labels).To(HaveLen(64))
		Expect(c.Finalizers).To(ConsistOf(hold, v1alpha1.Finalizer))

		By("a rotation: status updates from the cached ApiKey")
		ak := &v1alpha1.ApiKey{}
		Expect(live.Get(ctx, key, ak)).To(Succeed())
		patch := client.MergeFrom(ak.DeepCopy())
		ak.Annotations[v1alpha1.AnnotationRotate] = "1"
		Expect(live.Patch(ctx, ak, patch, tenant)).To(Succeed())
		annotations[v1alpha1.AnnotationRotate] = "1"
		Eventually(func(g Gomega) {
			got := stored(g, annotations)
			g.Expect(got.Status.CurrentKeyID).NotTo(Equal(first.Status.CurrentKeyID), "rotated")
			g.Expect(got.Status.HandledRotateRequest).To(Equal(rotation.RequestDigest("1")))
			g.Expect(meta.IsStatusConditionTrue(got.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue(), "Ready")
		}, 20*time.Second, 50*time.Millisecond).Should(Succeed())

		By("a revoke value longer than 4096 bytes: the manager reads the marker, revokes nothing and records the marker's digest")
		long := "all" + strings.Repeat(" ", 5000)
		Expect(live.Get(ctx, key, ak)).To(Succeed())
		current := ak.Status.CurrentKeyID
		patch = client.MergeFrom(ak.DeepCopy())
		ak.Annotations[v1alpha1.AnnotationRevoke] = long
		Expect(live.Patch(ctx, ak, patch, tenant)).To(Succeed())
		annotations[v1alpha1.AnnotationRevoke] = long
		Eventually(func(g Gomega) {
			got := stored(g, annotations)
			g.Expect(got.Status.HandledRevokeRequest).To(Equal(rotation.RequestDigest(rotation.RequestDigest(long))))
			g.Expect(got.Status.CurrentKeyID).To(Equal(current))
			for _, k := range got.Status.Keys {
				if k.ID == current {
					g.Expect(k.State).To(Equal(v1alpha1.KeyActive), "the current key")
				}
			}
		}, 20*time.Second, 50*time.Millisecond).Should(Succeed())
		Eventually(func(g Gomega) {
			events := &eventsv1.EventList{}
			g.Expect(live.List(ctx, events, client.InNamespace(ns))).To(Succeed())
			reasons := []string{}
			for _, e := range events.Items {
				reasons = append(reasons, e.Reason)
			}
			g.Expect(reasons).To(ContainElement(v1alpha1.EventInvalidAnnotation))
		}, 20*time.Second, 50*time.Millisecond).Should(Succeed())

		By("a status update of the cached ApiKey, directly: the API server ignores its metadata")
		used := metav1.NewTime(time.Now().Truncate(time.Second))
		Eventually(func(g Gomega) {
			c := &v1alpha1.ApiKey{}
			g.Expect(mgr.GetClient().Get(ctx, key, c)).To(Succeed())
			g.Expect(c.Annotations).To(HaveLen(3))
			g.Expect(c.Annotations).To(HaveKeyWithValue(v1alpha1.AnnotationRotate, "1"))
			g.Expect(c.Annotations).To(HaveKeyWithValue(v1alpha1.AnnotationRevoke, rotation.RequestDigest(long)))
			c.Status.LastUsedAt = &used
			g.Expect(mgr.GetClient().Status().Update(ctx, c)).To(Succeed()) // a conflict with the manager's own write is retried
		}, 10*time.Second, 100*time.Millisecond).Should(Succeed())
		Eventually(func(g Gomega) {
			got := stored(g, annotations)
			g.Expect(got.Status.LastUsedAt).NotTo(BeNil())
			g.Expect(got.Status.LastUsedAt.Equal(&used)).To(BeTrue(), "lastUsedAt written")
		}, 5*time.Second, 50*time.Millisecond).Should(Succeed())

		By("an update of the cached ApiKey (keysmith makes none) is refused, and changes nothing")
		// The cache may not hold the status write above yet: a stale copy gets a conflict first, and is read again.
		Eventually(func(g Gomega) {
			g.Expect(mgr.GetClient().Get(ctx, key, c)).To(Succeed())
			err = mgr.GetClient().Update(ctx, c)
			g.Expect(apierrors.IsConflict(err)).To(BeFalse(), "a stale cached copy: %v", err)
		}, 10*time.Second, 100*time.Millisecond).Should(Succeed())
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "the update of a cached ApiKey: %v", err)
		Expect(err.Error()).To(ContainSubstring(operator.CachedAnnotationsDigest))
		Eventually(func(g Gomega) { stored(g, annotations) }).Should(Succeed())
	})
})
