package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func durationOr(d *metav1.Duration, def time.Duration) metav1.Duration {
	if d == nil {
		return metav1.Duration{Duration: def}
	}
	return *d
}

func durationPtr(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

// Get returns the duration, or 0 for nil.
func Get(d *metav1.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return d.Duration
}
