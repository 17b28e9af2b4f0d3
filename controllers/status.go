package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/policy"
	"github.com/keysmith-dev/keysmith/internal/rotation"
)

// effective is an ApiKey's validated settings.
type effective struct {
	settings  v1alpha1.EffectiveSettings
	lifecycle rotation.Settings
	// grant is the scopes keys may carry: the spec's, less what a policy forbids.
	grant []string
}

// validate checks the spec again before acting (admission may have been bypassed) and applies the
// defaults (built in, or from the ApiKeyPolicies that apply).
func validate(ak *v1alpha1.ApiKey, pol policy.Result) (effective, error) {
	if errs := ak.Spec.Validate(); len(errs) > 0 {
		return effective{}, withoutValues(errs)
	}
	s, err := ak.Spec.EffectiveWith(pol.Defaults)
	if err != nil {
		return effective{}, err
	}
	s.Policies = pol.Applied
	return effective{settings: s, grant: pol.Grant(ak.Spec.Scopes), lifecycle: rotation.Settings{
		Lifetime:      s.ExpiresAfter.Duration,
		Period:        v1alpha1.Get(s.RotationPeriod),
		Overlap:       v1alpha1.Get(s.Overlap),
		UnusedAfter:   v1alpha1.Get(s.RevokeUnusedAfter),
		ExpiryWarning: s.ExpiryWarning.Duration,
	}}, nil
}

// withoutValues describes validation errors by field and rule only: the values are user input (a key
// pasted into the wrong field, for one) and go into a condition and an event, which never repeat it.
func withoutValues(errs field.ErrorList) error {
	parts := make([]string, 0, len(errs))
	for _, e := range errs {
		part := e.Field + ": " + e.Type.String()
		if e.Detail != "" {
			part += ": " + e.Detail
		}
		parts = append(parts, part)
	}
	return errors.New(strings.Join(parts, "; "))
}

// desiredStatus is the status once the plan is carried out. issued is the key list with a new key, or nil.
func desiredStatus(ak *v1alpha1.ApiKey, s effective, plan rotation.Plan, issued []v1alpha1.IssuedKey) v1alpha1.ApiKeyStatus {
	st := *ak.Status.DeepCopy()
	st.Keys = plan.Keys
	st.CurrentKeyID = plan.CurrentKeyID
	if issued != nil {
		st.Keys = issued
		st.CurrentKeyID = issued[0].ID
	}
	st.Keys = withGrant(st.Keys, s.grant)
	st.HandledRotateRequest = plan.HandledRotateRequest
	st.HandledRevokeRequest = plan.HandledRevokeRequest
	st.Effective = &s.settings
	st.NextRotationAt = nil
	if !plan.NextRotation.IsZero() {
		st.NextRotationAt = &metav1.Time{Time: plan.NextRotation}
	}
	st.ObservedGeneration = ak.Generation
	setExpiringSoon(&st, ak.Generation, plan)
	switch plan.Inactive {
	case v1alpha1.ReasonExpired:
		// Stalled: only a person can move it on (kstatus, Argo CD and Flux then report it as failed).
		setStalled(&st, ak.Generation, plan.Now, v1alpha1.ReasonExpired,
			"The current key has expired and rotation is not configured. Annotate the ApiKey with keysmith.dev/rotate=<any new value> to issue a fresh key.")
		return st
	case v1alpha1.ReasonUnused:
		setStalled(&st, ak.Generation, plan.Now, v1alpha1.ReasonUnused,
			"The current key was revoked because it was not used for revokeUnusedAfter. Annotate the ApiKey with keysmith.dev/rotate=<any new value> to issue a fresh key.")
		return st
	case v1alpha1.ReasonDisabled:
		setNotReady(&st, ak.Generation, plan.Now, v1alpha1.ReasonDisabled,
			"spec.disabled is true: every key is revoked and the Secret's api-key is empty. Set it to false to issue a fresh key.")
		return st
	}
	current := st.CurrentKeyID
	msg := fmt.Sprintf("Key %s is active", current)
	if st.NextRotationAt != nil {
		msg += fmt.Sprintf("; next rotation at %s", st.NextRotationAt.UTC().Format(time.RFC3339))
	} else if k := findKey(st.Keys, current); k != nil {
		msg += fmt.Sprintf("; it expires at %s", k.NotAfter.UTC().Format(time.RFC3339))
	}
	setReady(&st, ak.Generation, plan.Now, msg)
	return st
}

// withGrant returns keys with the grant recorded on every key that is still accepted (Active or
// Retiring) and none on the others. The verifiers accept a scope only when a key's grant and the current
// spec.scopes both hold it, so only keysmith, after evaluating policies, can widen what a key opens.
func withGrant(keys []v1alpha1.IssuedKey, grant []string) []v1alpha1.IssuedKey {
	out := make([]v1alpha1.IssuedKey, len(keys))
	for i, k := range keys {
		k.Scopes = nil
		if rotation.Valid(k) && len(grant) > 0 {
			k.Scopes = slices.Clone(grant)
		}
		out[i] = k
	}
	return out
}

// wellFormedScopes returns the scopes of the spec that have the shape of a scope.
func wellFormedScopes(scopes []string) []string {
	out := make([]string, 0, len(scopes))
	for _, s := range scopes {
		if v1alpha1.ValidScope(s) {
			out = append(out, s)
		}
	}
	return out
}

// revokeAll returns the status with every valid key revoked for reason, and the ids it revoked.
func revokeAll(ak *v1alpha1.ApiKey, now time.Time, reason string) (v1alpha1.ApiKeyStatus, []string) {
	st := *ak.Status.DeepCopy()
	return st, rotation.RevokeAll(st.Keys, now, reason)
}

// writeStatus writes status when it differs: an update of the status subresource carrying the
// resourceVersion it was computed from, so a conflict means another writer (or a stale cache) got there
// first, and the request is retried against fresher state. An update rather than a merge patch: the API
// server stores the object it is sent instead of rebuilding it from a patch, which measurably costs it
// less per write (docs/benchmarks.md), and the resourceVersion makes both equally safe.
func (r *ApiKeyReconciler) writeStatus(ctx context.Context, ak *v1alpha1.ApiKey, st v1alpha1.ApiKeyStatus) error {
	if equality.Semantic.DeepEqual(ak.Status, st) {
		return nil
	}
	rv := ak.ResourceVersion
	ak.Status = st
	if err := r.Client.Status().Update(ctx, ak); err != nil {
		return err
	}
	r.superseded.add(ak.UID, rv)
	return nil
}

// patch writes obj (the ApiKey or its status) as a merge patch from base with optimistic locking, and
// remembers base's resourceVersion as superseded.
func (r *ApiKeyReconciler) patch(ctx context.Context, base, obj *v1alpha1.ApiKey, w client.SubResourceWriter) error {
	var err error
	p := client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})
	if w != nil {
		err = w.Patch(ctx, obj, p)
	} else {
		err = r.Client.Patch(ctx, obj, p)
	}
	if err == nil {
		r.superseded.add(obj.UID, base.ResourceVersion)
	}
	return err
}

func findKey(ks []v1alpha1.IssuedKey, id string) *v1alpha1.IssuedKey {
	for i := range ks {
		if ks[i].ID == id {
			return &ks[i]
		}
	}
	return nil
}

// Condition setters. They are pure: they only change the status they are given.

func condition(typ string, status metav1.ConditionStatus, reason, msg string, gen int64, now time.Time) metav1.Condition {
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: gen,
		LastTransitionTime: metav1.Time{Time: now.Truncate(time.Second)}}
}

// setConditions sets Ready, Reconciling and Stalled together, so that they never contradict each other.
// The message goes on Ready and on whichever of Reconciling or Stalled is True.
func setConditions(st *v1alpha1.ApiKeyStatus, gen int64, now time.Time, ready, reconciling, stalled bool, reason, msg string) {
	for _, c := range []struct {
		typ string
		on  bool
	}{{v1alpha1.ConditionReady, ready}, {v1alpha1.ConditionReconciling, reconciling}, {v1alpha1.ConditionStalled, stalled}} {
		status, m := metav1.ConditionFalse, ""
		if c.on {
			status = metav1.ConditionTrue
		}
		if c.on || c.typ == v1alpha1.ConditionReady {
			m = msg
		}
		if !c.on && c.typ != v1alpha1.ConditionReady {
			meta.RemoveStatusCondition(&st.Conditions, c.typ)
			continue
		}
		meta.SetStatusCondition(&st.Conditions, condition(c.typ, status, reason, m, gen, now))
	}
}

func setReady(st *v1alpha1.ApiKeyStatus, gen int64, now time.Time, msg string) {
	setConditions(st, gen, now, true, false, false, v1alpha1.ReasonKeyActive, msg)
}

func setNotReady(st *v1alpha1.ApiKeyStatus, gen int64, now time.Time, reason, msg string) {
	setConditions(st, gen, now, false, false, false, reason, msg)
}

func setIssuing(st *v1alpha1.ApiKeyStatus, gen int64, now time.Time) {
	setConditions(st, gen, now, false, true, false, v1alpha1.ReasonIssuing, "Issuing the first key")
}

func setStalled(st *v1alpha1.ApiKeyStatus, gen int64, now time.Time, reason, msg string) {
	st.ObservedGeneration = gen
	setConditions(st, gen, now, false, false, true, reason, msg)
}

// setExpiringSoon sets ExpiringSoon from the plan (True when the current key expires within the warning
// and no rotation replaces it before).
func setExpiringSoon(st *v1alpha1.ApiKeyStatus, gen int64, plan rotation.Plan) {
	c := condition(v1alpha1.ConditionExpiringSoon, metav1.ConditionFalse, v1alpha1.ReasonNotExpiring, "", gen, plan.Now)
	if plan.ExpiringSoon {
		if k := findKey(st.Keys, st.CurrentKeyID); k != nil {
			c.Status, c.Reason = metav1.ConditionTrue, v1alpha1.ReasonWillExpire
			c.Message = fmt.Sprintf("Key %s expires at %s and no rotation will replace it before; annotate keysmith.dev/rotate or configure rotation", k.ID, k.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	if c.Status == metav1.ConditionFalse {
		meta.RemoveStatusCondition(&st.Conditions, c.Type)
		return
	}
	meta.SetStatusCondition(&st.Conditions, c)
}

func isReady(ak *v1alpha1.ApiKey) bool {
	return meta.IsStatusConditionTrue(ak.Status.Conditions, v1alpha1.ConditionReady)
}

func conditionIs(ak *v1alpha1.ApiKey, typ, reason string) bool {
	c := meta.FindStatusCondition(ak.Status.Conditions, typ)
	return c != nil && c.Status == metav1.ConditionTrue && c.Reason == reason
}
