package controllers_test

import (
	"context"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
)

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

var _ = Describe("ApiKey admission (OpenAPI schema and CEL rules on the real API server)", func() {
	ctx := context.Background()
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	DescribeTable("refuses bad specs with a clear message",
		func(mutate func(*v1alpha1.ApiKey), wantMsg string) {
			ak := apiKey(ns, "bad", mutate)
			err := k8s.Create(ctx, ak)
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring(wantMsg))
		},
		Entry("no scopes", func(ak *v1alpha1.ApiKey) { ak.Spec.Scopes = nil }, "spec.scopes"),
		Entry("scope not resource:action", func(ak *v1alpha1.ApiKey) { ak.Spec.Scopes = []string{"admin"} }, "spec.scopes[0]"),
		Entry("uppercase scope", func(ak *v1alpha1.ApiKey) { ak.Spec.Scopes = []string{"Users:Read"} }, "spec.scopes[0]"),
		Entry("duplicate scopes", func(ak *v1alpha1.ApiKey) { ak.Spec.Scopes = []string{"users:read", "users:read"} }, "Duplicate value"),
		Entry("too many scopes", func(ak *v1alpha1.ApiKey) {
			ak.Spec.Scopes = nil
			for i := 0; i < 65; i++ {
				ak.Spec.Scopes = append(ak.Spec.Scopes, "r"+strings.Repeat("x", i)+":read")
			}
		}, "must have at most 64 items"),
		Entry("unknown environment", func(ak *v1alpha1.ApiKey) { ak.Spec.Environment = "prod" }, `supported values: "live", "test"`),
		Entry("secretName not a DNS name", func(ak *v1alpha1.ApiKey) { ak.Spec.SecretName = "Bad_Name" }, "spec.secretName"),
		Entry("overlap not shorter than period", func(ak *v1alpha1.ApiKey) {
			ak.Spec.Rotation = &v1alpha1.RotationSpec{Period: metav1.Duration{Duration: time.Hour}, Overlap: dur(time.Hour)}
		}, "rotation.overlap must be shorter than rotation.period"),
		Entry("period under a minute", func(ak *v1alpha1.ApiKey) {
			ak.Spec.Rotation = &v1alpha1.RotationSpec{Period: metav1.Duration{Duration: 30 * time.Second}}
		}, "rotation.period must be at least 1m"),
		Entry("expiresAfter under a minute", func(ak *v1alpha1.ApiKey) { ak.Spec.ExpiresAfter = dur(time.Second) }, "expiresAfter must be at least 1m"),
		Entry("period + overlap beyond expiresAfter", func(ak *v1alpha1.ApiKey) {
			ak.Spec.Rotation = &v1alpha1.RotationSpec{Period: metav1.Duration{Duration: 720 * time.Hour}, Overlap: dur(48 * time.Hour)}
			ak.Spec.ExpiresAfter = dur(750 * time.Hour)
		}, "must not exceed expiresAfter"),
		Entry("period + default overlap beyond expiresAfter", func(ak *v1alpha1.ApiKey) {
			ak.Spec.Rotation = &v1alpha1.RotationSpec{Period: metav1.Duration{Duration: 720 * time.Hour}}
			ak.Spec.ExpiresAfter = dur(720 * time.Hour)
		}, "default: the smaller of 24h and half the period"),
		Entry("reserved label in secretTemplate", func(ak *v1alpha1.ApiKey) {
			ak.Spec.SecretTemplate = &v1alpha1.SecretTemplate{Labels: map[string]string{"app.kubernetes.io/managed-by": "me"}}
		}, "secretTemplate.labels must not set"),
		Entry("keysmith label in secretTemplate", func(ak *v1alpha1.ApiKey) {
			ak.Spec.SecretTemplate = &v1alpha1.SecretTemplate{Labels: map[string]string{"keysmith.dev/apikey": "other"}}
		}, "secretTemplate.labels must not set"),
		Entry("name longer than a label value", func(ak *v1alpha1.ApiKey) { ak.Name = strings.Repeat("a", 64) }, "at most 63 characters"),
	)

	It("refuses a duration that is not a duration", func() {
		u := map[string]any{
			"apiVersion": "keysmith.dev/v1alpha1", "kind": "ApiKey",
			"metadata": map[string]any{"name": "bad", "namespace": ns},
			"spec":     map[string]any{"scopes": []any{"users:read"}, "secretName": "s", "expiresAfter": "90 days"},
		}
		err := createUnstructured(ctx, u)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("spec.expiresAfter"))
	})

	It("keeps secretName and environment immutable", func() {
		Expect(k8s.Create(ctx, apiKey(ns, "fixed"))).To(Succeed())
		ak, _ := waitReady(ns, "fixed") // keysmith's own writes are done, so updates below do not conflict
		ak.Spec.SecretName = "elsewhere"
		err := k8s.Update(ctx, ak)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("secretName is immutable"))

		ak = get(ns, "fixed")
		ak.Spec.Environment = v1alpha1.EnvironmentTest
		err = k8s.Update(ctx, ak)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("environment is immutable"))

		By("spelling out the default is not a change")
		ak = get(ns, "fixed")
		ak.Spec.Environment = v1alpha1.EnvironmentLive
		Expect(k8s.Update(ctx, ak)).To(Succeed())
	})

	It("accepts valid edge cases", func() {
		for i, m := range []func(*v1alpha1.ApiKey){
			func(ak *v1alpha1.ApiKey) { ak.Spec.Scopes = []string{"a:b"} },
			func(ak *v1alpha1.ApiKey) { ak.Spec.Scopes = []string{"billing.invoices:read-all", "org_units:list"} },
			func(ak *v1alpha1.ApiKey) {
				ak.Spec.Rotation = &v1alpha1.RotationSpec{Period: metav1.Duration{Duration: time.Minute}, Overlap: dur(0)}
				ak.Spec.ExpiresAfter = dur(time.Minute)
			},
			func(ak *v1alpha1.ApiKey) {
				ak.Spec.Rotation = &v1alpha1.RotationSpec{Period: metav1.Duration{Duration: 720 * time.Hour}, Overlap: dur(48 * time.Hour)}
				ak.Spec.ExpiresAfter = dur(768 * time.Hour)
			},
			func(ak *v1alpha1.ApiKey) { ak.Name = strings.Repeat("a", 63) },
		} {
			ak := apiKey(ns, "ok", m)
			if ak.Name == "ok" {
				ak.Name = "ok-" + string(rune('a'+i))
			}
			Expect(k8s.Create(ctx, ak)).To(Succeed(), "case %d", i)
		}
	})
})
