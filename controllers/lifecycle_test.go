package controllers_test

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/rotation"
	"github.com/keysmith-dev/keysmith/internal/testenv"
)

func condition(ns, name, typ string) *metav1.Condition {
	return meta.FindStatusCondition(get(ns, name).Status.Conditions, typ)
}

// conditionStatus is the condition's status, or "" while the ApiKey does not carry it.
func conditionStatus(ns, name, typ string) metav1.ConditionStatus {
	if c := condition(ns, name, typ); c != nil {
		return c.Status
	}
	return ""
}

var _ = Describe("Key lifecycle", func() {
	ctx := context.Background()

	It("revokes a key named in keysmith.dev/revoke at once and replaces the current key without overlap", func() {
		ns := newNamespace()
		Expect(k8s.Create(ctx, apiKey(ns, "leak", withRotation(720*time.Hour, 24*time.Hour)))).To(Succeed())
		first, _ := waitReady(ns, "leak")
		annotate(ns, "leak", v1alpha1.AnnotationRotate, "1")
		second, _ := waitRotatedFrom(ns, "leak", first.Status.CurrentKeyID)
		Expect(keyByID(second, first.Status.CurrentKeyID).State).To(Equal(v1alpha1.KeyRetiring))

		By("revoking the retiring key leaves the current one alone")
		annotate(ns, "leak", v1alpha1.AnnotationRevoke, first.Status.CurrentKeyID)
		Eventually(func() v1alpha1.KeyState { return keyByID(get(ns, "leak"), first.Status.CurrentKeyID).State }, eventually, poll).Should(Equal(v1alpha1.KeyRevoked))
		k := keyByID(get(ns, "leak"), first.Status.CurrentKeyID)
		Expect(k.Reason).To(Equal(v1alpha1.RevokedManual))
		Expect(get(ns, "leak").Status.CurrentKeyID).To(Equal(second.Status.CurrentKeyID))

		By("revoking the current key issues a fresh one with no overlap")
		annotate(ns, "leak", v1alpha1.AnnotationRevoke, second.Status.CurrentKeyID)
		third, _ := waitRotatedFrom(ns, "leak", second.Status.CurrentKeyID)
		Expect(keyByID(third, second.Status.CurrentKeyID).State).To(Equal(v1alpha1.KeyRevoked))
		Expect(third.Status.HandledRevokeRequest).To(Equal(rotation.RequestDigest(second.Status.CurrentKeyID)))
		Eventually(func() int { return countReason(ns, "leak", v1alpha1.EventKeyRevoked) }, eventually, poll).Should(Equal(2))

		By("each value is handled once")
		poke(ns, "leak")
		Consistently(func() string { return get(ns, "leak").Status.CurrentKeyID }, time.Second, poll).Should(Equal(third.Status.CurrentKeyID))

		By("all revokes everything and issues a fresh key")
		annotate(ns, "leak", v1alpha1.AnnotationRevoke, "all")
		fourth, _ := waitRotatedFrom(ns, "leak", third.Status.CurrentKeyID)
		for _, k := range fourth.Status.Keys[1:] {
			Expect(k.State).To(BeElementOf(v1alpha1.KeyRevoked, v1alpha1.KeyExpired), k.ID)
		}
	})

	It("leaves keys untouched and warns on a malformed keysmith.dev/revoke value", func() {
		ns := newNamespace()
		Expect(k8s.Create(ctx, apiKey(ns, "typo"))).To(Succeed())
		first, _ := waitReady(ns, "typo")
		annotate(ns, "typo", v1alpha1.AnnotationRevoke, "the leaked one")
		Eventually(func() string { return get(ns, "typo").Status.HandledRevokeRequest }, eventually, poll).Should(Equal(rotation.RequestDigest("the leaked one")))
		Expect(get(ns, "typo").Status.Keys[0].State).To(Equal(v1alpha1.KeyActive))
		Expect(get(ns, "typo").Status.CurrentKeyID).To(Equal(first.Status.CurrentKeyID))
		Eventually(func() int { return countReason(ns, "typo", v1alpha1.EventInvalidAnnotation) }, eventually, poll).Should(Equal(1))
		var note string
		for _, e := range events(ns, "typo") {
			if e.Reason == v1alpha1.EventInvalidAnnotation {
				note = e.Note
			}
		}
		Expect(note).To(ContainSubstring("no key was revoked"))
		Expect(note).NotTo(ContainSubstring("the leaked one"), "the annotation value is never repeated")
		poke(ns, "typo")
		Consistently(func() int { return countReason(ns, "typo", v1alpha1.EventInvalidAnnotation) }, time.Second, poll).Should(Equal(1))
	})

	It("revokes a key pasted into keysmith.dev/revoke instead of its id, and never repeats it", func() {
		ns := newNamespace()
		Expect(k8s.Create(ctx, apiKey(ns, "pasted"))).To(Succeed())
		first, key := waitReady(ns, "pasted")
		annotate(ns, "pasted", v1alpha1.AnnotationRevoke, key)
		second, _ := waitRotatedFrom(ns, "pasted", first.Status.CurrentKeyID)
		Expect(keyByID(second, first.Status.CurrentKeyID).State).To(Equal(v1alpha1.KeyRevoked))
		Expect(second.Status.HandledRevokeRequest).To(Equal(rotation.RequestDigest(key)))
		Eventually(func() int { return countReason(ns, "pasted", v1alpha1.EventKeyRevoked) }, eventually, poll).Should(Equal(1))

		By("the key appears in no status field, condition or event")
		b, err := json.Marshal(get(ns, "pasted").Status)
		Expect(err).NotTo(HaveOccurred())
		Expect(testenv.FindKeys(string(b))).To(BeZero(), "a key in status")
		for _, e := range events(ns, "pasted") {
			Expect(testenv.FindKeys(e.Note)).To(BeZero(), "a key in event %s", e.Reason)
		}
		// The person cleans up what they pasted (the suite scans every ApiKey for keys at the end).
		annotate(ns, "pasted", v1alpha1.AnnotationRevoke, "all")
	})

	It("spec.disabled revokes every key and empties the Secret; enabling issues a fresh key", func() {
		ns := newNamespace()
		Expect(k8s.Create(ctx, apiKey(ns, "kill", withRotation(720*time.Hour, 24*time.Hour)))).To(Succeed())
		first, _ := waitReady(ns, "kill")
		ak := get(ns, "kill")
		ak.Spec.Disabled = true
		Expect(k8s.Update(ctx, ak)).To(Succeed())
		Eventually(func(g Gomega) {
			c := condition(ns, "kill", v1alpha1.ConditionReady)
			g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(c.Reason).To(Equal(v1alpha1.ReasonDisabled))
			key, _, _ := secretKey(ns, "kill-key")
			g.Expect(key).To(BeEmpty(), "Secret emptied")
		}, eventually, poll).Should(Succeed())
		k := keyByID(get(ns, "kill"), first.Status.CurrentKeyID)
		Expect(k.State).To(Equal(v1alpha1.KeyRevoked))
		Expect(k.Reason).To(Equal(v1alpha1.RevokedDisabled))

		ak = get(ns, "kill")
		ak.Spec.Disabled = false
		Expect(k8s.Update(ctx, ak)).To(Succeed())
		again, _ := waitRotatedFrom(ns, "kill", first.Status.CurrentKeyID)
		Expect(keyByID(again, first.Status.CurrentKeyID).State).To(Equal(v1alpha1.KeyRevoked), "revoked keys never come back")
	})

	It("revokes a key unused for revokeUnusedAfter; a rotate request issues a fresh one", func() {
		ns := newNamespace()
		Expect(k8s.Create(ctx, apiKey(ns, "idle", func(ak *v1alpha1.ApiKey) { ak.Spec.RevokeUnusedAfter = dur(time.Hour) }))).To(Succeed())
		first, _ := waitReady(ns, "idle")
		clk.SetTime(first.Status.Keys[0].IssuedAt.Add(time.Hour))
		poke(ns, "idle")
		Eventually(func(g Gomega) {
			c := condition(ns, "idle", v1alpha1.ConditionReady)
			g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(c.Reason).To(Equal(v1alpha1.ReasonUnused))
		}, eventually, poll).Should(Succeed())
		k := keyByID(get(ns, "idle"), first.Status.CurrentKeyID)
		Expect(k.State).To(Equal(v1alpha1.KeyRevoked))
		Expect(k.Reason).To(Equal(v1alpha1.RevokedUnused))
		Eventually(func() bool {
			for _, e := range events(ns, "idle") {
				if e.Reason == v1alpha1.EventKeyRevoked && e.Type == "Warning" && strings.Contains(e.Note, "Unused") {
					return true
				}
			}
			return false
		}, eventually, poll).Should(BeTrue())

		annotate(ns, "idle", v1alpha1.AnnotationRotate, "fresh")
		waitRotatedFrom(ns, "idle", first.Status.CurrentKeyID)
	})

	It("raises ExpiringSoon once for a key that will not be rotated in time", func() {
		ns := newNamespace()
		Expect(k8s.Create(ctx, apiKey(ns, "ending", func(ak *v1alpha1.ApiKey) { ak.Spec.ExpiresAfter = dur(30 * 24 * time.Hour) }))).To(Succeed())
		first, _ := waitReady(ns, "ending")
		Expect(condition(ns, "ending", v1alpha1.ConditionExpiringSoon)).To(BeNil(), "ExpiringSoon is present only while True")
		clk.SetTime(first.Status.Keys[0].NotAfter.Add(-v1alpha1.DefaultExpiryWarning))
		poke(ns, "ending")
		Eventually(func() metav1.ConditionStatus { return conditionStatus(ns, "ending", v1alpha1.ConditionExpiringSoon) }, eventually, poll).Should(Equal(metav1.ConditionTrue))
		poke(ns, "ending")
		Eventually(func() int { return countReason(ns, "ending", v1alpha1.EventExpiringSoon) }, eventually, poll).Should(Equal(1))
		Consistently(func() int { return countReason(ns, "ending", v1alpha1.EventExpiringSoon) }, time.Second, poll).Should(Equal(1))

		By("at notAfter the key is Expired and the ApiKey not Ready")
		clk.SetTime(first.Status.Keys[0].NotAfter.Time)
		poke(ns, "ending")
		Eventually(func() string { return condition(ns, "ending", v1alpha1.ConditionReady).Reason }, eventually, poll).Should(Equal(v1alpha1.ReasonExpired))
		Expect(condition(ns, "ending", v1alpha1.ConditionStalled).Status).To(Equal(metav1.ConditionTrue))
		Expect(condition(ns, "ending", v1alpha1.ConditionExpiringSoon)).To(BeNil(), "an expired key is no longer expiring soon")
		Expect(get(ns, "ending").Status.Keys[0].State).To(Equal(v1alpha1.KeyExpired))
		Eventually(func() int { return countReason(ns, "ending", v1alpha1.EventKeyExpired) }, eventually, poll).Should(Equal(1))
	})
})
