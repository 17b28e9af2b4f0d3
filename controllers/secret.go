package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/keys"
	"github.com/keysmith-dev/keysmith/internal/rotation"
)

// CachedKeyHash is the data entry under which the manager's Secret cache keeps `sha256:<hex>` of the
// Secret's api-key instead of the key itself (internal/operator/secretcache.go). Its name holds a '/',
// which no Secret data key may: the API server never stores nor accepts it, so nobody can forge it, a
// Secret read from the API server never has it, and a cached Secret sent back by mistake is refused.
const CachedKeyHash = "keysmith.dev/api-key-sha256"

// observeSecret reads the ApiKey's Secret and classifies it against status. The cache only holds Secrets
// labelled as keysmith's; whenever it shows anything but the current key, the Secret is read again from
// the API server, because the cache may lag behind keysmith's own last write (acting on that lag would
// rotate twice) and cannot see a foreign Secret of the same name at all. The one exception is the first
// key, below.
func (r *ApiKeyReconciler) observeSecret(ctx context.Context, ak *v1alpha1.ApiKey) (*corev1.Secret, rotation.SecretState, error) {
	name := types.NamespacedName{Namespace: ak.Namespace, Name: ak.Spec.SecretName}
	secret := &corev1.Secret{}
	state, err := r.classify(ctx, r.Client, name, secret, ak)
	if err != nil || state == rotation.SecretCurrent {
		return secret, state, err
	}
	if state == rotation.SecretMissing && len(ak.Status.Keys) == 0 {
		// Before the first key, the API read is skipped: a Secret the cache does not show (a foreign one,
		// or keysmith's own not cached yet) makes the create fail instead, and issue looks then.
		return secret, state, nil
	}
	secret = &corev1.Secret{}
	state, err = r.classify(ctx, r.APIReader, name, secret, ak)
	return secret, state, err
}

func (r *ApiKeyReconciler) classify(ctx context.Context, c client.Reader, name types.NamespacedName, secret *corev1.Secret, ak *v1alpha1.ApiKey) (rotation.SecretState, error) {
	err := c.Get(ctx, name, secret)
	if apierrors.IsNotFound(err) {
		return rotation.SecretMissing, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading Secret %s: %w", name, err)
	}
	owned := metav1.IsControlledBy(secret, ak) && secret.Type == v1alpha1.SecretType
	return rotation.ClassifySecret(true, owned, KeyHash(secret), ak.Status.Keys, ak.Status.CurrentKeyID), nil
}

// KeyHash is sha256:<hex> of the Secret's api-key, "" when it holds none. A Secret from the manager's
// cache has no api-key but carries that hash; one read from the API server never has the cache's entry.
func KeyHash(s *corev1.Secret) string {
	if h, ok := s.Data[CachedKeyHash]; ok {
		return string(h)
	}
	if v := s.Data[v1alpha1.SecretKeyAPIKey]; len(v) > 0 {
		return keys.Hash(string(v))
	}
	return ""
}

// cached reports whether s is the manager cache's copy of a Secret: no key, no data but key-id and
// expires-at, bounded metadata. It is never written back.
func cached(s *corev1.Secret) bool {
	_, ok := s.Data[CachedKeyHash]
	return ok
}

// forWrite returns the Secret as the API server holds it, for keysmith to write: s itself when it was
// read from the API server, otherwise a fresh read, which must still be the version s is (else a
// conflict, looked at again shortly: an update carrying s's resourceVersion would have failed the same
// way). One read, never a write: the write budgets stay as they are.
func (r *ApiKeyReconciler) forWrite(ctx context.Context, s *corev1.Secret) (*corev1.Secret, error) {
	if !cached(s) {
		return s, nil
	}
	cur := &corev1.Secret{}
	err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(s), cur)
	if apierrors.IsNotFound(err) || (err == nil && (cur.UID != s.UID || cur.ResourceVersion != s.ResourceVersion)) {
		return nil, apierrors.NewConflict(corev1.Resource("secrets"), s.Name, errors.New("the Secret changed since the cache showed it"))
	}
	if err != nil {
		return nil, fmt.Errorf("reading Secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	return cur, nil
}

// writeSecret creates the Secret or replaces its key. existing is what observeSecret read (empty when the
// Secret is missing). An update carries existing's resourceVersion, so a concurrent change fails instead of
// being overwritten; Create fails on a Secret that appeared meanwhile, so nothing is ever adopted. An
// update starts from the API server's copy (forWrite), never the cache's.
func (r *ApiKeyReconciler) writeSecret(ctx context.Context, ak *v1alpha1.ApiKey, existing *corev1.Secret, plaintext string, k v1alpha1.IssuedKey) error {
	create := existing.ResourceVersion == ""
	var s *corev1.Secret
	if create {
		s = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ak.Namespace, Name: ak.Spec.SecretName}, Type: v1alpha1.SecretType}
		if err := controllerutil.SetControllerReference(ak, s, r.Scheme); err != nil {
			return err
		}
	} else {
		cur, err := r.forWrite(ctx, existing)
		if err != nil {
			return err
		}
		s = cur.DeepCopy()
	}
	applySecretMetadata(ak, s)
	s.Data = map[string][]byte{
		v1alpha1.SecretKeyAPIKey:    []byte(plaintext),
		v1alpha1.SecretKeyKeyID:     []byte(k.ID),
		v1alpha1.SecretKeyExpiresAt: []byte(k.NotAfter.UTC().Format(time.RFC3339)),
	}
	return r.saveSecret(ctx, s, create, "writing")
}

// saveSecret creates or updates s, the one way keysmith writes its Secrets: the write is tracked as
// keysmith's own (its watch event then triggers nothing), and an error names the Secret and the refused
// fields, never the data. A copy from the cache is refused: it would wipe the key (the API server refuses
// it too, for its data key).
func (r *ApiKeyReconciler) saveSecret(ctx context.Context, s *corev1.Secret, create bool, doing string) error {
	if cached(s) {
		return fmt.Errorf("%s Secret %s/%s: refusing to write the cache's copy", doing, s.Namespace, s.Name)
	}
	err := r.ownSecrets.track(client.ObjectKeyFromObject(s), func() (string, error) {
		var err error
		if create {
			err = r.Client.Create(ctx, s)
		} else {
			err = r.Client.Update(ctx, s)
		}
		return s.ResourceVersion, err
	})
	if err != nil {
		return sanitized(err, fmt.Sprintf("%s Secret %s/%s", doing, s.Namespace, s.Name))
	}
	return nil
}

// repairSecretMetadata puts back keysmith's labels, the template's metadata and the key-id and expires-at
// entries when someone changed them (one write, only then). The key itself is never rewritten here:
// keysmith does not keep it. Drift seen in the cache's copy is checked again on the API server's copy,
// which is the one written.
func (r *ApiKeyReconciler) repairSecretMetadata(ctx context.Context, ak *v1alpha1.ApiKey, s *corev1.Secret) error {
	k := findKey(ak.Status.Keys, ak.Status.CurrentKeyID)
	if k == nil || repaired(ak, k, s) == nil {
		return nil
	}
	cur, err := r.forWrite(ctx, s)
	if err != nil {
		return err
	}
	want := repaired(ak, k, cur)
	if want == nil {
		// What differed was only the cache's bounds (a label beyond its count, an annotation kept as a hash).
		return nil
	}
	return r.saveSecret(ctx, want, false, "repairing")
}

// repaired returns a copy of s with keysmith's metadata and the current key's key-id and expires-at, or
// nil when s has them already.
func repaired(ak *v1alpha1.ApiKey, k *v1alpha1.IssuedKey, s *corev1.Secret) *corev1.Secret {
	want := s.DeepCopy()
	applySecretMetadata(ak, want)
	if want.Data == nil {
		want.Data = map[string][]byte{}
	}
	want.Data[v1alpha1.SecretKeyKeyID] = []byte(k.ID)
	want.Data[v1alpha1.SecretKeyExpiresAt] = []byte(k.NotAfter.UTC().Format(time.RFC3339))
	if equality.Semantic.DeepEqual(want.ObjectMeta, s.ObjectMeta) && equality.Semantic.DeepEqual(want.Data, s.Data) {
		return nil
	}
	return want
}

// emptySecret removes the key from the Secret (spec.disabled), keeping the Secret so that workloads
// mounting it keep starting. Only keysmith's own Secret is touched.
func (r *ApiKeyReconciler) emptySecret(ctx context.Context, s *corev1.Secret) error {
	if KeyHash(s) == "" && len(s.Data[v1alpha1.SecretKeyKeyID]) == 0 {
		return nil
	}
	cur, err := r.forWrite(ctx, s)
	if err != nil {
		return err
	}
	empty := cur.DeepCopy()
	empty.Data = map[string][]byte{v1alpha1.SecretKeyAPIKey: {}, v1alpha1.SecretKeyKeyID: {}, v1alpha1.SecretKeyExpiresAt: {}}
	return r.saveSecret(ctx, empty, false, "emptying")
}

// applySecretMetadata sets keysmith's labels and the template's labels and annotations. Labels and
// annotations that others added are kept; the ApiKey's own labels and annotations are never copied.
func applySecretMetadata(ak *v1alpha1.ApiKey, s *corev1.Secret) {
	if s.Labels == nil {
		s.Labels = map[string]string{}
	}
	if t := ak.Spec.SecretTemplate; t != nil {
		maps.Copy(s.Labels, t.Labels)
		if len(t.Annotations) > 0 && s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		maps.Copy(s.Annotations, t.Annotations)
	}
	s.Labels[v1alpha1.LabelManagedBy] = v1alpha1.ManagedByValue
	s.Labels[v1alpha1.LabelApiKey] = ak.Name
}

// deleteSecret deletes the ApiKey's Secret if keysmith owns it. Envtest and some clusters run no garbage
// collector, and revocation must not depend on one.
func (r *ApiKeyReconciler) deleteSecret(ctx context.Context, ak *v1alpha1.ApiKey) error {
	s := &corev1.Secret{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: ak.Namespace, Name: ak.Spec.SecretName}, s)
	if apierrors.IsNotFound(err) || (err == nil && !metav1.IsControlledBy(s, ak)) {
		return nil
	}
	if err != nil {
		return err
	}
	err = r.Client.Delete(ctx, s, client.Preconditions{UID: &s.UID, ResourceVersion: &s.ResourceVersion})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting Secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	return nil
}

func (r *ApiKeyReconciler) addFinalizer(ctx context.Context, ak *v1alpha1.ApiKey) error {
	base := ak.DeepCopy()
	controllerutil.AddFinalizer(ak, v1alpha1.Finalizer)
	return r.patch(ctx, base, ak, nil)
}

func (r *ApiKeyReconciler) removeFinalizer(ctx context.Context, ak *v1alpha1.ApiKey) error {
	base := ak.DeepCopy()
	controllerutil.RemoveFinalizer(ak, v1alpha1.Finalizer)
	err := r.patch(ctx, base, ak, nil)
	r.superseded.forget(ak.UID)
	return client.IgnoreNotFound(err)
}

// sanitized replaces an API error about a Secret write by one that keeps its status (so that conflicts are
// still recognised) but none of the server's text, which could echo the object and so the key.
func sanitized(err error, what string) error {
	status := apierrors.APIStatus(nil)
	if !errors.As(err, &status) {
		return fmt.Errorf("%s: request failed", what)
	}
	s := status.Status()
	msg := fmt.Sprintf("%s: %s", what, s.Reason)
	if s.Details != nil {
		// Field paths say what was refused; the values could hold the key and are left out.
		for _, c := range s.Details.Causes {
			if c.Field != "" {
				msg += fmt.Sprintf(" (%s: %s)", c.Field, c.Type)
			}
		}
	}
	return &apierrors.StatusError{ErrStatus: metav1.Status{Status: s.Status, Code: s.Code, Reason: s.Reason, Message: msg}}
}
