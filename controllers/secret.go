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
	hash := ""
	if v := secret.Data[v1alpha1.SecretKeyAPIKey]; len(v) > 0 {
		hash = keys.Hash(string(v))
	}
	owned := metav1.IsControlledBy(secret, ak) && secret.Type == v1alpha1.SecretType
	return rotation.ClassifySecret(true, owned, hash, ak.Status.Keys, ak.Status.CurrentKeyID), nil
}

// writeSecret creates the Secret or replaces its key. existing is what observeSecret read (empty when the
// Secret is missing). An update carries existing's resourceVersion, so a concurrent change fails instead of
// being overwritten; Create fails on a Secret that appeared meanwhile, so nothing is ever adopted.
func (r *ApiKeyReconciler) writeSecret(ctx context.Context, ak *v1alpha1.ApiKey, existing *corev1.Secret, plaintext string, k v1alpha1.IssuedKey) error {
	s := existing.DeepCopy()
	create := s.ResourceVersion == ""
	if create {
		s = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ak.Namespace, Name: ak.Spec.SecretName}, Type: v1alpha1.SecretType}
		if err := controllerutil.SetControllerReference(ak, s, r.Scheme); err != nil {
			return err
		}
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
// fields, never the data.
func (r *ApiKeyReconciler) saveSecret(ctx context.Context, s *corev1.Secret, create bool, doing string) error {
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
// keysmith does not keep it.
func (r *ApiKeyReconciler) repairSecretMetadata(ctx context.Context, ak *v1alpha1.ApiKey, s *corev1.Secret) error {
	k := findKey(ak.Status.Keys, ak.Status.CurrentKeyID)
	if k == nil {
		return nil
	}
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
	return r.saveSecret(ctx, want, false, "repairing")
}

// emptySecret removes the key from the Secret (spec.disabled), keeping the Secret so that workloads
// mounting it keep starting. Only keysmith's own Secret is touched.
func (r *ApiKeyReconciler) emptySecret(ctx context.Context, s *corev1.Secret) error {
	if len(s.Data[v1alpha1.SecretKeyAPIKey]) == 0 && len(s.Data[v1alpha1.SecretKeyKeyID]) == 0 {
		return nil
	}
	empty := s.DeepCopy()
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
