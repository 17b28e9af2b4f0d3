package operator

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/rotation"
)

// Bounds of what the manager's and every verifier's cache keep of an ApiKey's metadata. Anyone who can
// edit ApiKeys in a namespace sets their labels and annotations (up to 256 KiB of annotations, as
// kubectl's last-applied-configuration), and every verifier caches every ApiKey it serves.
const (
	// maxCachedRequest is the longest keysmith.dev/rotate or keysmith.dev/revoke value kept as it is.
	// A revoke value of 64 whole keys (50 bytes each) separated by ", " is 3326 bytes.
	maxCachedRequest = 4096
	// maxCachedLabels and maxCachedLabelBytes (keys and values together) bound the labels kept.
	maxCachedLabels     = 64
	maxCachedLabelBytes = 16 << 10
)

// CachedAnnotationsDigest is the annotation under which a cached ApiKey carries the SHA-256 of its
// annotations other than keysmith.dev/rotate and keysmith.dev/revoke. Its key has two '/', which no
// annotation key may: the API server never stores nor accepts it, so an ApiKey read from the API server
// never has it, and a cached ApiKey sent back by mistake in an update is refused instead of wiping its
// owner's annotations and labels.
const CachedAnnotationsDigest = "keysmith.dev/cached/annotations-sha256"

// transformApiKey is the transform for ApiKeys on their way into the manager's and the standalone
// verifier's cache (the informer's store, and so every Get and List of their clients and every watch
// event the controller and the verifier's index see). It keeps only what keysmith reads:
//
//   - name, namespace, uid, resourceVersion, generation, creationTimestamp, deletionTimestamp,
//     finalizers and ownerReferences as they are, and spec and status;
//   - the annotations keysmith.dev/rotate and keysmith.dev/revoke. A value longer than maxCachedRequest
//     bytes is replaced by "sha256:<hex>" of it (rotation.RequestDigest): the same input gives the same
//     marker, so the handled-request digests that the manager records and the verifiers compare are
//     computed from the same cached value everywhere; rotation.ParseRevokeRequest finds such a marker
//     malformed (so nothing is revoked for it), any new marker still requests a rotation, and a status
//     that recorded the digest of the whole value (before this transform) still counts as handled,
//     since RequestHandled also accepts a handled value verbatim;
//   - of the other annotations, only one SHA-256 of them all, under CachedAnnotationsDigest (nothing
//     when there are none): 71 bytes, so that the controller's AnnotationChangedPredicate still sees
//     any annotation change (docs/design.md);
//   - the labels, bounded: when there are more than maxCachedLabels or they hold more than
//     maxCachedLabelBytes (keys and values together), the keysmith.dev/ ones come first and then the
//     others in key order, and labels are kept in that order up to the first that does not fit. A label
//     selector (--verify-label-selector) must therefore use labels within that bound: an ApiKey whose
//     selected label falls outside it is not served.
//
// Managed fields and everything else in metadata go. The transform builds a new object and is
// idempotent; other types pass through.
//
// keysmith's writes built from a cached ApiKey never send the stripped metadata back: status is written
// to the status subresource, where the API server ignores metadata (test/integration/apikeycache_test.go
// checks it), and the finalizer and lastUsedAt writes are merge patches from a copy of the cached object,
// which carry only what changed (finalizers are cached whole, since a merge patch replaces the list).
func transformApiKey(obj any) (any, error) {
	ak, ok := obj.(*v1alpha1.ApiKey)
	if !ok {
		return obj, nil
	}
	return cachedApiKey(ak), nil
}

func cachedApiKey(ak *v1alpha1.ApiKey) *v1alpha1.ApiKey {
	return &v1alpha1.ApiKey{
		TypeMeta: ak.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: ak.Name, Namespace: ak.Namespace, UID: ak.UID, ResourceVersion: ak.ResourceVersion,
			Generation: ak.Generation, CreationTimestamp: ak.CreationTimestamp, DeletionTimestamp: ak.DeletionTimestamp,
			Finalizers: ak.Finalizers, OwnerReferences: ak.OwnerReferences,
			Labels:      boundedLabels(ak.Labels),
			Annotations: cachedAnnotations(ak.Annotations),
		},
		Spec:   ak.Spec,
		Status: ak.Status,
	}
}

// cachedAnnotations returns keysmith.dev/rotate and keysmith.dev/revoke of annotations, bounded, and
// the digest of the others; nil when there are no annotations.
func cachedAnnotations(annotations map[string]string) map[string]string {
	if len(annotations) == 0 {
		return nil
	}
	out := make(map[string]string, 3)
	for _, k := range []string{v1alpha1.AnnotationRotate, v1alpha1.AnnotationRevoke} {
		v, ok := annotations[k]
		if !ok {
			continue
		}
		if len(v) > maxCachedRequest {
			v = rotation.RequestDigest(v)
		}
		out[k] = v
	}
	if d, ok := annotations[CachedAnnotationsDigest]; ok {
		// Already transformed: no ApiKey from the API server has this key.
		out[CachedAnnotationsDigest] = d
		return out
	}
	others := sha256.New()
	n := 0
	for _, k := range slices.Sorted(maps.Keys(annotations)) {
		if k == v1alpha1.AnnotationRotate || k == v1alpha1.AnnotationRevoke {
			continue
		}
		// Lengths first, so that no two different sets of annotations are written the same.
		fmt.Fprintf(others, "%d:%s%d:%s", len(k), k, len(annotations[k]), annotations[k])
		n++
	}
	if n > 0 {
		out[CachedAnnotationsDigest] = "sha256:" + hex.EncodeToString(others.Sum(nil))
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// boundedLabels returns labels when they are within the bounds, or else the keysmith.dev/ labels and
// then the others in key order, up to the first that does not fit.
func boundedLabels(labels map[string]string) map[string]string {
	size := 0
	for k, v := range labels {
		size += len(k) + len(v)
	}
	if len(labels) <= maxCachedLabels && size <= maxCachedLabelBytes {
		return labels
	}
	names := slices.SortedFunc(maps.Keys(labels), func(a, b string) int {
		return cmp.Or(-cmp.Compare(b2i(keysmithPrefixed(a)), b2i(keysmithPrefixed(b))), cmp.Compare(a, b))
	})
	out := make(map[string]string, maxCachedLabels)
	size = 0
	for _, k := range names {
		v := labels[k]
		if len(out) == maxCachedLabels || size+len(k)+len(v) > maxCachedLabelBytes {
			break
		}
		out[k] = v
		size += len(k) + len(v)
	}
	return out
}

func keysmithPrefixed(k string) bool { return strings.HasPrefix(k, "keysmith.dev/") }

// withApiKeyTransform returns byObject with transformApiKey on ApiKeys, adding an entry for them when
// there is none.
func withApiKeyTransform(byObject map[client.Object]cache.ByObject) map[client.Object]cache.ByObject {
	out := make(map[client.Object]cache.ByObject, len(byObject)+1)
	var apiKeys cache.ByObject
	for obj, o := range byObject {
		if _, ok := obj.(*v1alpha1.ApiKey); ok {
			apiKeys = o
			continue
		}
		out[obj] = o
	}
	apiKeys.Transform = transformApiKey
	out[&v1alpha1.ApiKey{}] = apiKeys
	return out
}
