package controllers_test

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
)

// gauge returns the value of the series of name whose labels include want, and whether it exists.
func gauge(name string, want map[string]string) (float64, bool) {
	mfs, err := ctrlmetrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelsInclude(m, want) {
				if m.GetGauge() != nil {
					return m.GetGauge().GetValue(), true
				}
				return m.GetCounter().GetValue(), true
			}
		}
	}
	return 0, false
}

func labelsInclude(m *dto.Metric, want map[string]string) bool {
	have := map[string]string{}
	for _, l := range m.GetLabel() {
		have[l.GetName()] = l.GetValue()
	}
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

var _ = Describe("Metrics", func() {
	It("exposes expiry, next rotation, readiness and counters, read from the cache at scrape time", func() {
		ns := newNamespace()
		Expect(k8s.Create(context.Background(), apiKey(ns, "watched", withRotation(time.Hour, time.Minute)))).To(Succeed())
		ak, _ := waitReady(ns, "watched")
		k := ak.Status.Keys[0]
		Eventually(func() float64 {
			v, _ := gauge("keysmith_apikey_expiration_timestamp_seconds", map[string]string{"namespace": ns, "name": "watched", "key_id": k.ID})
			return v
		}, eventually, poll).Should(Equal(float64(k.NotAfter.Unix())))
		v, ok := gauge("keysmith_apikey_next_rotation_timestamp_seconds", map[string]string{"namespace": ns, "name": "watched"})
		Expect(ok).To(BeTrue())
		Expect(v).To(Equal(float64(ak.Status.NextRotationAt.Unix())))
		v, ok = gauge("keysmith_apikey_ready", map[string]string{"namespace": ns, "name": "watched", "reason": v1alpha1.ReasonKeyActive})
		Expect(ok).To(BeTrue())
		Expect(v).To(Equal(1.0))
		v, _ = gauge("keysmith_apikey_rotations_total", map[string]string{"trigger": "Initial"})
		Expect(v).To(BeNumerically(">=", 1))

		By("revocations are counted by reason")
		before, _ := gauge("keysmith_apikey_revocations_total", map[string]string{"reason": v1alpha1.RevokedManual})
		annotate(ns, "watched", v1alpha1.AnnotationRevoke, k.ID)
		Eventually(func() float64 {
			v, _ := gauge("keysmith_apikey_revocations_total", map[string]string{"reason": v1alpha1.RevokedManual})
			return v
		}, eventually, poll).Should(Equal(before + 1))
	})
})
