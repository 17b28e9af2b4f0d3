package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/metrics"
	"github.com/keysmith-dev/keysmith/internal/policy"
	"github.com/keysmith-dev/keysmith/internal/rotation"
)

// evaluatePolicies finds the ApiKeyPolicies that select the ApiKey's namespace and evaluates them.
func (r *ApiKeyReconciler) evaluatePolicies(ctx context.Context, ak *v1alpha1.ApiKey) (policy.Result, error) {
	list := &v1alpha1.ApiKeyPolicyList{}
	if err := r.Client.List(ctx, list); err != nil {
		return policy.Result{}, fmt.Errorf("listing ApiKeyPolicies: %w", err)
	}
	var selected []v1alpha1.ApiKeyPolicy
	if len(list.Items) > 0 {
		ns := namespaceMeta()
		if err := r.Client.Get(ctx, types.NamespacedName{Name: ak.Namespace}, ns); err != nil {
			return policy.Result{}, fmt.Errorf("reading namespace %s: %w", ak.Namespace, err)
		}
		var err error
		if selected, err = policy.Select(list.Items, ns.Labels); err != nil {
			return policy.Result{}, err
		}
	}
	res := policy.Evaluate(selected, &ak.Spec)
	if r.RequirePolicy {
		res = policy.RequireGrant(res, ak.Namespace)
	}
	return res, nil
}

// enforce handles an ApiKey that breaks a policy: no new key and no rotation, and existing keys are
// granted only the scopes the policies allow (Block), or with Revoke every key revoked and the Secret
// emptied. Ready=False, Stalled, reason PolicyViolation, one Warning event.
func (r *ApiKeyReconciler) enforce(ctx context.Context, ak *v1alpha1.ApiKey, now time.Time, pol policy.Result) error {
	msg := fmt.Sprintf("The ApiKey breaks %d policy rule(s); no key is issued or rotated (enforcement %s): %s",
		len(pol.Violations), pol.Enforcement, strings.Join(pol.Violations, "; "))
	st, requests := requested(ak, now)
	if pol.Enforcement != v1alpha1.EnforcementRevoke {
		st.Keys = withGrant(st.Keys, pol.Grant(ak.Spec.Scopes))
		if err := r.stallWith(ctx, ak, st, now, v1alpha1.ReasonPolicyViolation, v1alpha1.EventPolicyViolation, msg); err != nil {
			return err
		}
		return r.afterRequests(ctx, ak, requests)
	}
	// Revocation and the stall go to status in one write, before the Secret is emptied.
	revoked := rotation.RevokeAll(st.Keys, now, v1alpha1.RevokedPolicy)
	if err := r.stallWith(ctx, ak, st, now, v1alpha1.ReasonPolicyViolation, v1alpha1.EventPolicyViolation, msg); err != nil {
		return err
	}
	r.recordTransitions(ak, requests)
	if len(revoked) > 0 {
		metrics.Revocations.WithLabelValues(v1alpha1.RevokedPolicy).Add(float64(len(revoked)))
		r.Recorder.Eventf(ak, nil, corev1.EventTypeWarning, v1alpha1.EventKeyRevoked, "Revoke",
			"Revoked key(s) %s: the ApiKey breaks a policy with enforcement Revoke", strings.Join(revoked, ", "))
	}
	return r.emptyOwnSecret(ctx, ak)
}

// apiKeysForPolicy maps a policy change to the ApiKeys it selects now or applied to before.
func (r *ApiKeyReconciler) apiKeysForPolicy(ctx context.Context, obj client.Object) []ctrl.Request {
	p, _ := obj.(*v1alpha1.ApiKeyPolicy)
	sel := labels.Everything()
	if p != nil && p.Spec.NamespaceSelector != nil {
		if s, err := metav1.LabelSelectorAsSelector(p.Spec.NamespaceSelector); err == nil {
			sel = s
		}
	}
	selectedNS := map[string]bool{}
	if !sel.Empty() {
		nsList := &metav1.PartialObjectMetadataList{}
		nsList.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NamespaceList"))
		if err := r.Client.List(ctx, nsList, client.MatchingLabelsSelector{Selector: sel}); err != nil {
			return nil
		}
		for _, ns := range nsList.Items {
			selectedNS[ns.Name] = true
		}
	}
	aks := &v1alpha1.ApiKeyList{}
	if err := r.Client.List(ctx, aks); err != nil {
		return nil
	}
	var out []ctrl.Request
	for _, ak := range aks.Items {
		applied := ak.Status.Effective != nil && slices.Contains(ak.Status.Effective.Policies, obj.GetName())
		if sel.Empty() || selectedNS[ak.Namespace] || applied || conditionIs(&ak, v1alpha1.ConditionStalled, v1alpha1.ReasonPolicyViolation) {
			out = append(out, ctrl.Request{NamespacedName: types.NamespacedName{Namespace: ak.Namespace, Name: ak.Name}})
		}
	}
	return out
}

// apiKeysInNamespace maps a namespace label change to the ApiKeys in it.
func (r *ApiKeyReconciler) apiKeysInNamespace(ctx context.Context, obj client.Object) []ctrl.Request {
	aks := &v1alpha1.ApiKeyList{}
	if err := r.Client.List(ctx, aks, client.InNamespace(obj.GetName())); err != nil {
		return nil
	}
	out := make([]ctrl.Request, 0, len(aks.Items))
	for _, ak := range aks.Items {
		out = append(out, ctrl.Request{NamespacedName: types.NamespacedName{Namespace: ak.Namespace, Name: ak.Name}})
	}
	return out
}

func namespaceMeta() *metav1.PartialObjectMetadata {
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	return ns
}
