package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/keys"
)

func TestKeyHash(t *testing.T) {
	key, err := keys.Generate("ks", "live")
	if err != nil {
		t.Fatal(err)
	}
	plaintext := key.Plaintext()
	for _, tc := range []struct {
		name       string
		data       map[string][]byte
		want       string
		fromTheAPI bool
	}{
		{"read from the API server", map[string][]byte{v1alpha1.SecretKeyAPIKey: []byte(plaintext)}, keys.Hash(plaintext), true},
		{"read from the API server, emptied", map[string][]byte{v1alpha1.SecretKeyAPIKey: {}}, "", true},
		{"read from the API server, no data", nil, "", true},
		{"from the cache", map[string][]byte{CachedKeyHash: []byte(keys.Hash(plaintext))}, keys.Hash(plaintext), false},
		{"from the cache, emptied", map[string][]byte{CachedKeyHash: {}}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &corev1.Secret{Data: tc.data}
			if got := KeyHash(s); got != tc.want {
				t.Errorf("keyHash = %q, want %q", got, tc.want)
			}
			if cached(s) == tc.fromTheAPI {
				t.Errorf("cached = %v", cached(s))
			}
		})
	}
}

// The cache's copy of a Secret is never sent to the API server: it has no key and bounded metadata.
func TestSaveSecretRefusesTheCachesCopy(t *testing.T) {
	r := &ApiKeyReconciler{} // no client: the refusal comes first
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s", ResourceVersion: "1"},
		Data: map[string][]byte{CachedKeyHash: []byte("sha256:00"), v1alpha1.SecretKeyKeyID: []byte("abc")}}
	for _, create := range []bool{true, false} {
		err := r.saveSecret(context.Background(), s, create, "writing")
		if err == nil || !strings.Contains(err.Error(), "refusing to write the cache's copy") {
			t.Errorf("create=%v: %v", create, err)
		}
	}
}

func TestRepaired(t *testing.T) {
	notAfter := metav1.NewTime(time.Date(2027, 2, 25, 7, 42, 30, 0, time.UTC))
	k := &v1alpha1.IssuedKey{ID: "d5e0c8e0a160", NotAfter: notAfter}
	ak := &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Name: "svc"}, Spec: v1alpha1.ApiKeySpec{
		SecretTemplate: &v1alpha1.SecretTemplate{Labels: map[string]string{"team": "a"}, Annotations: map[string]string{"note": "b"}}}}
	good := func(hashEntry string, mutate func(*corev1.Secret)) *corev1.Secret {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Labels:      map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue, v1alpha1.LabelApiKey: "svc", "team": "a", "other": "x"},
				Annotations: map[string]string{"note": "b", "other": "y"},
			},
			Data: map[string][]byte{hashEntry: []byte("k"), v1alpha1.SecretKeyKeyID: []byte(k.ID), v1alpha1.SecretKeyExpiresAt: []byte("2027-02-25T07:42:30Z")},
		}
		if mutate != nil {
			mutate(s)
		}
		return s
	}
	for _, entry := range []string{v1alpha1.SecretKeyAPIKey, CachedKeyHash} {
		for _, tc := range []struct {
			name   string
			mutate func(*corev1.Secret)
			repair bool
		}{
			{"nothing to repair", nil, false},
			{"key-id edited", func(s *corev1.Secret) { s.Data[v1alpha1.SecretKeyKeyID] = []byte("x") }, true},
			{"expires-at removed", func(s *corev1.Secret) { delete(s.Data, v1alpha1.SecretKeyExpiresAt) }, true},
			{"managed-by label removed", func(s *corev1.Secret) { delete(s.Labels, v1alpha1.LabelManagedBy) }, true},
			{"template label changed", func(s *corev1.Secret) { s.Labels["team"] = "b" }, true},
			{"template annotation kept as a hash by the cache", func(s *corev1.Secret) { s.Annotations["note"] = keys.Hash("b") }, true},
			{"others' labels and annotations changed", func(s *corev1.Secret) { s.Labels["other"] = "z"; delete(s.Annotations, "other") }, false},
		} {
			t.Run(entry+"/"+tc.name, func(t *testing.T) {
				s := good(entry, tc.mutate)
				want := repaired(ak, k, s)
				if (want != nil) != tc.repair {
					t.Fatalf("repaired = %v, want a repair: %v", want != nil, tc.repair)
				}
				if want == nil {
					return
				}
				if string(want.Data[entry]) != "k" {
					t.Error("the key entry was not kept")
				}
				if repaired(ak, k, want) != nil {
					t.Error("the repaired Secret still needs a repair")
				}
				if want.Labels["other"] != s.Labels["other"] || want.Annotations["other"] != s.Annotations["other"] {
					t.Error("others' metadata changed")
				}
			})
		}
	}
}
