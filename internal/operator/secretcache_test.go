package operator

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/controllers"
	"github.com/keysmith-dev/keysmith/internal/keys"
)

func TestTransformSecret(t *testing.T) {
	key, err := keys.Generate("ks", "live")
	if err != nil {
		t.Fatal(err)
	}
	plaintext := key.Plaintext()
	other, err := keys.Generate("zz", "test")
	if err != nil {
		t.Fatal(err)
	}
	apiKeyRef := metav1.OwnerReference{APIVersion: "keysmith.dev/v1alpha1", Kind: "ApiKey", Name: "svc", UID: "u-1",
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}
	ref := func(apiVersion, kind string, controller bool) metav1.OwnerReference {
		return metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: "svc", UID: "u-2", Controller: ptr.To(controller)}
	}
	keysmithLabels := map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue, v1alpha1.LabelApiKey: "svc"}
	labels := func(extra map[string]string) map[string]string {
		m := maps.Clone(keysmithLabels)
		maps.Copy(m, extra)
		return m
	}
	// secret is keysmith's Secret as the API server returns it; mutate changes it.
	secret := func(mutate func(*corev1.Secret)) *corev1.Secret {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: "ns", Name: "svc-key", UID: "s-1", ResourceVersion: "42", Generation: 3,
				Labels: labels(map[string]string{"team": "a"}), Annotations: map[string]string{"note": "b"},
				OwnerReferences:   []metav1.OwnerReference{apiKeyRef, ref("v1", "ConfigMap", false)},
				Finalizers:        []string{"example.com/hold"},
				ManagedFields:     []metav1.ManagedFieldsEntry{{Manager: "keysmith", Operation: metav1.ManagedFieldsOperationUpdate}},
				CreationTimestamp: metav1.Now(),
			},
			Type: v1alpha1.SecretType,
			Data: map[string][]byte{
				v1alpha1.SecretKeyAPIKey:    []byte(plaintext),
				v1alpha1.SecretKeyKeyID:     []byte(keys.ID(plaintext)),
				v1alpha1.SecretKeyExpiresAt: []byte("2027-02-25T07:42:30Z"),
				"extra":                     []byte(strings.Repeat("x", 1<<20)),
			},
		}
		if mutate != nil {
			mutate(s)
		}
		return s
	}
	// cached is what the cache keeps of secret(nil); mutate changes it.
	cached := func(mutate func(*corev1.Secret)) *corev1.Secret {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: "ns", Name: "svc-key", UID: "s-1", ResourceVersion: "42", Generation: 3,
				Labels: labels(map[string]string{"team": "a"}), Annotations: map[string]string{"note": "b"},
				OwnerReferences: []metav1.OwnerReference{apiKeyRef},
			},
			Type: v1alpha1.SecretType,
			Data: map[string][]byte{
				controllers.CachedKeyHash:   []byte(keys.Hash(plaintext)),
				v1alpha1.SecretKeyKeyID:     []byte(keys.ID(plaintext)),
				v1alpha1.SecretKeyExpiresAt: []byte("2027-02-25T07:42:30Z"),
			},
		}
		if mutate != nil {
			mutate(s)
		}
		return s
	}
	// foreign is what the cache keeps of a Secret no ApiKey controls.
	foreign := func(mutate func(*corev1.Secret)) *corev1.Secret {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "svc-key", UID: "s-1", ResourceVersion: "42", Generation: 3, Labels: keysmithLabels},
			Type:       v1alpha1.SecretType,
			Data:       map[string][]byte{controllers.CachedKeyHash: {}},
		}
		if mutate != nil {
			mutate(s)
		}
		return s
	}
	many := map[string]string{}
	for i := range 100 {
		many[fmt.Sprintf("l%03d", i)] = "v"
	}
	kept := labels(nil)
	for i := range maxCachedEntries - 2 {
		kept[fmt.Sprintf("l%03d", i)] = "v"
	}
	long := strings.Repeat("y", maxCachedValue+1)
	deleting := metav1.Now()

	for _, tc := range []struct {
		name string
		in   *corev1.Secret
		want *corev1.Secret
	}{
		{"keysmith's Secret: the key becomes its hash; other data, managed fields, finalizers and other owners go",
			secret(nil), cached(nil)},
		{"an emptied Secret: an empty hash",
			secret(func(s *corev1.Secret) {
				s.Data = map[string][]byte{v1alpha1.SecretKeyAPIKey: {}, v1alpha1.SecretKeyKeyID: {}, v1alpha1.SecretKeyExpiresAt: {}}
			}),
			cached(func(s *corev1.Secret) {
				s.Data = map[string][]byte{controllers.CachedKeyHash: {}, v1alpha1.SecretKeyKeyID: {}, v1alpha1.SecretKeyExpiresAt: {}}
			})},
		{"keysmith's Secret without its labels (they are kept as they are) and being deleted",
			secret(func(s *corev1.Secret) { s.Labels = nil; s.DeletionTimestamp = &deleting }),
			cached(func(s *corev1.Secret) { s.Labels = nil; s.DeletionTimestamp = &deleting })},
		{"another version of the ApiKey kind is an ApiKey",
			secret(func(s *corev1.Secret) { s.OwnerReferences[0].APIVersion = "keysmith.dev/v1" }),
			cached(func(s *corev1.Secret) { s.OwnerReferences[0].APIVersion = "keysmith.dev/v1" })},
		{"key-id, expires-at and type longer than the bound, and a key copied into key-id, are kept as hashes",
			secret(func(s *corev1.Secret) {
				s.Data[v1alpha1.SecretKeyKeyID] = []byte(other.Plaintext())
				s.Data[v1alpha1.SecretKeyExpiresAt] = []byte(long)
				s.Type = corev1.SecretType(long)
			}),
			cached(func(s *corev1.Secret) {
				s.Data[v1alpha1.SecretKeyKeyID] = []byte(keys.Hash(other.Plaintext()))
				s.Data[v1alpha1.SecretKeyExpiresAt] = []byte(keys.Hash(long))
				s.Type = corev1.SecretType(keys.Hash(long))
			})},
		{"a long annotation, a key in a label and one within an annotation are kept as hashes",
			secret(func(s *corev1.Secret) {
				s.Annotations["big"] = long
				s.Labels["leak"] = other.Plaintext()
				s.Annotations["leak"] = "the key is " + plaintext + "."
			}),
			cached(func(s *corev1.Secret) {
				s.Annotations["big"] = keys.Hash(long)
				s.Labels["leak"] = keys.Hash(other.Plaintext())
				s.Annotations["leak"] = keys.Hash("the key is " + plaintext + ".")
			})},
		{"at most 64 labels and 64 annotations, keysmith's labels first",
			secret(func(s *corev1.Secret) { s.Labels = labels(many); s.Annotations = many }),
			cached(func(s *corev1.Secret) {
				s.Labels = kept
				s.Annotations = map[string]string{}
				for i := range maxCachedEntries {
					s.Annotations[fmt.Sprintf("l%03d", i)] = "v"
				}
			})},
		{"a tenant's Secret labelled as keysmith's, no owner: no data, annotations, other labels",
			secret(func(s *corev1.Secret) { s.OwnerReferences = nil }), foreign(nil)},
		{"controlled by something else",
			secret(func(s *corev1.Secret) {
				s.OwnerReferences = []metav1.OwnerReference{ref("apps/v1", "Deployment", true), ref("keysmith.dev/v1alpha1", "ApiKey", false)}
			}), foreign(nil)},
		{"an ApiKey of another group",
			secret(func(s *corev1.Secret) { s.OwnerReferences[0].APIVersion = "example.com/v1alpha1" }), foreign(nil)},
		{"an ApiKey reference too long to be one",
			secret(func(s *corev1.Secret) { s.OwnerReferences[0].Name = strings.Repeat("n", 254) }), foreign(nil)},
		{"a tenant's Secret with only the managed-by label, a long type",
			secret(func(s *corev1.Secret) {
				s.OwnerReferences = nil
				s.Labels = map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue, "x": "y"}
				s.Type = corev1.SecretType(long)
			}),
			foreign(func(s *corev1.Secret) {
				s.Labels = map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue}
				s.Type = corev1.SecretType(keys.Hash(long))
			})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in.DeepCopy()
			out, err := transformSecret(in)
			if err != nil {
				t.Fatal(err)
			}
			got := out.(*corev1.Secret)
			// Compared field by field: a failing test must not print a key.
			if !reflect.DeepEqual(got.ObjectMeta, tc.want.ObjectMeta) {
				t.Errorf("metadata:\n got %s\nwant %s", metaJSON(t, got), metaJSON(t, tc.want))
			}
			if got.Type != tc.want.Type {
				t.Errorf("type %q, want %q", got.Type, tc.want.Type)
			}
			if !reflect.DeepEqual(got.Data, tc.want.Data) {
				t.Errorf("data differs: got entries %v, want %v", dataEntries(got.Data), dataEntries(tc.want.Data))
			}
			if got.StringData != nil || got.Immutable != nil {
				t.Error("stringData or immutable kept")
			}
			text := dump(t, got)
			for _, k := range []string{plaintext, other.Plaintext()} {
				if strings.Contains(text, k) || strings.Contains(text, base64.StdEncoding.EncodeToString([]byte(k))) {
					t.Error("a key is left in the transformed Secret")
				}
			}
			if keys.ContainsKey(text) {
				t.Error("something shaped like a key is left in the transformed Secret")
			}
			if strings.Contains(text, "xxxxxxxx") {
				t.Error("other data is left in the transformed Secret")
			}
			again, err := transformSecret(got.DeepCopy())
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Error("the transform is not idempotent")
			}
		})
	}

	t.Run("other objects pass through", func(t *testing.T) {
		cm := &corev1.ConfigMap{Data: map[string]string{"a": "b"}}
		if out, err := transformSecret(cm); err != nil || out != any(cm) {
			t.Errorf("got %v, %v", out, err)
		}
	})
}

// metaJSON is the Secret's metadata with anything shaped like a key redacted.
func metaJSON(t *testing.T, s *corev1.Secret) string {
	b, err := json.Marshal(s.ObjectMeta)
	if err != nil {
		t.Fatal(err)
	}
	return keys.Redact(string(b))
}

// dataEntries names the data entries and their sizes, never their values.
func dataEntries(m map[string][]byte) []string {
	var out []string
	for k, v := range m {
		out = append(out, fmt.Sprintf("%s (%d bytes)", k, len(v)))
	}
	slices.Sort(out)
	return out
}

// dump is everything the Secret holds, as text: its JSON (data in base64), its Go syntax and its data
// values as they are.
func dump(t *testing.T, s *corev1.Secret) string {
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b) + fmt.Sprintf("%#v", s)
	for _, v := range s.Data {
		text += "\n" + string(v)
	}
	return text
}
