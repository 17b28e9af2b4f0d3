package controllers_test

import (
	"context"
	"regexp"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/keys"
	"github.com/keysmith-dev/keysmith/internal/rotation"
)

const (
	eventually = 20 * time.Second
	poll       = 50 * time.Millisecond
)

var keyPattern = regexp.MustCompile(keys.Pattern)

// waitReady waits until the ApiKey is Ready with a current key whose Secret holds it, and returns both.
func waitReady(ns, name string) (*v1alpha1.ApiKey, string) {
	var ak *v1alpha1.ApiKey
	var key string
	Eventually(func(g Gomega) {
		ak = get(ns, name)
		g.Expect(meta.IsStatusConditionTrue(ak.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue(), "Ready")
		g.Expect(ak.Status.CurrentKeyID).NotTo(BeEmpty())
		k, _, found := secretKey(ns, ak.Spec.SecretName)
		g.Expect(found).To(BeTrue(), "Secret exists")
		g.Expect(k != "" && keys.ID(k) == ak.Status.CurrentKeyID).To(BeTrue(), "Secret holds the current key")
		key = k
	}, eventually, poll).Should(Succeed())
	return ak, key
}

// waitRotatedFrom waits until the current key differs from old and the Secret holds the new one.
func waitRotatedFrom(ns, name, old string) (*v1alpha1.ApiKey, string) {
	Eventually(func() string { return get(ns, name).Status.CurrentKeyID }, eventually, poll).ShouldNot(Equal(old))
	return waitReady(ns, name)
}

func keyByID(ak *v1alpha1.ApiKey, id string) v1alpha1.IssuedKey {
	for _, k := range ak.Status.Keys {
		if k.ID == id {
			return k
		}
	}
	Fail("key " + id + " not listed in status")
	return v1alpha1.IssuedKey{}
}

var _ = Describe("ApiKey", func() {
	ctx := context.Background()

	It("issues a first key into a correct Secret in 3 writes", func() {
		ns := newNamespace()
		ak := apiKey(ns, "billing", func(ak *v1alpha1.ApiKey) {
			ak.Labels = map[string]string{"argocd.argoproj.io/instance": "billing"}
			ak.Annotations = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{}"}
			ak.Spec.SecretTemplate = &v1alpha1.SecretTemplate{
				Labels:      map[string]string{"team": "payments"},
				Annotations: map[string]string{"reloader.stakater.com/match": "true"},
			}
		})
		Expect(k8s.Create(ctx, ak)).To(Succeed())
		got, key := waitReady(ns, "billing")

		By("the key has the documented format and checksum")
		Expect(keyPattern.MatchString(key)).To(BeTrue(), "key matches %s", keys.Pattern)
		parsed, err := keys.Parse(key)
		Expect(err).NotTo(HaveOccurred())
		Expect(parsed.Prefix).To(Equal("ks"))
		Expect(parsed.Environment).To(Equal("live"))

		By("status holds the hash and id, never the key")
		Expect(got.Status.Keys).To(HaveLen(1))
		k := got.Status.Keys[0]
		Expect(k.Hash).To(Equal(keys.Hash(key)))
		Expect(k.ID).To(Equal(keys.ID(key)))
		Expect(k.State).To(Equal(v1alpha1.KeyActive))
		Expect(k.IssuedAt.Time).To(BeTemporally("==", clk.Now()))
		Expect(k.NotAfter.Time).To(BeTemporally("==", clk.Now().Add(v1alpha1.DefaultExpiresAfter)))
		Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
		By("Ready is the only condition: Reconciling, Stalled and ExpiringSoon are present only while True")
		Expect(got.Status.Conditions).To(HaveLen(1))
		Expect(got.Status.Conditions[0].Type).To(Equal(v1alpha1.ConditionReady))
		Expect(got.Status.Conditions[0].Status).To(Equal(metav1.ConditionTrue))
		Expect(got.Status.NextRotationAt).To(BeNil())
		Expect(got.Status.Effective.ExpiresAfter.Duration).To(Equal(v1alpha1.DefaultExpiresAfter))
		Expect(got.Status.Effective.Environment).To(Equal(v1alpha1.EnvironmentLive))
		Expect(got.Finalizers).To(ContainElement(v1alpha1.Finalizer))
		Expect(containsAnyKey(statusJSON(got))).To(BeFalse())

		By("keysmith never writes spec or sets defaults on it")
		Expect(got.Spec.Environment).To(BeEmpty())
		Expect(got.Spec.ExpiresAfter).To(BeNil())
		Expect(got.Generation).To(Equal(int64(1)))

		By("the Secret is typed, labelled, owned, and carries none of the ApiKey's own metadata")
		_, s, _ := secretKey(ns, "billing-key")
		Expect(string(s.Type)).To(Equal(v1alpha1.SecretType))
		Expect(s.Labels).To(Equal(map[string]string{
			v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue, v1alpha1.LabelApiKey: "billing", "team": "payments"}))
		Expect(s.Annotations).To(Equal(map[string]string{"reloader.stakater.com/match": "true"}))
		Expect(metav1.IsControlledBy(s, got)).To(BeTrue())
		Expect(*metav1.GetControllerOf(s).BlockOwnerDeletion).To(BeTrue())
		Expect(string(s.Data[v1alpha1.SecretKeyKeyID])).To(Equal(k.ID))
		Expect(string(s.Data[v1alpha1.SecretKeyExpiresAt])).To(Equal(k.NotAfter.UTC().Format(time.RFC3339)))
		Expect(len(s.Data)).To(Equal(3))

		By("one KeyIssued event")
		Eventually(func() []string { return eventReasons(ns, "billing") }, eventually, poll).Should(Equal([]string{v1alpha1.EventKeyIssued}))

		By("write budget: finalizer, Secret, then status with the key and Ready")
		w := writes.In(ns)
		GinkgoWriter.Printf("writes to issue the first key: %d %v\n", len(w), w)
		Expect(w).To(HaveLen(3), "%v", w)
		Expect(w[0].Resource).To(Equal("apikeys"))
		Expect(w[1].Resource).To(Equal("secrets"))
		Expect(w[2].Resource).To(Equal("apikeys/status"))

		By("zero writes, not even refused ones, while nothing is due")
		before := len(writes.Attempts(ns))
		Consistently(func() int { return len(writes.Attempts(ns)) }, 3*time.Second, 100*time.Millisecond).Should(Equal(before))
	})

	It("uses the test environment in the prefix", func() {
		ns := newNamespace()
		Expect(k8s.Create(ctx, apiKey(ns, "ci", func(ak *v1alpha1.ApiKey) { ak.Spec.Environment = v1alpha1.EnvironmentTest }))).To(Succeed())
		_, key := waitReady(ns, "ci")
		p, err := keys.Parse(key)
		Expect(err).NotTo(HaveOccurred())
		Expect(p.Environment).To(Equal("test"))
	})

	It("rotates on the period, keeps the previous key for the overlap, then retires it", func() {
		ns := newNamespace()
		Expect(k8s.Create(ctx, apiKey(ns, "rot", withRotation(time.Hour, 10*time.Minute)))).To(Succeed())
		first, _ := waitReady(ns, "rot")
		issued := first.Status.Keys[0].IssuedAt.Time
		Expect(first.Status.NextRotationAt.Time).To(BeTemporally("==", issued.Add(time.Hour)))
		Expect(first.Status.Effective.Overlap.Duration).To(Equal(10 * time.Minute))

		By("one second before the period nothing happens")
		clk.SetTime(issued.Add(time.Hour - time.Second))
		poke(ns, "rot")
		Consistently(func() string { return get(ns, "rot").Status.CurrentKeyID }, time.Second, poll).Should(Equal(first.Status.CurrentKeyID))

		By("at the period the key rotates, in at most 2 writes")
		// The fake clock moves under a running manager: a wake-up timer from the step above can race the
		// poke below and lose an optimistic-lock conflict (409). That changes nothing and is not a write.
		before := len(writes.In(ns))
		rotatedAt := issued.Add(time.Hour)
		clk.SetTime(rotatedAt)
		poke(ns, "rot")
		second, _ := waitRotatedFrom(ns, "rot", first.Status.CurrentKeyID)
		Consistently(func() int { return len(writes.In(ns)) }, time.Second, poll).Should(Equal(len(writes.In(ns))))
		w := writes.In(ns)[before:]
		GinkgoWriter.Printf("writes to rotate: %d %v\n", len(w), w)
		Expect(len(w)).To(BeNumerically("<=", 2), "%v", w)

		old := keyByID(second, first.Status.CurrentKeyID)
		Expect(old.State).To(Equal(v1alpha1.KeyRetiring))
		Expect(old.NotAfter.Time).To(BeTemporally("==", rotatedAt.Add(10*time.Minute)))
		Expect(second.Status.Keys[0].ID).To(Equal(second.Status.CurrentKeyID), "newest first")
		Expect(second.Status.NextRotationAt.Time).To(BeTemporally("==", rotatedAt.Add(time.Hour)))
		Eventually(func() int { return countReason(ns, "rot", v1alpha1.EventKeyRotated) }, eventually, poll).Should(Equal(1))

		By("when the overlap ends the previous key is retired")
		clk.SetTime(rotatedAt.Add(10 * time.Minute))
		poke(ns, "rot")
		Eventually(func() v1alpha1.KeyState {
			return keyByID(get(ns, "rot"), first.Status.CurrentKeyID).State
		}, eventually, poll).Should(Equal(v1alpha1.KeyExpired))
		Eventually(func() int { return countReason(ns, "rot", v1alpha1.EventKeyRetired) }, eventually, poll).Should(Equal(1))
		Expect(get(ns, "rot").Status.CurrentKeyID).To(Equal(second.Status.CurrentKeyID))
	})

	It("rotates with overlap 0 by expiring the previous key at once", func() {
		ns := newNamespace()
		Expect(k8s.Create(ctx, apiKey(ns, "zero", withRotation(time.Hour, 0)))).To(Succeed())
		first, _ := waitReady(ns, "zero")
		clk.SetTime(first.Status.Keys[0].IssuedAt.Add(time.Hour))
		poke(ns, "zero")
		second, _ := waitRotatedFrom(ns, "zero", first.Status.CurrentKeyID)
		Expect(keyByID(second, first.Status.CurrentKeyID).State).To(Equal(v1alpha1.KeyExpired))
	})

	It("rotates once per value of the keysmith.dev/rotate annotation", func() {
		ns := newNamespace()
		Expect(k8s.Create(ctx, apiKey(ns, "manual", withRotation(720*time.Hour, time.Hour)))).To(Succeed())
		first, _ := waitReady(ns, "manual")

		annotate(ns, "manual", v1alpha1.AnnotationRotate, "1")
		second, _ := waitRotatedFrom(ns, "manual", first.Status.CurrentKeyID)
		Expect(second.Status.HandledRotateRequest).To(Equal(rotation.RequestDigest("1")))
		Expect(keyByID(second, first.Status.CurrentKeyID).State).To(Equal(v1alpha1.KeyRetiring))
		Expect(keyByID(second, first.Status.CurrentKeyID).NotAfter.Time).To(BeTemporally("==", clk.Now().Add(time.Hour)))

		By("further reconciles do not rotate again")
		poke(ns, "manual")
		poke(ns, "manual")
		Consistently(func() string { return get(ns, "manual").Status.CurrentKeyID }, 2*time.Second, poll).Should(Equal(second.Status.CurrentKeyID))
		Expect(get(ns, "manual").Status.Keys).To(HaveLen(2))

		By("a new value rotates once more")
		annotate(ns, "manual", v1alpha1.AnnotationRotate, "2")
		third, _ := waitRotatedFrom(ns, "manual", second.Status.CurrentKeyID)
		Consistently(func() int { return len(get(ns, "manual").Status.Keys) }, time.Second, poll).Should(Equal(3))
		Expect(third.Status.HandledRotateRequest).To(Equal(rotation.RequestDigest("2")))
		Eventually(func() int { return countReason(ns, "manual", v1alpha1.EventKeyRotated) }, eventually, poll).Should(Equal(2))
	})

	It("revokes every key and deletes the Secret when the ApiKey is deleted", func() {
		ns := newNamespace()
		Expect(k8s.Create(ctx, apiKey(ns, "gone", withRotation(time.Hour, 30*time.Minute), func(ak *v1alpha1.ApiKey) {
			ak.Finalizers = []string{"test.keysmith.dev/hold"} // keeps the object visible after keysmith is done
		}))).To(Succeed())
		first, _ := waitReady(ns, "gone")
		annotate(ns, "gone", v1alpha1.AnnotationRotate, "now")
		waitRotatedFrom(ns, "gone", first.Status.CurrentKeyID)

		Expect(k8s.Delete(ctx, get(ns, "gone"))).To(Succeed())
		Eventually(func() []string { return get(ns, "gone").Finalizers }, eventually, poll).Should(Equal([]string{"test.keysmith.dev/hold"}))
		ak := get(ns, "gone")
		Expect(ak.Status.Keys).To(HaveLen(2))
		for _, k := range ak.Status.Keys {
			Expect(k.State).To(Equal(v1alpha1.KeyRevoked), k.ID)
			Expect(k.Reason).To(Equal(v1alpha1.RevokedDeleted))
			Expect(k.RevokedAt).NotTo(BeNil())
		}
		Expect(meta.IsStatusConditionTrue(ak.Status.Conditions, v1alpha1.ConditionReady)).To(BeFalse())
		_, _, found := secretKey(ns, "gone-key")
		Expect(found).To(BeFalse(), "Secret deleted")
		Eventually(func() int { return countReason(ns, "gone", v1alpha1.EventKeyRevoked) }, eventually, poll).Should(Equal(1))

		patch := client.MergeFrom(ak.DeepCopy())
		ak.Finalizers = nil
		Expect(k8s.Patch(ctx, ak, patch)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(ak), &v1alpha1.ApiKey{}))
		}, eventually, poll).Should(BeTrue())
	})

	It("issues a fresh key when the Secret is deleted, keeping the previous key for the overlap", func() {
		ns := newNamespace()
		Expect(k8s.Create(ctx, apiKey(ns, "lost", withRotation(time.Hour, 15*time.Minute)))).To(Succeed())
		first, _ := waitReady(ns, "lost")
		_, s, _ := secretKey(ns, "lost-key")
		Expect(k8s.Delete(ctx, s)).To(Succeed())
		second, _ := waitRotatedFrom(ns, "lost", first.Status.CurrentKeyID)
		old := keyByID(second, first.Status.CurrentKeyID)
		Expect(old.State).To(Equal(v1alpha1.KeyRetiring))
		Expect(old.NotAfter.Time).To(BeTemporally("==", clk.Now().Add(15*time.Minute)))
		Eventually(func() int { return countReason(ns, "lost", v1alpha1.EventSecretRestored) }, eventually, poll).Should(Equal(1))
		Expect(events(ns, "lost")[len(events(ns, "lost"))-1].Type).To(Equal(corev1.EventTypeWarning))
	})

	It("issues a fresh key when the Secret is edited", func() {
		ns := newNamespace()
		Expect(k8s.Create(ctx, apiKey(ns, "edited", withRotation(time.Hour, 15*time.Minute)))).To(Succeed())
		first, _ := waitReady(ns, "edited")
		_, s, _ := secretKey(ns, "edited-key")
		s.Data[v1alpha1.SecretKeyAPIKey] = []byte("not-the-key")
		Expect(k8s.Update(ctx, s)).To(Succeed())
		second, _ := waitRotatedFrom(ns, "edited", first.Status.CurrentKeyID)
		Expect(keyByID(second, first.Status.CurrentKeyID).State).To(Equal(v1alpha1.KeyRetiring))
		Eventually(func() int { return countReason(ns, "edited", v1alpha1.EventSecretRestored) }, eventually, poll).Should(Equal(1))

		By("a Secret whose keysmith labels were removed is still recognised as keysmith's")
		_, s, _ = secretKey(ns, "edited-key")
		delete(s.Labels, v1alpha1.LabelManagedBy)
		s.Data[v1alpha1.SecretKeyAPIKey] = []byte("tampered-again")
		Expect(k8s.Update(ctx, s)).To(Succeed())
		third, _ := waitRotatedFrom(ns, "edited", second.Status.CurrentKeyID)
		_, s, _ = secretKey(ns, "edited-key")
		Expect(s.Labels).To(HaveKeyWithValue(v1alpha1.LabelManagedBy, v1alpha1.ManagedByValue))
		Expect(meta.IsStatusConditionTrue(third.Status.Conditions, v1alpha1.ConditionStalled)).To(BeFalse())
	})

	It("never touches a Secret it did not create", func() {
		ns := newNamespace()
		foreign := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "taken-key", Labels: map[string]string{"owner": "someone"}},
			StringData: map[string]string{"password": "hunter2"},
		}
		Expect(k8s.Create(ctx, foreign)).To(Succeed())
		Expect(k8s.Create(ctx, apiKey(ns, "taken"))).To(Succeed())
		Eventually(func(g Gomega) {
			c := meta.FindStatusCondition(get(ns, "taken").Status.Conditions, v1alpha1.ConditionStalled)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
			g.Expect(c.Reason).To(Equal(v1alpha1.ReasonSecretConflict))
			g.Expect(c.Message).To(ContainSubstring("taken-key"))
		}, eventually, poll).Should(Succeed())
		Expect(meta.IsStatusConditionTrue(get(ns, "taken").Status.Conditions, v1alpha1.ConditionReady)).To(BeFalse())
		Expect(get(ns, "taken").Status.Keys).To(BeEmpty(), "a first key is recorded only once its Secret holds it")

		By("repeated reconciles neither touch the Secret nor repeat the event")
		poke(ns, "taken")
		poke(ns, "taken")
		Consistently(func() int { return countReason(ns, "taken", v1alpha1.EventSecretConflict) }, 2*time.Second, poll).Should(Equal(1))
		after := &corev1.Secret{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(foreign), after)).To(Succeed())
		Expect(after.ResourceVersion).To(Equal(foreign.ResourceVersion))
		Expect(after.OwnerReferences).To(BeEmpty())
		// One create was attempted (the first key skips the API read) and refused; nothing was written.
		Expect(writes.In(ns)).NotTo(ContainElement(HaveField("Resource", "secrets")))
		Expect(writes.Attempts(ns)).To(ContainElement(HaveField("Code", 409)))

		By("once the foreign Secret is gone, the key is issued")
		Expect(k8s.Delete(ctx, after)).To(Succeed())
		poke(ns, "taken")
		waitReady(ns, "taken")
	})

	It("puts back the Secret's metadata when it drifts, without a new key", func() {
		ns := newNamespace()
		Expect(k8s.Create(ctx, apiKey(ns, "meta", func(ak *v1alpha1.ApiKey) {
			ak.Spec.SecretTemplate = &v1alpha1.SecretTemplate{Labels: map[string]string{"team": "a"}}
		}))).To(Succeed())
		first, _ := waitReady(ns, "meta")

		By("a removed keysmith label is restored (the Secret had left the label-selected cache)")
		_, s, _ := secretKey(ns, "meta-key")
		delete(s.Labels, v1alpha1.LabelManagedBy)
		s.Data[v1alpha1.SecretKeyExpiresAt] = []byte("never")
		Expect(k8s.Update(ctx, s)).To(Succeed())
		poke(ns, "meta")
		Eventually(func(g Gomega) {
			_, s, _ := secretKey(ns, "meta-key")
			g.Expect(s.Labels).To(HaveKeyWithValue(v1alpha1.LabelManagedBy, v1alpha1.ManagedByValue))
			g.Expect(string(s.Data[v1alpha1.SecretKeyExpiresAt])).NotTo(Equal("never"))
		}, eventually, poll).Should(Succeed())

		By("a secretTemplate change reaches the Secret")
		ak := get(ns, "meta")
		ak.Spec.SecretTemplate.Labels["team"] = "b"
		Expect(k8s.Update(ctx, ak)).To(Succeed())
		Eventually(func() map[string]string { _, s, _ := secretKey(ns, "meta-key"); return s.Labels }, eventually, poll).Should(HaveKeyWithValue("team", "b"))
		Expect(get(ns, "meta").Status.CurrentKeyID).To(Equal(first.Status.CurrentKeyID), "no new key")
		Expect(get(ns, "meta").Status.Keys).To(HaveLen(1))
	})

	It("stalls without churning keys when the API server refuses the Secret", func() {
		ns := newNamespace()
		// A ValidatingAdmissionPolicy in the API server refuses every Secret in this namespace: a refusal
		// that retrying cannot fix.
		freezeSecrets(ns)
		Expect(k8s.Create(ctx, apiKey(ns, "refused"))).To(Succeed())
		Eventually(func(g Gomega) {
			c := meta.FindStatusCondition(get(ns, "refused").Status.Conditions, v1alpha1.ConditionStalled)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
			g.Expect(c.Reason).To(Equal(v1alpha1.ReasonSecretWriteFailed))
			g.Expect(c.Message).To(ContainSubstring("Invalid"))
		}, eventually, poll).Should(Succeed())
		Expect(meta.IsStatusConditionTrue(get(ns, "refused").Status.Conditions, v1alpha1.ConditionReady)).To(BeFalse())
		Consistently(func() int { return len(get(ns, "refused").Status.Keys) }, 2*time.Second, poll).Should(Equal(0), "a first key is recorded only once its Secret holds it: no key churn")
		Expect(countReason(ns, "refused", v1alpha1.EventSecretWriteFailed)).To(Equal(1))

		By("once the cause is gone, a spec change retries at once")
		unfreezeSecrets(ns)
		ak := get(ns, "refused")
		ak.Spec.Scopes = append(ak.Spec.Scopes, "audit:read")
		Expect(k8s.Update(ctx, ak)).To(Succeed())
		waitReady(ns, "refused")
	})

	It("stalls with a clear message on settings that cannot work", func() {
		ns := newNamespace()
		// expiresAfter is not set, so admission cannot compare: period 2160h + default overlap 24h > default lifetime 2160h.
		Expect(k8s.Create(ctx, apiKey(ns, "long", func(ak *v1alpha1.ApiKey) {
			ak.Spec.Rotation = &v1alpha1.RotationSpec{Period: metav1.Duration{Duration: 2160 * time.Hour}}
		}))).To(Succeed())
		Eventually(func(g Gomega) {
			c := meta.FindStatusCondition(get(ns, "long").Status.Conditions, v1alpha1.ConditionStalled)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Reason).To(Equal(v1alpha1.ReasonInvalidSpec))
			g.Expect(c.Message).To(ContainSubstring("exceeds the key lifetime"))
		}, eventually, poll).Should(Succeed())
		Expect(get(ns, "long").Status.Keys).To(BeEmpty())
		Eventually(func() int { return countReason(ns, "long", v1alpha1.EventInvalidSpec) }, eventually, poll).Should(Equal(1))

		By("fixing the spec issues the key")
		ak := get(ns, "long")
		ak.Spec.ExpiresAfter = &metav1.Duration{Duration: 2200 * time.Hour}
		Expect(k8s.Update(ctx, ak)).To(Succeed())
		got, _ := waitReady(ns, "long")
		Expect(got.Status.ObservedGeneration).To(Equal(int64(2)))
		Expect(meta.IsStatusConditionTrue(got.Status.Conditions, v1alpha1.ConditionStalled)).To(BeFalse())
	})
})

// freezeSecrets installs a ValidatingAdmissionPolicy that refuses every Secret write in ns, and waits
// until the API server enforces it.
func freezeSecrets(ns string) {
	ctx := context.Background()
	fail := admissionv1.Fail
	Expect(k8s.Create(ctx, &admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "freeze-" + ns},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: &fail,
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionv1.RuleWithOperations{
					Operations: []admissionv1.OperationType{admissionv1.Create, admissionv1.Update},
					Rule:       admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"secrets"}},
				},
			}}},
			Validations: []admissionv1.Validation{{Expression: "false", Message: "Secrets are frozen in this namespace"}},
		},
	})).To(Succeed())
	Expect(k8s.Create(ctx, &admissionv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "freeze-" + ns},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        "freeze-" + ns,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
			MatchResources: &admissionv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}},
		},
	})).To(Succeed())
	Eventually(func() error {
		probe := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "probe-"}}
		err := k8s.Create(ctx, probe)
		if err == nil {
			_ = k8s.Delete(ctx, probe)
		}
		return err
	}, eventually, 100*time.Millisecond).Should(HaveOccurred())
}

func unfreezeSecrets(ns string) {
	ctx := context.Background()
	Expect(k8s.Delete(ctx, &admissionv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: "freeze-" + ns}})).To(Succeed())
	Eventually(func() error {
		probe := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "probe-"}}
		err := k8s.Create(ctx, probe)
		if err == nil {
			_ = k8s.Delete(ctx, probe)
		}
		return err
	}, eventually, 100*time.Millisecond).Should(Succeed())
}
