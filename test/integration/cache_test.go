package integration

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/controllers"
	"github.com/keysmith-dev/keysmith/internal/keys"
	"github.com/keysmith-dev/keysmith/internal/operator"
	"github.com/keysmith-dev/keysmith/internal/testenv"
)

// The manager's Secret cache (internal/operator/secretcache.go), on the real control plane: keysmith's
// real manager runs in this process, so that its cache can be read and its heap measured.
var _ = Describe("The manager's Secret cache", Ordered, ContinueOnFailure, func() {
	ctx := context.Background()
	var mgr *operator.Manager

	BeforeAll(func() {
		var err error
		mgr, err = operator.NewManager(cfg, operator.Options{MetricsBindAddress: "0", HealthProbeBindAddress: "0"})
		Expect(err).NotTo(HaveOccurred())
		stop := testenv.Run(mgr)
		DeferCleanup(func() { Expect(stop()).To(Succeed()) })
		Expect(mgr.GetCache().WaitForCacheSync(ctx)).To(BeTrue())
	})

	newNamespace := func(prefix string) string {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix}}
		Expect(live.Create(ctx, ns)).To(Succeed())
		return ns.Name
	}

	// readyKey waits until the ApiKey is Ready and its Secret holds the current key, and returns both.
	// It never prints the Secret.
	readyKey := func(ns, name string) (*v1alpha1.ApiKey, string, *corev1.Secret) {
		var ak *v1alpha1.ApiKey
		var key string
		s := &corev1.Secret{}
		Eventually(func(g Gomega) {
			ak = &v1alpha1.ApiKey{}
			g.Expect(live.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, ak)).To(Succeed())
			g.Expect(meta.IsStatusConditionTrue(ak.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue(), "Ready")
			s = &corev1.Secret{}
			g.Expect(live.Get(ctx, types.NamespacedName{Namespace: ns, Name: ak.Spec.SecretName}, s)).To(Succeed())
			key = string(s.Data[v1alpha1.SecretKeyAPIKey])
			g.Expect(key != "" && keys.ID(key) == ak.Status.CurrentKeyID).To(BeTrue(), "the Secret holds the current key")
		}, 20*time.Second, 50*time.Millisecond).Should(Succeed())
		return ak, key, s
	}

	// cached waits until the manager's cache shows the Secret at resourceVersion rv and returns it.
	cached := func(ns, name, rv string) *corev1.Secret {
		s := &corev1.Secret{}
		Eventually(func(g Gomega) {
			s = &corev1.Secret{}
			g.Expect(mgr.GetClient().Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, s)).To(Succeed())
			g.Expect(s.ResourceVersion).To(Equal(rv))
		}, 20*time.Second, 50*time.Millisecond).Should(Succeed())
		return s
	}

	// dump is everything a cached Secret (or list of them) holds, as text to search: its JSON (data in
	// base64), its Go syntax and its data values as they are.
	dump := func(obj any) string {
		b, err := json.Marshal(obj)
		Expect(err).NotTo(HaveOccurred())
		text := string(b) + fmt.Sprintf("%#v", obj)
		var items []corev1.Secret
		switch o := obj.(type) {
		case *corev1.Secret:
			items = []corev1.Secret{*o}
		case *corev1.SecretList:
			items = o.Items
		}
		for _, s := range items {
			for _, v := range s.Data {
				text += "\n" + string(v)
			}
		}
		return text
	}

	It("holds no plaintext key, only its hash, and no data or annotations of a tenant's labelled Secret", func() {
		ns := newNamespace("cache-")
		Expect(live.Create(ctx, &v1alpha1.ApiKey{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "svc"},
			Spec: v1alpha1.ApiKeySpec{Scopes: []string{"users:read"}, SecretName: "svc-key",
				SecretTemplate: &v1alpha1.SecretTemplate{Labels: map[string]string{"team": "a"}, Annotations: map[string]string{"note": "b"}}},
		})).To(Succeed())
		ak, key, s := readyKey(ns, "svc")
		bait := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bait", Annotations: map[string]string{"tenant": "annotation"},
				Labels: map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue, "tenant": "label"}},
			Data: map[string][]byte{"payload": []byte("tenant-bait-payload")},
		}
		Expect(live.Create(ctx, bait)).To(Succeed())

		c := cached(ns, "svc-key", s.ResourceVersion)
		text := dump(c)
		Expect(strings.Contains(text, key)).To(BeFalse(), "the cached Secret holds the plaintext key")
		Expect(strings.Contains(text, base64.StdEncoding.EncodeToString([]byte(key)))).To(BeFalse(), "the cached Secret holds the key in base64")
		Expect(testenv.FindKeys(text)).To(BeZero(), "something shaped like a valid key is in the cached Secret")
		Expect(string(c.Data[controllers.CachedKeyHash])).To(Equal(keys.Hash(key)), "the cache keeps the key's hash")
		// Data is checked entry by entry: a failing assertion must not print a key.
		_, hasKey := c.Data[v1alpha1.SecretKeyAPIKey]
		Expect(hasKey).To(BeFalse(), "the cached Secret has an api-key entry")
		Expect(string(c.Data[v1alpha1.SecretKeyKeyID])).To(Equal(ak.Status.CurrentKeyID))
		Expect(string(c.Data[v1alpha1.SecretKeyExpiresAt])).To(Equal(string(s.Data[v1alpha1.SecretKeyExpiresAt])))
		Expect(len(c.Data)).To(Equal(3))
		Expect(c.Labels).To(Equal(s.Labels))
		Expect(c.Annotations).To(Equal(s.Annotations))
		Expect(metav1.IsControlledBy(c, ak)).To(BeTrue())
		Expect(string(c.Type)).To(Equal(v1alpha1.SecretType))
		Expect(c.ManagedFields).To(BeEmpty())

		By("nothing in the whole Secret cache holds the key")
		all := &corev1.SecretList{}
		Expect(mgr.GetCache().List(ctx, all, client.UnsafeDisableDeepCopy)).To(Succeed())
		text = dump(all)
		Expect(strings.Contains(text, key)).To(BeFalse(), "the Secret cache holds the plaintext key")
		Expect(testenv.FindKeys(text)).To(BeZero(), "something shaped like a valid key is in the Secret cache")

		By("a tenant's Secret labelled as keysmith's keeps neither its data nor its annotations nor its other labels in the cache")
		b := cached(ns, "bait", bait.ResourceVersion)
		Expect(b.Data).NotTo(HaveKey("payload"))
		Expect(strings.Contains(dump(b), "tenant-bait-payload")).To(BeFalse())
		Expect(b.Annotations).To(BeEmpty())
		Expect(b.Labels).To(Equal(map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue}))
		Expect(b.UID).To(Equal(bait.UID))
	})

	It("repairs, rotates and empties the Secret without losing its key or anyone's metadata", func() {
		ns := newNamespace("cache-")
		Expect(live.Create(ctx, &v1alpha1.ApiKey{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "svc"},
			Spec: v1alpha1.ApiKeySpec{Scopes: []string{"users:read"}, SecretName: "svc-key",
				SecretTemplate: &v1alpha1.SecretTemplate{Labels: map[string]string{"team": "a"}}},
		})).To(Succeed())
		ak, key, s := readyKey(ns, "svc")

		By("someone else's finalizer, label and annotation on the Secret, and a tampered key-id")
		s.Finalizers = append(s.Finalizers, "example.com/hold")
		s.Labels["other"] = "label"
		s.Annotations = map[string]string{"other.example.com/note": strings.Repeat("n", 8192)}
		s.Data[v1alpha1.SecretKeyKeyID] = []byte("tampered")
		Expect(live.Update(ctx, s)).To(Succeed())
		DeferCleanup(func() {
			cur := &corev1.Secret{}
			if live.Get(ctx, client.ObjectKeyFromObject(s), cur) == nil {
				cur.Finalizers = nil
				Expect(live.Update(ctx, cur)).To(Succeed())
			}
		})
		Eventually(func(g Gomega) {
			cur := &corev1.Secret{}
			g.Expect(live.Get(ctx, client.ObjectKeyFromObject(s), cur)).To(Succeed())
			g.Expect(string(cur.Data[v1alpha1.SecretKeyKeyID])).To(Equal(ak.Status.CurrentKeyID), "key-id repaired")
			g.Expect(string(cur.Data[v1alpha1.SecretKeyAPIKey]) == key).To(BeTrue(), "the key is untouched by the repair")
			g.Expect(cur.Finalizers).To(ContainElement("example.com/hold"))
			g.Expect(cur.Labels).To(HaveKeyWithValue("other", "label"))
			g.Expect(cur.Annotations).To(HaveKeyWithValue("other.example.com/note", strings.Repeat("n", 8192)))
		}, 20*time.Second, 50*time.Millisecond).Should(Succeed())

		By("a rotation writes the new key and keeps the others' metadata")
		cur := &v1alpha1.ApiKey{}
		Expect(live.Get(ctx, client.ObjectKeyFromObject(ak), cur)).To(Succeed())
		patch := client.MergeFrom(cur.DeepCopy())
		cur.Annotations = map[string]string{v1alpha1.AnnotationRotate: "1"}
		Expect(live.Patch(ctx, cur, patch)).To(Succeed())
		Eventually(func() string {
			got := &v1alpha1.ApiKey{}
			Expect(live.Get(ctx, client.ObjectKeyFromObject(ak), got)).To(Succeed())
			return got.Status.CurrentKeyID
		}, 20*time.Second, 50*time.Millisecond).ShouldNot(Equal(ak.Status.CurrentKeyID))
		_, rotated, after := readyKey(ns, "svc")
		Expect(rotated == key).To(BeFalse())
		Expect(after.Finalizers).To(ContainElement("example.com/hold"))
		Expect(after.Labels).To(HaveKeyWithValue("other", "label"))
		Expect(after.Labels).To(HaveKeyWithValue("team", "a"))
		Expect(after.Annotations).To(HaveKeyWithValue("other.example.com/note", strings.Repeat("n", 8192)))
		Expect(len(after.Data)).To(Equal(3))

		By("disabling empties the key and keeps the others' metadata")
		Expect(live.Get(ctx, client.ObjectKeyFromObject(ak), cur)).To(Succeed())
		cur.Spec.Disabled = true
		Expect(live.Update(ctx, cur)).To(Succeed())
		Eventually(func(g Gomega) {
			got := &corev1.Secret{}
			g.Expect(live.Get(ctx, client.ObjectKeyFromObject(s), got)).To(Succeed())
			v, ok := got.Data[v1alpha1.SecretKeyAPIKey]
			g.Expect(ok && len(v) == 0).To(BeTrue(), "api-key emptied")
			g.Expect(got.Finalizers).To(ContainElement("example.com/hold"))
			g.Expect(got.Labels).To(HaveKeyWithValue("other", "label"))
		}, 20*time.Second, 50*time.Millisecond).Should(Succeed())
	})

	It("grows the manager's heap by less than 32 MiB for 64 MiB of a tenant's Secrets labelled as keysmith's", func() {
		const n, size = 64, 1<<20 - 1024 // the API server's limit is 1 MiB of data per Secret
		ns := newNamespace("bait-")
		payload := bytes.Repeat([]byte("b"), size)
		heap := testenv.HeapAfterGC
		inCache := func() int {
			list := &corev1.SecretList{}
			Expect(mgr.GetCache().List(ctx, list, client.InNamespace(ns), client.UnsafeDisableDeepCopy)).To(Succeed())
			return len(list.Items)
		}
		Expect(inCache()).To(BeZero())
		before := heap()
		for i := range n {
			s := &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("bait-%02d", i),
					Labels:      map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue, v1alpha1.LabelApiKey: "svc"},
					Annotations: map[string]string{"tenant.example.com/bait": "x"}},
				Data: map[string][]byte{"payload": payload},
			}
			Expect(live.Create(ctx, s)).To(Succeed())
		}
		Eventually(inCache, 60*time.Second, 100*time.Millisecond).Should(Equal(n))
		after := heap()
		runtime.KeepAlive(payload)
		grew := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / (1 << 20)
		inuse := float64(int64(after.HeapInuse)-int64(before.HeapInuse)) / (1 << 20)
		GinkgoWriter.Printf("heap after %d tenant Secrets of %d bytes: HeapAlloc %+.1f MiB (%.1f -> %.1f), HeapInuse %+.1f MiB\n",
			n, size, grew, float64(before.HeapAlloc)/(1<<20), float64(after.HeapAlloc)/(1<<20), inuse)
		AddReportEntry("heap growth (MiB)", fmt.Sprintf("HeapAlloc %+.1f, HeapInuse %+.1f", grew, inuse))
		Expect(grew).To(BeNumerically("<", 32), "HeapAlloc grew by %.1f MiB", grew)
		Expect(inuse).To(BeNumerically("<", 32), "HeapInuse grew by %.1f MiB", inuse)
		Expect(live.DeleteAllOf(ctx, &corev1.Secret{}, client.InNamespace(ns))).To(Succeed())
	})
})
