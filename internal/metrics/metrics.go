// Package metrics exposes keysmith's ApiKey metrics to Prometheus. Per-ApiKey gauges are read from the
// manager's cache at scrape time (no per-key goroutines or timers); counters are incremented by the
// controller.
package metrics

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
)

var (
	// Rotations counts issued keys by trigger (Initial, Scheduled, Manual, SecretLost, ...).
	Rotations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keysmith_apikey_rotations_total", Help: "Keys issued, by trigger.",
	}, []string{"trigger"})
	// Revocations counts revoked keys by reason (Deleted, Manual, Disabled, Unused).
	Revocations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keysmith_apikey_revocations_total", Help: "Keys revoked, by reason.",
	}, []string{"reason"})
)

var (
	expirationDesc = prometheus.NewDesc("keysmith_apikey_expiration_timestamp_seconds",
		"When the current key of an ApiKey stops being accepted (notAfter), as a Unix time.", []string{"namespace", "name", "key_id"}, nil)
	nextRotationDesc = prometheus.NewDesc("keysmith_apikey_next_rotation_timestamp_seconds",
		"When the current key of an ApiKey is next rotated, as a Unix time.", []string{"namespace", "name"}, nil)
	lastUsedDesc = prometheus.NewDesc("keysmith_apikey_last_used_timestamp_seconds",
		"The newest use of any key of an ApiKey reported by the verifiers, as a Unix time.", []string{"namespace", "name"}, nil)
	readyDesc = prometheus.NewDesc("keysmith_apikey_ready",
		"1 when the ApiKey is Ready, else 0; the reason label carries the Ready condition's reason.", []string{"namespace", "name", "reason"}, nil)
	issuedDesc = prometheus.NewDesc("keysmith_apikey_issued_timestamp_seconds",
		"When the current key of an ApiKey was issued, as a Unix time.", []string{"namespace", "name", "key_id"}, nil)
)

// Collector reads ApiKeys from a cache at scrape time.
type Collector struct {
	Reader client.Reader
	Log    logr.Logger
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{expirationDesc, nextRotationDesc, lastUsedDesc, readyDesc, issuedDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list := &v1alpha1.ApiKeyList{}
	if err := c.Reader.List(ctx, list); err != nil {
		c.Log.Error(err, "listing ApiKeys for metrics")
		return
	}
	for i := range list.Items {
		ak := &list.Items[i]
		ns, name := ak.Namespace, ak.Name
		ready, reason := 0.0, ""
		if cond := meta.FindStatusCondition(ak.Status.Conditions, v1alpha1.ConditionReady); cond != nil {
			reason = cond.Reason
			if cond.Status == "True" {
				ready = 1
			}
		}
		ch <- prometheus.MustNewConstMetric(readyDesc, prometheus.GaugeValue, ready, ns, name, reason)
		for _, k := range ak.Status.Keys {
			if k.ID == ak.Status.CurrentKeyID && k.State == v1alpha1.KeyActive {
				ch <- prometheus.MustNewConstMetric(expirationDesc, prometheus.GaugeValue, unix(k.NotAfter.Time), ns, name, k.ID)
				ch <- prometheus.MustNewConstMetric(issuedDesc, prometheus.GaugeValue, unix(k.IssuedAt.Time), ns, name, k.ID)
			}
		}
		if ak.Status.NextRotationAt != nil {
			ch <- prometheus.MustNewConstMetric(nextRotationDesc, prometheus.GaugeValue, unix(ak.Status.NextRotationAt.Time), ns, name)
		}
		if ak.Status.LastUsedAt != nil {
			ch <- prometheus.MustNewConstMetric(lastUsedDesc, prometheus.GaugeValue, unix(ak.Status.LastUsedAt.Time), ns, name)
		}
	}
}

func unix(t time.Time) float64 { return float64(t.Unix()) }

// Register registers the counters and a collector reading from r with reg.
func Register(reg prometheus.Registerer, r client.Reader, log logr.Logger) error {
	for _, c := range []prometheus.Collector{Rotations, Revocations, &Collector{Reader: r, Log: log}} {
		if err := reg.Register(c); err != nil {
			if _, dup := err.(prometheus.AlreadyRegisteredError); !dup {
				return err
			}
		}
	}
	return nil
}
