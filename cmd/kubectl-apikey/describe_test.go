package main

import (
	"bytes"
	"os"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/inventory"
)

// printDescription's sections, with and without rows (the golden output was written by the version
// before the sections were folded into one function).
func TestPrintDescription(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	old := now
	now = func() time.Time { return t0 }
	defer func() { now = old }()
	ak := &v1alpha1.ApiKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: "payments", Name: "billing-api", CreationTimestamp: metav1.NewTime(t0.Add(-48 * time.Hour))},
		Spec:       v1alpha1.ApiKeySpec{Scopes: []string{"users:read"}, SecretName: "billing-api-key"},
		Status: v1alpha1.ApiKeyStatus{CurrentKeyID: "aaaaaaaaaaaa", Keys: []v1alpha1.IssuedKey{
			{ID: "aaaaaaaaaaaa", State: v1alpha1.KeyActive, IssuedAt: metav1.NewTime(t0.Add(-time.Hour)), NotAfter: metav1.NewTime(t0.Add(90 * 24 * time.Hour)), Scopes: []string{"users:read"}},
			{ID: "bbbbbbbbbbbb", State: v1alpha1.KeyRevoked, Reason: "Manual", IssuedAt: metav1.NewTime(t0.Add(-47 * time.Hour)), NotAfter: metav1.NewTime(t0.Add(80 * 24 * time.Hour)),
				RevokedAt: &metav1.Time{Time: t0.Add(-time.Hour)}, LastUsedAt: &metav1.Time{Time: t0.Add(-2 * time.Hour)}},
		}, Conditions: []metav1.Condition{{Type: "Ready", Status: "True", Reason: "KeyActive", Message: "Key aaaaaaaaaaaa is active", LastTransitionTime: metav1.NewTime(t0.Add(-time.Hour))}}},
	}
	d := &description{Row: inventory.Compute(ak, t0, nil), Keys: ak.Status.Keys, Timeline: inventory.Timeline(ak, t0), Conditions: ak.Status.Conditions,
		Secret: inventory.SummarizeSecret("billing-api-key", nil), Policies: policiesInfo{Applied: []string{}, Source: "cluster"},
		Events: []eventInfo{{Type: "Normal", Reason: "KeyIssued", Last: t0.Add(-time.Hour), Count: 1, Message: "Issued key aaaaaaaaaaaa"}}}
	var b bytes.Buffer
	if err := printDescription(&b, d); err != nil {
		t.Fatal(err)
	}
	empty := &description{Row: inventory.Compute(&v1alpha1.ApiKey{ObjectMeta: ak.ObjectMeta, Spec: ak.Spec}, t0, nil), Keys: []v1alpha1.IssuedKey{},
		Secret: inventory.SecretInfo{Name: "billing-api-key", Error: "forbidden"}, Policies: policiesInfo{Applied: []string{}, Source: "status", Error: "forbidden"}, EventsError: "forbidden"}
	if err := printDescription(&b, empty); err != nil {
		t.Fatal(err)
	}
	golden := "testdata/describe.golden"
	if os.Getenv("UPDATE_GOLDEN") == "1" {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Errorf("printDescription:\n%s\nwant:\n%s", b.String(), want)
	}
}
