package controllers

import (
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/metrics"
	"github.com/keysmith-dev/keysmith/internal/rotation"
)

// recordIssue emits the one event that says why a key was issued. Events carry key ids, never keys.
func (r *ApiKeyReconciler) recordIssue(ak *v1alpha1.ApiKey, plan rotation.Plan, id string) {
	metrics.Rotations.WithLabelValues(string(plan.Issue)).Inc()
	previous := plan.CurrentKeyID
	switch plan.Issue {
	case rotation.TriggerInitial:
		r.Recorder.Eventf(ak, nil, corev1.EventTypeNormal, v1alpha1.EventKeyIssued, "Issue", "Issued key %s into Secret %s", id, ak.Spec.SecretName)
	case rotation.TriggerScheduled, rotation.TriggerManual:
		r.Recorder.Eventf(ak, nil, corev1.EventTypeNormal, v1alpha1.EventKeyRotated, "Rotate", "Rotated to key %s (%s); previous key %s %s",
			id, plan.Issue, orNone(previous), previousFate(plan, previous))
	case rotation.TriggerRevoked:
		r.Recorder.Eventf(ak, nil, corev1.EventTypeNormal, v1alpha1.EventKeyIssued, "Issue", "Issued key %s to replace revoked key %s (no overlap)", id, orNone(previous))
	case rotation.TriggerEnabled:
		r.Recorder.Eventf(ak, nil, corev1.EventTypeNormal, v1alpha1.EventKeyIssued, "Issue", "Issued key %s: the ApiKey is enabled again", id)
	case rotation.TriggerSecretLost, rotation.TriggerSecretTampered:
		r.Recorder.Eventf(ak, nil, corev1.EventTypeWarning, v1alpha1.EventSecretRestored, "Restore",
			"Secret %s no longer held the current key (%s: deleted, edited, or an interrupted write); issued key %s, previous key %s %s",
			ak.Spec.SecretName, plan.Issue, id, orNone(previous), previousFate(plan, previous))
	}
}

// recordTransitions emits one event per key that expired or retired in this step, other than the
// previous key of a rotation, which the rotation event already describes.
func (r *ApiKeyReconciler) recordTransitions(ak *v1alpha1.ApiKey, plan rotation.Plan) {
	if plan.RevokeProblem != "" {
		r.Recorder.Eventf(ak, nil, corev1.EventTypeWarning, v1alpha1.EventInvalidAnnotation, "Revoke", "%s", plan.RevokeProblem)
	}
	revoked := map[string][]string{}
	for _, t := range plan.Transitions {
		if t.To == v1alpha1.KeyRevoked {
			for _, k := range plan.Keys {
				if k.ID == t.ID {
					revoked[k.Reason] = append(revoked[k.Reason], k.ID)
				}
			}
		}
	}
	for _, reason := range []string{v1alpha1.RevokedManual, v1alpha1.RevokedDisabled, v1alpha1.RevokedUnused} {
		if ids := revoked[reason]; len(ids) > 0 {
			metrics.Revocations.WithLabelValues(reason).Add(float64(len(ids)))
			typ := corev1.EventTypeNormal
			if reason == v1alpha1.RevokedUnused {
				typ = corev1.EventTypeWarning
			}
			r.Recorder.Eventf(ak, nil, typ, v1alpha1.EventKeyRevoked, "Revoke", "Revoked key(s) %s (%s); the verifier refuses them from now on", strings.Join(ids, ", "), reason)
		}
	}
	for _, t := range plan.Transitions {
		if plan.Issue != rotation.TriggerNone && t.ID == plan.CurrentKeyID {
			continue
		}
		switch {
		case t.From == v1alpha1.KeyRetiring && t.To == v1alpha1.KeyExpired:
			r.Recorder.Eventf(ak, nil, corev1.EventTypeNormal, v1alpha1.EventKeyRetired, "Retire", "Key %s retired at the end of its overlap", t.ID)
		case t.From == v1alpha1.KeyActive && t.To == v1alpha1.KeyExpired:
			r.Recorder.Eventf(ak, nil, corev1.EventTypeWarning, v1alpha1.EventKeyExpired, "Expire", "Key %s expired", t.ID)
		}
	}
}

func previousFate(plan rotation.Plan, id string) string {
	for _, k := range plan.Keys {
		if k.ID != id {
			continue
		}
		switch k.State {
		case v1alpha1.KeyRetiring:
			return "stays valid until " + k.NotAfter.UTC().Format("2006-01-02T15:04:05Z")
		case v1alpha1.KeyExpired:
			return "is no longer accepted"
		}
	}
	return ""
}

func orNone(id string) string {
	if id == "" {
		return "(none)"
	}
	return id
}
