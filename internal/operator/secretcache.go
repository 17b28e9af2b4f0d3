package operator

import (
	"cmp"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/controllers"
	"github.com/keysmith-dev/keysmith/internal/keys"
)

// Bounds of what the manager's cache keeps of a Secret that an ApiKey controls. Anyone who can write
// Secrets in a namespace can make one that claims an ApiKey as its controller, so these bound the cache
// whatever such Secrets hold: about 60 KiB at most (64 labels of at most 317 + 63 bytes, 64 annotations
// of at most 317 + 256 bytes), where the API server allows 1.5 MiB an object.
const (
	// maxCachedEntries labels and as many annotations are kept: secretTemplate's 32 at most, keysmith's
	// own two labels and room for others'. Beyond it, entries are left out in key order.
	maxCachedEntries = 64
	// maxCachedValue is the longest annotation value, key-id, expires-at or type kept as it is
	// (keysmith writes 12 and 20 bytes); a longer one is kept as its SHA-256 (71 bytes, so the transform
	// stays idempotent), which still differs from anything keysmith writes, so drift is still seen.
	maxCachedValue = 256
)

// transformSecret is the manager's transform for Secrets on their way into its cache (the informer's
// store, and so every Get and List of the manager's client). The cache holds every Secret labelled
// app.kubernetes.io/managed-by=keysmith, which anyone can label, and keysmith's own hold the plaintext
// key, which must exist only in memory while it is issued and in the Secret. So the cache keeps only
// what keysmith decides on:
//
//   - for every Secret: name, namespace, uid, resourceVersion, generation, deletionTimestamp, type (at
//     most 256 bytes), and data[controllers.CachedKeyHash];
//   - for a Secret controlled by an ApiKey (keysmith.dev, kind ApiKey): also the controller reference,
//     its labels and annotations (at most 64 of each, values of at most 256 bytes) and its key-id and
//     expires-at entries (at most 256 bytes each); a longer value is replaced by its
//     SHA-256, and so is any value holding a key (a valid one, checksum included), so that no key stays
//     in the cache even when someone copies one into a label;
//   - for any other Secret: only keysmith's two labels, no data (data[controllers.CachedKeyHash] is
//     empty), no annotations, no owner references.
//
// data["api-key"] is replaced by data[controllers.CachedKeyHash] holding its sha256:<hex> ("" when it
// holds no key), a data key that no Secret can have (it holds a '/'): classify compares it with status
// as it compares the hash of a key read from the API server, and every write of keysmith's re-reads the
// Secret from the API server first (controllers/secret.go), so a cached copy is never sent back. No
// managed fields are kept. The transform builds a new object and is idempotent.
func transformSecret(obj any) (any, error) {
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return obj, nil
	}
	return cachedSecret(s), nil
}

func cachedSecret(s *corev1.Secret) *corev1.Secret {
	out := &corev1.Secret{
		TypeMeta: s.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: s.Name, Namespace: s.Namespace, UID: s.UID, ResourceVersion: s.ResourceVersion,
			Generation: s.Generation, DeletionTimestamp: s.DeletionTimestamp,
		},
		Type: corev1.SecretType(bounded(string(s.Type), maxCachedValue)),
		Data: map[string][]byte{controllers.CachedKeyHash: {}},
	}
	ref := apiKeyController(s)
	if ref == nil {
		for _, k := range []string{v1alpha1.LabelManagedBy, v1alpha1.LabelApiKey} {
			if v, ok := s.Labels[k]; ok {
				if out.Labels == nil {
					out.Labels = map[string]string{}
				}
				out.Labels[k] = bounded(v, maxCachedValue)
			}
		}
		return out
	}
	out.OwnerReferences = []metav1.OwnerReference{*ref}
	out.Data[controllers.CachedKeyHash] = []byte(controllers.KeyHash(s))
	out.Labels = boundedMap(s.Labels, maxCachedValue)
	out.Annotations = boundedMap(s.Annotations, maxCachedValue)
	for _, k := range []string{v1alpha1.SecretKeyKeyID, v1alpha1.SecretKeyExpiresAt} {
		if v, ok := s.Data[k]; ok {
			out.Data[k] = []byte(bounded(string(v), maxCachedValue))
		}
	}
	return out
}

// apiKeyController returns the Secret's controller reference when it names an ApiKey, of any version.
// A reference with a field longer than any object name cannot be an ApiKey's.
func apiKeyController(s *corev1.Secret) *metav1.OwnerReference {
	ref := metav1.GetControllerOf(s)
	if ref == nil || ref.Kind != "ApiKey" || len(ref.Name) > 253 || len(ref.APIVersion) > 253 || len(ref.UID) > 253 {
		return nil
	}
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil || gv.Group != v1alpha1.GroupVersion.Group {
		return nil
	}
	return ref
}

// bounded returns v, or its SHA-256 when v is longer than limit bytes or holds a key.
func bounded(v string, limit int) string {
	if len(v) > limit || keys.ContainsKey(v) {
		return keys.Hash(v)
	}
	return v
}

// boundedMap keeps at most maxCachedEntries entries, keysmith's labels first and then in key order,
// values bounded by valueLimit.
func boundedMap(m map[string]string, valueLimit int) map[string]string {
	if len(m) == 0 {
		return nil
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.SortFunc(names, func(a, b string) int {
		// keysmith's labels (true) first, then in key order.
		return cmp.Or(-cmp.Compare(b2i(keysmithLabel(a)), b2i(keysmithLabel(b))), cmp.Compare(a, b))
	})
	names = names[:min(len(names), maxCachedEntries)]
	out := make(map[string]string, len(names))
	for _, k := range names {
		out[k] = bounded(m[k], valueLimit)
	}
	return out
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func keysmithLabel(k string) bool { return k == v1alpha1.LabelManagedBy || k == v1alpha1.LabelApiKey }
