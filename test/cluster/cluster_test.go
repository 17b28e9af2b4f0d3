package cluster

import (
	"net/http"
	"os/exec"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/keys"
	"github.com/keysmith-dev/keysmith/internal/testenv"
)

func newNamespace() string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "cluster-"}}
	Expect(k8s.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

// issue creates an ApiKey and returns it with its key once Ready and accepted by the verifier.
func issue(ns, name string) (*v1alpha1.ApiKey, string) {
	Expect(k8s.Create(ctx, &v1alpha1.ApiKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.ApiKeySpec{Scopes: []string{"users:read"}, SecretName: name + "-key"},
	})).To(Succeed())
	ak := &v1alpha1.ApiKey{}
	var key string
	Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, ak)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(ak.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue())
		s := secret(ns, name+"-key")
		g.Expect(s).NotTo(BeNil())
		key = string(s.Data[v1alpha1.SecretKeyAPIKey])
		g.Expect(keys.ID(key)).To(Equal(ak.Status.CurrentKeyID))
		g.Expect(verdict(key)).To(Equal(testenv.Accepted))
	}, eventually, poll).Should(Succeed())
	return ak, key
}

// secret returns the Secret, or nil once it is gone.
func secret(ns, name string) *corev1.Secret {
	s := &corev1.Secret{}
	err := k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, s)
	if apierrors.IsNotFound(err) {
		return nil
	}
	Expect(err).NotTo(HaveOccurred())
	return s
}

func gone(obj client.Object) func() bool {
	return func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj))
	}
}

func verdict(key string) testenv.Verdict {
	return testenv.VerifyKey(http.DefaultClient, "http://"+mgr.Verifier.HTTPAddr(), key)
}

var _ = Describe("Deleting an ApiKey", func() {
	It("with background propagation (the default): the key is refused, the ApiKey goes, and the garbage collector collects its dependents", func() {
		ns := newNamespace()
		ak, key := issue(ns, "background")
		s := secret(ns, "background-key")
		owner := metav1.GetControllerOf(s)
		Expect(owner).NotTo(BeNil())
		Expect(owner.UID).To(Equal(ak.UID))
		Expect(*owner.BlockOwnerDeletion).To(BeTrue())
		// A dependent of the user's (a ConfigMap rendered beside the key, say), which only the garbage
		// collector deletes: keysmith deletes its own Secret itself.
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "background-config", OwnerReferences: []metav1.OwnerReference{{
			APIVersion: v1alpha1.GroupVersion.String(), Kind: "ApiKey", Name: ak.Name, UID: ak.UID,
		}}}}
		Expect(k8s.Create(ctx, cm)).To(Succeed())

		Expect(k8s.Delete(ctx, ak)).To(Succeed())
		Eventually(func() testenv.Verdict { return verdict(key) }, eventually, poll).Should(Equal(testenv.Refused))
		Eventually(gone(ak), eventually, poll).Should(BeTrue())
		Eventually(gone(s), eventually, poll).Should(BeTrue())
		Eventually(gone(cm), eventually, poll).Should(BeTrue(), "the garbage collector deleted the ApiKey's other dependent")
	})

	It("with foreground propagation: the garbage collector deletes the Secret first, then the ApiKey goes", func() {
		ns := newNamespace()
		ak, key := issue(ns, "foreground")
		s := secret(ns, "foreground-key")
		Expect(k8s.Delete(ctx, ak, client.PropagationPolicy(metav1.DeletePropagationForeground))).To(Succeed())
		Eventually(func() testenv.Verdict { return verdict(key) }, eventually, poll).Should(Equal(testenv.Refused))
		// The ApiKey is held by the foregroundDeletion finalizer until its blocking dependent is gone.
		Eventually(gone(s), eventually, poll).Should(BeTrue())
		Eventually(gone(ak), eventually, poll).Should(BeTrue())
	})

	It("with orphaning propagation (kubectl delete --cascade=orphan): the Secret stays without an owner, and its key is refused", func() {
		ns := newNamespace()
		ak, key := issue(ns, "orphan")
		out, err := exec.Command(kubectl, "--kubeconfig", kubeconfig, "-n", ns, "delete", "apikey", "orphan", "--cascade=orphan").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		Expect(string(out)).To(ContainSubstring(`apikey.keysmith.dev "orphan" deleted`))
		Eventually(gone(ak), eventually, poll).Should(BeTrue())
		Eventually(func(g Gomega) {
			s := secret(ns, "orphan-key")
			g.Expect(s).NotTo(BeNil(), "an orphaned Secret is the user's to delete")
			g.Expect(s.OwnerReferences).To(BeEmpty(), "the garbage collector removed the owner reference")
		}, eventually, poll).Should(Succeed())
		Consistently(func() *corev1.Secret { return secret(ns, "orphan-key") }, "2s", poll).ShouldNot(BeNil())
		Expect(verdict(key)).To(Equal(testenv.Refused), "the ApiKey is gone, so its key is refused even though the Secret still holds it")
	})
})

var _ = Describe("Deleting an ApiKey while the garbage collector is down", Serial, func() {
	It("with orphaning propagation: keysmith revokes the keys and keeps the Secret for the garbage collector to release", func() {
		ns := newNamespace()
		ak, key := issue(ns, "orphan-later")
		Expect(cluster.StopControllerManager()).To(Succeed())
		DeferCleanup(func() {
			if !cluster.ControllerManagerRunning() {
				Expect(cluster.StartControllerManager()).To(Succeed())
			}
		})
		Expect(k8s.Delete(ctx, ak, client.PropagationPolicy(metav1.DeletePropagationOrphan))).To(Succeed())
		Eventually(func() testenv.Verdict { return verdict(key) }, eventually, poll).Should(Equal(testenv.Refused))
		// keysmith has done its part (its finalizer is gone); only the garbage collector's orphan finalizer holds the ApiKey.
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(ak), ak)).To(Succeed())
			g.Expect(ak.Finalizers).To(Equal([]string{metav1.FinalizerOrphanDependents}))
		}, eventually, poll).Should(Succeed())
		s := secret(ns, "orphan-later-key")
		Expect(s).NotTo(BeNil(), "keysmith deleted a Secret that the deletion asked to orphan")
		Expect(metav1.GetControllerOf(s)).NotTo(BeNil())

		Expect(cluster.StartControllerManager()).To(Succeed())
		Eventually(gone(ak), eventually, poll).Should(BeTrue())
		Eventually(func(g Gomega) {
			s := secret(ns, "orphan-later-key")
			g.Expect(s).NotTo(BeNil())
			g.Expect(s.OwnerReferences).To(BeEmpty())
		}, eventually, poll).Should(Succeed())
		Expect(verdict(key)).To(Equal(testenv.Refused))
	})
})

var _ = Describe("Deleting a namespace", func() {
	It("deletes its ApiKeys, refuses their keys, collects their Secrets and finishes", func() {
		ns := newNamespace()
		_, k1 := issue(ns, "one")
		_, k2 := issue(ns, "two")
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
		Expect(k8s.Delete(ctx, n)).To(Succeed())
		Eventually(func() []testenv.Verdict { return []testenv.Verdict{verdict(k1), verdict(k2)} }, eventually, poll).
			Should(Equal([]testenv.Verdict{testenv.Refused, testenv.Refused}))
		Eventually(gone(n), eventually, poll).Should(BeTrue(), "the namespace controller finished deleting the namespace")
	})
})
