package controllers_test

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
)

// labelledNamespace creates a namespace with a unique label value so that a policy can select it alone.
func labelledNamespace() (string, map[string]string) {
	ns := newNamespace()
	lbl := map[string]string{"policy-test": ns}
	n := &corev1.Namespace{}
	Expect(k8s.Get(context.Background(), client.ObjectKey{Name: ns}, n)).To(Succeed())
	n.Labels = lbl
	Expect(k8s.Update(context.Background(), n)).To(Succeed())
	return ns, lbl
}

func createPolicy(name string, sel map[string]string, mutate func(*v1alpha1.ApiKeyPolicySpec)) *v1alpha1.ApiKeyPolicy {
	p := &v1alpha1.ApiKeyPolicy{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.ApiKeyPolicySpec{NamespaceSelector: &metav1.LabelSelector{MatchLabels: sel}}}
	mutate(&p.Spec)
	Expect(k8s.Create(context.Background(), p)).To(Succeed())
	DeferCleanup(func() { _ = k8s.Delete(context.Background(), p) })
	return p
}

func waitViolation(ns, name string) *metav1.Condition {
	var c *metav1.Condition
	Eventually(func(g Gomega) {
		c = condition(ns, name, v1alpha1.ConditionStalled)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(c.Reason).To(Equal(v1alpha1.ReasonPolicyViolation))
	}, eventually, poll).Should(Succeed())
	return c
}

var _ = Describe("ApiKeyPolicy", func() {
	ctx := context.Background()

	It("blocks a violating ApiKey with a message naming each rule, and re-evaluates when the policy changes", func() {
		ns, sel := labelledNamespace()
		p := createPolicy("block-"+ns, sel, func(s *v1alpha1.ApiKeyPolicySpec) {
			s.AllowedScopes = []v1alpha1.ScopePattern{"users:*"}
			s.RequireRotation = true
		})
		Expect(k8s.Create(ctx, apiKey(ns, "wide"))).To(Succeed())
		c := waitViolation(ns, "wide")
		Expect(c.Message).To(ContainSubstring("scope roles:manage is not allowed (allowed: users:*)"))
		Expect(c.Message).To(ContainSubstring("rotation is required"))
		Expect(get(ns, "wide").Status.Keys).To(BeEmpty(), "no key issued")
		Eventually(func() int { return countReason(ns, "wide", v1alpha1.EventPolicyViolation) }, eventually, poll).Should(Equal(1))

		By("relaxing the policy lets the key be issued, with no periodic sweep")
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(p), p)).To(Succeed())
		p.Spec.AllowedScopes = append(p.Spec.AllowedScopes, "roles:*")
		p.Spec.RequireRotation = false
		Expect(k8s.Update(ctx, p)).To(Succeed())
		ak, _ := waitReady(ns, "wide")
		Expect(ak.Status.Effective.Policies).To(Equal([]string{p.Name}))
		Expect(countReason(ns, "wide", v1alpha1.EventPolicyViolation)).To(Equal(1))
	})

	It("applies policy defaults and shows them in status", func() {
		ns, sel := labelledNamespace()
		createPolicy("defaults-"+ns, sel, func(s *v1alpha1.ApiKeyPolicySpec) {
			s.DefaultExpiresAfter = dur(720 * time.Hour)
			s.RevokeUnusedAfter = dur(240 * time.Hour)
			s.ExpiryWarning = dur(72 * time.Hour)
		})
		Expect(k8s.Create(ctx, apiKey(ns, "defaulted"))).To(Succeed())
		ak, _ := waitReady(ns, "defaulted")
		Expect(ak.Status.Effective.ExpiresAfter.Duration).To(Equal(720 * time.Hour))
		Expect(ak.Status.Effective.RevokeUnusedAfter.Duration).To(Equal(240 * time.Hour))
		Expect(ak.Status.Effective.ExpiryWarning.Duration).To(Equal(72 * time.Hour))
		Expect(ak.Status.Keys[0].NotAfter.Sub(ak.Status.Keys[0].IssuedAt.Time)).To(Equal(720 * time.Hour))
		Expect(ak.Spec.ExpiresAfter).To(BeNil(), "spec untouched")
	})

	It("revokes the keys of an ApiKey that breaks a Revoke policy, and issues a fresh key once it complies", func() {
		ns, _ := labelledNamespace()
		Expect(k8s.Create(ctx, apiKey(ns, "longlived", func(ak *v1alpha1.ApiKey) { ak.Spec.ExpiresAfter = dur(2000 * time.Hour) }))).To(Succeed())
		first, _ := waitReady(ns, "longlived")

		By("a namespace label change brings the namespace under a Revoke policy")
		createPolicy("revoke-"+ns, map[string]string{"tier": "regulated-" + ns}, func(s *v1alpha1.ApiKeyPolicySpec) {
			s.MaxExpiresAfter = dur(720 * time.Hour)
			s.Enforcement = v1alpha1.EnforcementRevoke
		})
		Consistently(func() string { return condition(ns, "longlived", v1alpha1.ConditionReady).Reason }, time.Second, poll).Should(Equal(v1alpha1.ReasonKeyActive))
		n := &corev1.Namespace{}
		Expect(k8s.Get(ctx, client.ObjectKey{Name: ns}, n)).To(Succeed())
		n.Labels["tier"] = "regulated-" + ns
		Expect(k8s.Update(ctx, n)).To(Succeed())
		c := waitViolation(ns, "longlived")
		Expect(c.Message).To(ContainSubstring("expiresAfter 2000h0m0s exceeds maxExpiresAfter 720h0m0s"))
		Eventually(func() v1alpha1.KeyState { return keyByID(get(ns, "longlived"), first.Status.CurrentKeyID).State }, eventually, poll).Should(Equal(v1alpha1.KeyRevoked))
		Expect(keyByID(get(ns, "longlived"), first.Status.CurrentKeyID).Reason).To(Equal(v1alpha1.RevokedPolicy))
		Eventually(func() string { k, _, _ := secretKey(ns, "longlived-key"); return k }, eventually, poll).Should(BeEmpty())

		By("fixing the spec issues a fresh key")
		ak := get(ns, "longlived")
		ak.Spec.ExpiresAfter = dur(700 * time.Hour)
		Expect(k8s.Update(ctx, ak)).To(Succeed())
		waitRotatedFrom(ns, "longlived", first.Status.CurrentKeyID)
		Expect(keyByID(get(ns, "longlived"), first.Status.CurrentKeyID).State).To(Equal(v1alpha1.KeyRevoked))
	})
})
