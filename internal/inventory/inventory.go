// Package inventory turns ApiKeys into what people read about them: one Row per ApiKey with the columns
// of `kubectl apikey list` (and of the dashboard's table), its warnings, and the Timeline of one ApiKey's
// keys. It is pure: no client, no clock; the caller passes the ApiKey, the time and, if it can read them,
// the ApiKeyPolicies that select the ApiKey's namespace.
//
// Nothing here holds or returns key material: an ApiKey's status has only ids and hashes, and Rows and
// Events carry ids only.
package inventory

import (
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/policy"
)

// DefaultUnusedWindow is how long an ApiKey with a valid key may go without a use before it is flagged
// "unused", when neither its spec nor a policy sets revokeUnusedAfter: 30 days, the window of the
// KeysmithApiKeyUnused alert (config/prometheus/rules.yaml). With revokeUnusedAfter set, that is the window.
const DefaultUnusedWindow = 30 * 24 * time.Hour

// Row is one ApiKey as `kubectl apikey list` and the dashboard show it.
type Row struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Ready is the Ready condition's status ("True", "False", "Unknown"), "" before keysmith wrote status.
	Ready string `json:"ready"`
	// Reason and Message are the Ready condition's.
	Reason  string   `json:"reason,omitempty"`
	Message string   `json:"message,omitempty"`
	Scopes  []string `json:"scopes"`
	// Environment is live or test.
	Environment  v1alpha1.Environment `json:"environment"`
	SecretName   string               `json:"secretName"`
	CurrentKeyID string               `json:"currentKeyID,omitempty"`
	// ValidKeys counts the keys a verifier accepts now (Active and Retiring).
	ValidKeys int `json:"validKeys"`
	// NextRotationAt is when keysmith next rotates the current key; NextRotation says it relatively ("in 29d").
	NextRotationAt *time.Time `json:"nextRotationAt,omitempty"`
	NextRotation   string     `json:"nextRotation,omitempty"`
	// ExpiresAt is the current key's notAfter; Expires says it relatively ("in 3d", "2h ago").
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	Expires   string     `json:"expires,omitempty"`
	// LastUsedAt is the newest use of any of the ApiKey's keys; LastUsed is "never", "2h ago", or
	// "unused 41d" once the ApiKey has gone unused for its unused window (counted from the current key's
	// issue time when it was never used).
	LastUsedAt *time.Time `json:"lastUsedAt,omitempty"`
	LastUsed   string     `json:"lastUsed"`
	Disabled   bool       `json:"disabled,omitempty"`
	Deleting   bool       `json:"deleting,omitempty"`
	// Policies are the ApiKeyPolicies that apply (status.effective, or the policies passed in).
	Policies []string `json:"policies,omitempty"`
	// ExpiryWarning and UnusedWindow are the windows the warnings were computed with (Go durations).
	ExpiryWarning string `json:"expiryWarning"`
	UnusedWindow  string `json:"unusedWindow"`
	// Warnings, most severe first; empty when all is well.
	Warnings []Warning `json:"warnings,omitempty"`
	// Created is the ApiKey's creation time.
	Created time.Time `json:"created"`
}

// WarningKind names what is wrong with an ApiKey.
type WarningKind string

const (
	// WarnPolicyViolation: an ApiKeyPolicy forbids the spec (Stalled, reason PolicyViolation, or a
	// violation of the policies passed in that keysmith has not recorded yet).
	WarnPolicyViolation WarningKind = "PolicyViolation"
	// WarnStalled: keysmith cannot go on without a person (Stalled=True); Reason says why.
	WarnStalled WarningKind = "Stalled"
	// WarnNotReady: Ready=False for a reason that is neither progress nor on purpose (a revoked current key).
	WarnNotReady WarningKind = "NotReady"
	// WarnExpired: the current key's notAfter has passed.
	WarnExpired WarningKind = "Expired"
	// WarnExpiring: the current key expires within the expiry warning and no rotation replaces it before.
	WarnExpiring WarningKind = "Expiring"
	// WarnUnused: no key of the ApiKey was used within the unused window, or its current key was revoked
	// for that (reason Unused).
	WarnUnused WarningKind = "Unused"
	// WarnDisabled: spec.disabled is true (on purpose: severity info).
	WarnDisabled WarningKind = "Disabled"
	// WarnDeleting: the ApiKey is being deleted (severity info).
	WarnDeleting WarningKind = "Deleting"
)

// Severities of warnings.
const (
	SeverityWarning = "warning"
	SeverityInfo    = "info"
)

var kindOrder = []WarningKind{WarnPolicyViolation, WarnStalled, WarnNotReady, WarnExpired, WarnExpiring, WarnUnused, WarnDisabled, WarnDeleting}

// Warning is one thing to look at.
type Warning struct {
	Kind     WarningKind `json:"kind"`
	Severity string      `json:"severity"`
	// Label is the short text of list's WARNINGS column: "expires in 3d", "stalled: SecretConflict".
	Label string `json:"label"`
	// Reason is the condition reason behind it, if any.
	Reason string `json:"reason,omitempty"`
	// Message explains it (a condition's message, or one written here).
	Message string `json:"message,omitempty"`
	// At is the instant it is about (the expiry, the last use), if any.
	At *time.Time `json:"at,omitempty"`
}

// Compute returns the Row of k at now. policies are the ApiKeyPolicies that select k's namespace, if the
// caller could read them (nil otherwise): they give the windows when keysmith has not written
// status.effective yet, and violations keysmith has not recorded yet.
func Compute(k *v1alpha1.ApiKey, now time.Time, policies []v1alpha1.ApiKeyPolicy) Row {
	st := &k.Status
	r := Row{
		Namespace:    k.Namespace,
		Name:         k.Name,
		Scopes:       slices.Clone(k.Spec.Scopes),
		SecretName:   k.Spec.SecretName,
		CurrentKeyID: st.CurrentKeyID,
		Disabled:     k.Spec.Disabled,
		Deleting:     k.DeletionTimestamp != nil,
		Created:      k.CreationTimestamp.Time,
	}
	if r.Scopes == nil {
		r.Scopes = []string{}
	}
	ready := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady)
	if ready != nil {
		r.Ready, r.Reason, r.Message = string(ready.Status), ready.Reason, ready.Message
	}

	var eval *policy.Result
	if policies != nil {
		res := policy.Evaluate(policies, &k.Spec)
		eval = &res
	}
	eff := settings(k, eval)
	r.Environment = eff.Environment
	r.Policies = eff.Policies
	warning := eff.ExpiryWarning.Duration
	if warning <= 0 {
		warning = v1alpha1.DefaultExpiryWarning
	}
	unused := DefaultUnusedWindow
	if eff.RevokeUnusedAfter != nil && eff.RevokeUnusedAfter.Duration > 0 {
		unused = eff.RevokeUnusedAfter.Duration
	}
	r.ExpiryWarning, r.UnusedWindow = warning.String(), unused.String()

	for _, key := range st.Keys {
		if valid(key, now) {
			r.ValidKeys++
		}
	}
	if st.NextRotationAt != nil {
		t := st.NextRotationAt.Time
		r.NextRotationAt, r.NextRotation = &t, Relative(t, now)
	}
	cur := find(st.Keys, st.CurrentKeyID)
	if cur != nil && cur.State != v1alpha1.KeyRevoked {
		t := cur.NotAfter.Time
		r.ExpiresAt, r.Expires = &t, Relative(t, now)
	}
	if st.LastUsedAt != nil {
		t := st.LastUsedAt.Time
		r.LastUsedAt = &t
	}

	add := func(w Warning) { r.Warnings = append(r.Warnings, w) }
	stalled := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionStalled)
	if stalled != nil && stalled.Status != metav1.ConditionTrue {
		stalled = nil
	}
	notReady := ""
	if ready != nil && ready.Status != metav1.ConditionTrue {
		notReady = ready.Reason
	}
	reasonIs := func(reason string) (string, bool) {
		if stalled != nil && stalled.Reason == reason {
			return stalled.Message, true
		}
		if notReady == reason {
			return ready.Message, true
		}
		return "", false
	}

	// Idle time: since the newest use of any key, else since the current key's issue (as the alert).
	idle, idleSince := time.Duration(0), time.Time{}
	if cur != nil && valid(*cur, now) {
		idleSince = cur.IssuedAt.Time
		if st.LastUsedAt != nil {
			idleSince = st.LastUsedAt.Time
		}
		idle = now.Sub(idleSince)
	}
	isUnused := cur != nil && valid(*cur, now) && idle >= unused && !r.Disabled && !r.Deleting
	switch {
	case isUnused:
		r.LastUsed = "unused " + Human(idle)
	case st.LastUsedAt == nil:
		r.LastUsed = "never"
	default:
		r.LastUsed = Relative(st.LastUsedAt.Time, now)
	}

	switch {
	case r.Deleting:
		add(Warning{Kind: WarnDeleting, Severity: SeverityInfo, Label: "deleting", Reason: v1alpha1.ReasonDeleting,
			Message: "the ApiKey is being deleted: its keys are revoked and its Secret deleted"})
	case r.Disabled:
		add(Warning{Kind: WarnDisabled, Severity: SeverityInfo, Label: "disabled", Reason: v1alpha1.ReasonDisabled,
			Message: "spec.disabled is true: every key is revoked; `kubectl apikey enable` issues a fresh key"})
	default:
		r.Warnings = appendProblems(r.Warnings, k, now, problemInput{
			cur: cur, stalled: stalled, ready: ready, notReady: notReady, reasonIs: reasonIs, eval: eval,
			warning: warning, unused: unused, isUnused: isUnused, idle: idle, idleSince: idleSince,
		})
	}
	slices.SortStableFunc(r.Warnings, func(a, b Warning) int {
		return slices.Index(kindOrder, a.Kind) - slices.Index(kindOrder, b.Kind)
	})
	return r
}

type problemInput struct {
	cur             *v1alpha1.IssuedKey
	stalled, ready  *metav1.Condition
	notReady        string
	reasonIs        func(string) (string, bool)
	eval            *policy.Result
	warning, unused time.Duration
	isUnused        bool
	idle            time.Duration
	idleSince       time.Time
}

func appendProblems(ws []Warning, k *v1alpha1.ApiKey, now time.Time, in problemInput) []Warning {
	st := &k.Status
	cur := in.cur

	// Policy violation: recorded by keysmith, or found in the policies passed in.
	if msg, ok := in.reasonIs(v1alpha1.ReasonPolicyViolation); ok {
		ws = append(ws, Warning{Kind: WarnPolicyViolation, Severity: SeverityWarning, Label: "policy violation",
			Reason: v1alpha1.ReasonPolicyViolation, Message: msg})
	} else if in.eval != nil && len(in.eval.Violations) > 0 {
		ws = append(ws, Warning{Kind: WarnPolicyViolation, Severity: SeverityWarning, Label: "policy violation",
			Message: strings.Join(in.eval.Violations, "; ") + " (not yet recorded by keysmith)"})
	}

	// Expired, then expiring.
	expiredMsg, expiredReason := in.reasonIs(v1alpha1.ReasonExpired)
	switch {
	case cur != nil && cur.State != v1alpha1.KeyRevoked && (cur.State == v1alpha1.KeyExpired || !now.Before(cur.NotAfter.Time)):
		t := cur.NotAfter.Time
		msg := expiredMsg
		if msg == "" {
			msg = "key " + cur.ID + " expired at " + t.UTC().Format(time.RFC3339)
		}
		ws = append(ws, Warning{Kind: WarnExpired, Severity: SeverityWarning, Label: "expired " + Relative(t, now),
			Reason: reasonIf(expiredReason, v1alpha1.ReasonExpired), Message: msg, At: &t})
	case expiredReason:
		ws = append(ws, Warning{Kind: WarnExpired, Severity: SeverityWarning, Label: "expired",
			Reason: v1alpha1.ReasonExpired, Message: expiredMsg})
	case cur != nil && cur.State == v1alpha1.KeyActive:
		t := cur.NotAfter.Time
		cond := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionExpiringSoon)
		flagged := cond != nil && cond.Status == metav1.ConditionTrue
		rotatesInTime := st.NextRotationAt != nil && st.NextRotationAt.Before(&cur.NotAfter) && in.stalled == nil
		if flagged || (t.Sub(now) <= in.warning && !rotatesInTime) {
			msg := "key " + cur.ID + " expires at " + t.UTC().Format(time.RFC3339) + " and no rotation will replace it before; `kubectl apikey rotate` issues a fresh key"
			reason := ""
			if flagged {
				msg, reason = cond.Message, cond.Reason
			}
			ws = append(ws, Warning{Kind: WarnExpiring, Severity: SeverityWarning, Label: "expires " + Relative(t, now),
				Reason: reason, Message: msg, At: &t})
		}
	}

	// Unused: revoked for it, or idle for the window.
	if msg, ok := in.reasonIs(v1alpha1.ReasonUnused); ok {
		ws = append(ws, Warning{Kind: WarnUnused, Severity: SeverityWarning, Label: "revoked unused",
			Reason: v1alpha1.ReasonUnused, Message: msg})
	} else if in.isUnused {
		t := in.idleSince
		what := "last used"
		if st.LastUsedAt == nil {
			what = "never used; its current key was issued"
		}
		ws = append(ws, Warning{Kind: WarnUnused, Severity: SeverityWarning, Label: "unused " + Human(in.idle),
			Message: "no key of this ApiKey was used for " + Human(in.idle) + " (" + what + " " + t.UTC().Format(time.RFC3339) +
				"; unused window " + in.unused.String() + "): delete it, or set spec.revokeUnusedAfter", At: &t})
	}

	// Stalled for another reason, or not Ready for a reason that is not progress.
	handled := []string{v1alpha1.ReasonPolicyViolation, v1alpha1.ReasonExpired, v1alpha1.ReasonUnused}
	if in.stalled != nil && !slices.Contains(handled, in.stalled.Reason) {
		ws = append(ws, Warning{Kind: WarnStalled, Severity: SeverityWarning, Label: "stalled: " + in.stalled.Reason,
			Reason: in.stalled.Reason, Message: in.stalled.Message})
	} else if in.stalled == nil && in.notReady != "" && !slices.Contains(handled, in.notReady) &&
		!slices.Contains([]string{v1alpha1.ReasonIssuing, v1alpha1.ReasonDeleting, v1alpha1.ReasonDisabled}, in.notReady) {
		ws = append(ws, Warning{Kind: WarnNotReady, Severity: SeverityWarning, Label: "not ready: " + in.notReady,
			Reason: in.notReady, Message: in.ready.Message})
	}
	return ws
}

func reasonIf(ok bool, reason string) string {
	if ok {
		return reason
	}
	return ""
}

// settings are status.effective, or, before keysmith wrote it, what the spec and policies give.
func settings(k *v1alpha1.ApiKey, eval *policy.Result) v1alpha1.EffectiveSettings {
	if e := k.Status.Effective; e != nil {
		out := *e
		if eval != nil && len(out.Policies) == 0 {
			out.Policies = eval.Applied
		}
		return out
	}
	d := v1alpha1.BuiltinDefaults
	var applied []string
	if eval != nil {
		d, applied = eval.Defaults, eval.Applied
	}
	e, _ := k.Spec.EffectiveWith(d) // an impossible combination still has its windows
	e.Policies = applied
	return e
}

func find(ks []v1alpha1.IssuedKey, id string) *v1alpha1.IssuedKey {
	if id == "" {
		return nil
	}
	for i := range ks {
		if ks[i].ID == id {
			return &ks[i]
		}
	}
	return nil
}

// valid reports whether a verifier accepts k at now.
func valid(k v1alpha1.IssuedKey, now time.Time) bool {
	return (k.State == v1alpha1.KeyActive || k.State == v1alpha1.KeyRetiring) && now.Before(k.NotAfter.Time)
}

// WarningsText is the WARNINGS column: the labels joined by ", ", "" when all is well.
func (r Row) WarningsText() string {
	labels := make([]string, len(r.Warnings))
	for i, w := range r.Warnings {
		labels[i] = w.Label
	}
	return strings.Join(labels, ", ")
}

// Flagged reports whether the Row has a warning of severity warning (the dashboard's top list).
func (r Row) Flagged() bool {
	return slices.ContainsFunc(r.Warnings, func(w Warning) bool { return w.Severity == SeverityWarning })
}
