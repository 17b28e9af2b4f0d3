package operator

import (
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/rotation"
)

func TestTransformApiKey(t *testing.T) {
	created := metav1.Unix(1700000000, 0)
	deleting := metav1.Unix(1700000100, 0)
	owner := metav1.OwnerReference{APIVersion: "argoproj.io/v1alpha1", Kind: "Application", Name: "payments", UID: "o-1", Controller: ptr.To(true)}
	spec := v1alpha1.ApiKeySpec{Scopes: []string{"users:read"}, SecretName: "svc-key",
		SecretTemplate: &v1alpha1.SecretTemplate{Labels: map[string]string{"team": "a"}, Annotations: map[string]string{"note": "b"}}}
	status := v1alpha1.ApiKeyStatus{CurrentKeyID: "0123456789ab", HandledRotateRequest: rotation.RequestDigest("1"),
		Keys: []v1alpha1.IssuedKey{{ID: "0123456789ab", Hash: "sha256:" + strings.Repeat("0", 64), State: v1alpha1.KeyActive}}}
	const lastAppliedKey = "kubectl.kubernetes.io/last-applied-configuration"
	lastApplied := strings.Repeat("{}", 100<<10) // 200 KiB, as kubectl apply writes
	// apiKey is an ApiKey as the API server returns it; mutate changes it.
	apiKey := func(mutate func(*v1alpha1.ApiKey)) *v1alpha1.ApiKey {
		ak := &v1alpha1.ApiKey{
			TypeMeta: metav1.TypeMeta{APIVersion: "keysmith.dev/v1alpha1", Kind: "ApiKey"},
			ObjectMeta: metav1.ObjectMeta{
				Namespace: "ns", Name: "svc", UID: "u-1", ResourceVersion: "42", Generation: 3, CreationTimestamp: created,
				GenerateName: "sv", DeletionGracePeriodSeconds: ptr.To[int64](30),
				Labels: map[string]string{"team": "a", "app.kubernetes.io/name": "svc"},
				Annotations: map[string]string{
					lastAppliedKey:                   lastApplied,
					"argocd.argoproj.io/tracking-id": "payments:keysmith.dev/ApiKey:ns/svc",
					v1alpha1.AnnotationRotate:        "1",
					v1alpha1.AnnotationRevoke:        "0123456789ab",
				},
				Finalizers:      []string{v1alpha1.Finalizer, "example.com/hold"},
				OwnerReferences: []metav1.OwnerReference{owner},
				ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}},
			},
			Spec:   *spec.DeepCopy(),
			Status: *status.DeepCopy(),
		}
		if mutate != nil {
			mutate(ak)
		}
		return ak
	}
	// cached is what the cache keeps of apiKey(nil); mutate changes it.
	cached := func(mutate func(*v1alpha1.ApiKey)) *v1alpha1.ApiKey {
		ak := &v1alpha1.ApiKey{
			TypeMeta: metav1.TypeMeta{APIVersion: "keysmith.dev/v1alpha1", Kind: "ApiKey"},
			ObjectMeta: metav1.ObjectMeta{
				Namespace: "ns", Name: "svc", UID: "u-1", ResourceVersion: "42", Generation: 3, CreationTimestamp: created,
				Labels:          map[string]string{"team": "a", "app.kubernetes.io/name": "svc"},
				Annotations:     map[string]string{v1alpha1.AnnotationRotate: "1", v1alpha1.AnnotationRevoke: "0123456789ab"},
				Finalizers:      []string{v1alpha1.Finalizer, "example.com/hold"},
				OwnerReferences: []metav1.OwnerReference{owner},
			},
			Spec:   *spec.DeepCopy(),
			Status: *status.DeepCopy(),
		}
		if mutate != nil {
			mutate(ak)
		}
		return ak
	}
	withLabels := func(m map[string]string) func(*v1alpha1.ApiKey) {
		return func(ak *v1alpha1.ApiKey) { ak.Labels = m }
	}
	withRequests := func(rotate, revoke string) func(*v1alpha1.ApiKey) {
		return func(ak *v1alpha1.ApiKey) {
			ak.Annotations = map[string]string{v1alpha1.AnnotationRotate: rotate, v1alpha1.AnnotationRevoke: revoke}
		}
	}

	atLimit := strings.Repeat("r", maxCachedRequest)
	tooLong := strings.Repeat("r", maxCachedRequest+1)
	pasted := strings.Repeat("ks_live_"+strings.Repeat("A", 36)+",", 100) // a key pasted many times over
	// 64 whole keys separated by ", ": the longest well-formed revoke value without padding.
	var ids []string
	for range rotation.MaxRevokeEntries {
		ids = append(ids, "abcdefgh_live_"+strings.Repeat("A", 36))
	}
	longestRevoke := strings.Join(ids, ", ")

	// 100 labels and two of keysmith's: keysmith's and the first 62 others in key order are kept.
	many, manyKept := map[string]string{}, map[string]string{"keysmith.dev/tier": "gold", "keysmith.dev/verifier": "edge"}
	for i := range 100 {
		many[fmt.Sprintf("l%03d", i)] = "v"
		if i < maxCachedLabels-2 {
			manyKept[fmt.Sprintf("l%03d", i)] = "v"
		}
	}
	maps.Copy(many, map[string]string{"keysmith.dev/tier": "gold", "keysmith.dev/verifier": "edge"})
	// 60 labels of 317 + 63 bytes (the longest the API server allows): 43 fit in 16 KiB.
	big, bigKept := map[string]string{}, map[string]string{}
	for i := range 60 {
		k := fmt.Sprintf("%s.example.com/%s%02d", strings.Repeat("d", 241), strings.Repeat("n", 61), i)
		big[k] = strings.Repeat("v", 63)
		if i < maxCachedLabelBytes/(317+63) {
			bigKept[k] = big[k]
		}
	}
	// exactly 64 labels: kept as they are.
	sixtyFour := map[string]string{}
	for i := range maxCachedLabels {
		sixtyFour[fmt.Sprintf("z%02d", i)] = "v"
	}

	noOthers := func(ak *v1alpha1.ApiKey) {
		delete(ak.Annotations, lastAppliedKey)
		delete(ak.Annotations, "argocd.argoproj.io/tracking-id")
	}
	for _, tc := range []struct {
		name string
		in   *v1alpha1.ApiKey
		// want is the cached ApiKey but for the digest of the other annotations, which it has when digest
		// is true.
		want   *v1alpha1.ApiKey
		digest bool
	}{
		{"annotations other than rotate and revoke become one digest; managed fields, generateName and the grace period go",
			apiKey(nil), cached(nil), true},
		{"no other annotations: no digest",
			apiKey(noOthers), cached(nil), false},
		{"no annotations: none",
			apiKey(func(ak *v1alpha1.ApiKey) { ak.Annotations = nil }), cached(func(ak *v1alpha1.ApiKey) { ak.Annotations = nil }), false},
		{"deletionTimestamp is kept",
			apiKey(func(ak *v1alpha1.ApiKey) { ak.DeletionTimestamp = &deleting }),
			cached(func(ak *v1alpha1.ApiKey) { ak.DeletionTimestamp = &deleting }), true},
		{"no request annotation: only the digest",
			apiKey(func(ak *v1alpha1.ApiKey) { ak.Annotations = map[string]string{"note": "x"} }),
			cached(func(ak *v1alpha1.ApiKey) { ak.Annotations = map[string]string{} }), true},
		{"empty request values are kept (an empty revoke is not a request)",
			apiKey(withRequests("", "")), cached(withRequests("", "")), false},
		{"values of 4096 bytes are kept as they are",
			apiKey(withRequests(atLimit, atLimit)), cached(withRequests(atLimit, atLimit)), false},
		{"the longest well-formed revoke value is kept as it is",
			apiKey(withRequests("1", longestRevoke)), cached(withRequests("1", longestRevoke)), false},
		{"longer values become the digest of the value",
			apiKey(withRequests(tooLong, pasted)),
			cached(withRequests(rotation.RequestDigest(tooLong), rotation.RequestDigest(pasted))), false},
		{"no labels", apiKey(withLabels(nil)), cached(withLabels(nil)), true},
		{"64 labels are kept", apiKey(withLabels(sixtyFour)), cached(withLabels(sixtyFour)), true},
		{"more than 64 labels: keysmith.dev/ ones, then the first in key order",
			apiKey(withLabels(many)), cached(withLabels(manyKept)), true},
		{"more than 16 KiB of labels: the first in key order up to 16 KiB",
			apiKey(withLabels(big)), cached(withLabels(bigKept)), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.in.DeepCopy()
			got, err := transformApiKey(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			withoutDigest := got.(*v1alpha1.ApiKey).DeepCopy()
			d, hasDigest := withoutDigest.Annotations[CachedAnnotationsDigest]
			if hasDigest != tc.digest || (hasDigest && !digestShape.MatchString(d)) {
				t.Errorf("digest of the other annotations %q, want one: %v", d, tc.digest)
			}
			delete(withoutDigest.Annotations, CachedAnnotationsDigest)
			if !reflect.DeepEqual(withoutDigest, tc.want) {
				t.Errorf("transformApiKey:\n got %s\nwant %s", describeApiKey(withoutDigest), describeApiKey(tc.want))
			}
			if !reflect.DeepEqual(tc.in, before) {
				t.Error("transformApiKey changed its input")
			}
			again, err := transformApiKey(got)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(again, got) {
				t.Errorf("not idempotent:\n once  %s\n twice %s", describeApiKey(got.(*v1alpha1.ApiKey)), describeApiKey(again.(*v1alpha1.ApiKey)))
			}
			ak := got.(*v1alpha1.ApiKey)
			size := 0
			for k, v := range ak.Labels {
				size += len(k) + len(v)
			}
			if len(ak.Labels) > maxCachedLabels || size > maxCachedLabelBytes {
				t.Errorf("%d labels of %d bytes kept", len(ak.Labels), size)
			}
			for k, v := range ak.Annotations {
				if len(v) > maxCachedRequest || (k != v1alpha1.AnnotationRotate && k != v1alpha1.AnnotationRevoke && k != CachedAnnotationsDigest) {
					t.Errorf("annotation %s of %d bytes kept", k, len(v))
				}
			}
		})
	}

	t.Run("the digest of the other annotations changes with any of them, and only with them", func(t *testing.T) {
		digest := func(annotations map[string]string) string {
			got, _ := transformApiKey(&v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Name: "svc", Annotations: annotations}})
			return got.(*v1alpha1.ApiKey).Annotations[CachedAnnotationsDigest]
		}
		base := map[string]string{"note": "x", lastAppliedKey: lastApplied}
		with := func(k, v string) map[string]string {
			m := maps.Clone(base)
			m[k] = v
			return m
		}
		without := maps.Clone(base)
		delete(without, "note")
		d := digest(base)
		if digest(maps.Clone(base)) != d {
			t.Error("the same annotations gave different digests")
		}
		if digest(with(v1alpha1.AnnotationRotate, "2")) != d || digest(with(v1alpha1.AnnotationRevoke, "all")) != d {
			t.Error("a request annotation changed the digest of the others")
		}
		for name, m := range map[string]map[string]string{
			"a value changed":      with(lastAppliedKey, lastApplied+" "),
			"an annotation added":  with("other", ""),
			"an annotation gone":   without,
			"a key renamed":        {"notes": "x", lastAppliedKey: lastApplied},
			"a value moved to key": {"notex": "", lastAppliedKey: lastApplied},
		} {
			if digest(m) == d {
				t.Errorf("%s: the digest did not change", name)
			}
		}
	})

	t.Run("a bounded value is the same for the same input and differs for another", func(t *testing.T) {
		a, _ := transformApiKey(apiKey(withRequests(tooLong, tooLong)))
		b, _ := transformApiKey(apiKey(withRequests(tooLong, tooLong)))
		c, _ := transformApiKey(apiKey(withRequests(tooLong+"x", tooLong+"x")))
		if !reflect.DeepEqual(a.(*v1alpha1.ApiKey).Annotations, b.(*v1alpha1.ApiKey).Annotations) {
			t.Error("the same value gave different markers")
		}
		if a.(*v1alpha1.ApiKey).Annotations[v1alpha1.AnnotationRotate] == c.(*v1alpha1.ApiKey).Annotations[v1alpha1.AnnotationRotate] {
			t.Error("different values gave the same marker")
		}
	})

	t.Run("a bounded revoke value is malformed and holds no key, whatever the value", func(t *testing.T) {
		// "all" padded past the bound would revoke every key if read whole; the marker revokes nothing.
		for _, v := range []string{tooLong, pasted, "all" + strings.Repeat(" ", maxCachedRequest)} {
			got, _ := transformApiKey(apiKey(withRequests("1", v)))
			marker := got.(*v1alpha1.ApiKey).Annotations[v1alpha1.AnnotationRevoke]
			if ids, all, problem := rotation.ParseRevokeRequest(marker); problem == "" {
				t.Errorf("ParseRevokeRequest(%q) = %v, %v with no problem", marker, ids, all)
			}
			if strings.Contains(marker, "ks_live_") {
				t.Errorf("the marker %q holds the pasted key", marker)
			}
		}
	})

	t.Run("a status recording the digest of the whole value still counts it as handled", func(t *testing.T) {
		got, _ := transformApiKey(apiKey(withRequests(tooLong, "1")))
		marker := got.(*v1alpha1.ApiKey).Annotations[v1alpha1.AnnotationRotate]
		if !rotation.RequestHandled(marker, rotation.RequestDigest(tooLong)) {
			t.Error("a rotation handled before the transform is requested again")
		}
		if !rotation.RequestHandled(marker, rotation.RequestDigest(marker)) {
			t.Error("a rotation handled from the cached value is requested again")
		}
		if rotation.RequestHandled(marker, rotation.RequestDigest(tooLong+"x")) {
			t.Error("a new long value does not request a rotation")
		}
	})

	t.Run("other types pass through", func(t *testing.T) {
		for _, obj := range []any{
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s", Annotations: map[string]string{"a": lastApplied}}},
			&v1alpha1.ApiKeyPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p", Annotations: map[string]string{"a": lastApplied}}},
			&v1alpha1.ApiKeyList{Items: []v1alpha1.ApiKey{*apiKey(nil)}},
			toolscache.DeletedFinalStateUnknown{Key: "ns/svc", Obj: apiKey(nil)},
			"not an object",
		} {
			got, err := transformApiKey(obj)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, obj) {
				t.Errorf("%T changed", obj)
			}
		}
	})
}

var digestShape = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// describeApiKey prints an ApiKey for a failure message, with long values shortened.
func describeApiKey(ak *v1alpha1.ApiKey) string {
	short := func(m map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			if len(k) > 40 {
				k = k[:40] + "…"
			}
			if len(v) > 40 {
				v = fmt.Sprintf("%s… (%d bytes)", v[:40], len(v))
			}
			out[k] = v
		}
		return out
	}
	c := ak.DeepCopy()
	c.Labels, c.Annotations = short(c.Labels), short(c.Annotations)
	return fmt.Sprintf("%d labels %v, annotations %v, meta %+v", len(ak.Labels), c.Labels, c.Annotations, c.ObjectMeta)
}

func TestWithApiKeyTransform(t *testing.T) {
	sel := labels.SelectorFromSet(labels.Set{"team": "a"})
	for _, tc := range []struct {
		name string
		in   map[client.Object]cache.ByObject
		// wantLabel is the selector the ApiKey entry keeps; others is how many other entries there are.
		wantLabel labels.Selector
		others    int
	}{
		{"the manager's: Secrets only, an ApiKey entry is added", map[client.Object]cache.ByObject{&corev1.Secret{}: {Label: SecretSelector(), Transform: transformSecret}}, nil, 1},
		{"the verifier's: the ApiKey entry keeps its selector and namespaces", map[client.Object]cache.ByObject{&v1alpha1.ApiKey{}: {Label: sel, Namespaces: map[string]cache.Config{"ns": {}}}}, sel, 0},
		{"none", nil, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := withApiKeyTransform(tc.in)
			var apiKeys []cache.ByObject
			others := 0
			for obj, o := range got {
				if _, ok := obj.(*v1alpha1.ApiKey); ok {
					apiKeys = append(apiKeys, o)
					continue
				}
				others++
				if _, ok := obj.(*corev1.Secret); ok && (o.Transform == nil || !reflect.DeepEqual(o.Label, SecretSelector())) {
					t.Error("the Secret entry changed")
				}
			}
			if len(apiKeys) != 1 || others != tc.others {
				t.Fatalf("%d ApiKey entries and %d others, want 1 and %d", len(apiKeys), others, tc.others)
			}
			o := apiKeys[0]
			if !reflect.DeepEqual(o.Label, tc.wantLabel) {
				t.Errorf("selector %v, want %v", o.Label, tc.wantLabel)
			}
			if tc.wantLabel != nil && len(o.Namespaces) != 1 {
				t.Errorf("namespaces %v", o.Namespaces)
			}
			if o.Transform == nil {
				t.Fatal("no transform on ApiKeys")
			}
			out, err := o.Transform(&v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Name: "svc", Annotations: map[string]string{"note": "x"}}})
			if _, note := out.(*v1alpha1.ApiKey).Annotations["note"]; err != nil || note {
				t.Errorf("the ApiKey transform kept %v (%v)", out.(*v1alpha1.ApiKey).Annotations, err)
			}
		})
	}
}
