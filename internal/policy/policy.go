// Package policy evaluates ApiKeyPolicies against an ApiKey as pure functions: which policies select its
// namespace, the defaults they set, and every rule the ApiKey breaks.
package policy

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
)

// Result is what the policies that select an ApiKey make of it.
type Result struct {
	// Applied names the selecting policies, sorted.
	Applied []string
	// Defaults replace the built-in ones for what the spec leaves unset.
	Defaults v1alpha1.Defaults
	// Violations name each broken rule, prefixed by its policy; empty when the ApiKey complies.
	Violations []string
	// Enforcement is Revoke when any broken policy says so, else Block.
	Enforcement v1alpha1.Enforcement
	// GrantsScopes is true when a selected policy lists allowedScopes (so that it, not whoever edits the
	// ApiKey, decides which scopes keys may carry).
	GrantsScopes bool

	// forbidden holds the spec's scopes that a selected policy does not allow; denyAll forbids every scope.
	forbidden map[string]bool
	denyAll   bool
}

// Grant returns the scopes of spec that keys may be granted: every scope the selected policies allow,
// in spec order. Keys carry only what was granted, so a Block keeps existing keys valid for the allowed
// scopes only.
func (r Result) Grant(scopes []string) []string {
	if r.denyAll {
		return []string{}
	}
	out := make([]string, 0, len(scopes))
	for _, s := range scopes {
		if !r.forbidden[s] {
			out = append(out, s)
		}
	}
	return out
}

// RequireGrant makes an ApiKey in a namespace that no policy grants scopes to a violation (deny by
// default, `keysmith manager --require-policy`): it gets no key, and its keys are granted nothing.
func RequireGrant(r Result, namespace string) Result {
	if r.GrantsScopes {
		return r
	}
	r.Violations = append(r.Violations, fmt.Sprintf("no ApiKeyPolicy with allowedScopes selects namespace %s, and this cluster requires one (keysmith --require-policy); ask your platform team for a policy", namespace))
	r.denyAll = true
	return r
}

// Select returns the policies whose namespaceSelector matches the namespace labels.
func Select(all []v1alpha1.ApiKeyPolicy, nsLabels map[string]string) ([]v1alpha1.ApiKeyPolicy, error) {
	var out []v1alpha1.ApiKeyPolicy
	for _, p := range all {
		sel := labels.Everything()
		if p.Spec.NamespaceSelector != nil {
			s, err := metav1.LabelSelectorAsSelector(p.Spec.NamespaceSelector)
			if err != nil {
				return nil, fmt.Errorf("ApiKeyPolicy %s: namespaceSelector: %w", p.Name, err)
			}
			sel = s
		}
		if sel.Matches(labels.Set(nsLabels)) {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Evaluate merges the selected policies' defaults and checks the spec against every rule. Defaults: the
// shortest defaultExpiresAfter (never above the smallest maxExpiresAfter), the shortest
// revokeUnusedAfter, the longest expiryWarning that a policy sets (else the built-in 14 days).
func Evaluate(selected []v1alpha1.ApiKeyPolicy, spec *v1alpha1.ApiKeySpec) Result {
	r := Result{Defaults: v1alpha1.BuiltinDefaults, Enforcement: v1alpha1.EnforcementBlock}
	var defaultLife, maxLife, warning time.Duration
	for _, p := range selected {
		r.Applied = append(r.Applied, p.Name)
		s := p.Spec
		defaultLife = shortest(defaultLife, get(s.DefaultExpiresAfter))
		maxLife = shortest(maxLife, get(s.MaxExpiresAfter))
		r.Defaults.RevokeUnusedAfter = shortest(r.Defaults.RevokeUnusedAfter, get(s.RevokeUnusedAfter))
		warning = max(warning, get(s.ExpiryWarning))
	}
	if defaultLife > 0 {
		r.Defaults.ExpiresAfter = defaultLife
	}
	if warning > 0 {
		r.Defaults.ExpiryWarning = warning
	}
	if maxLife > 0 && r.Defaults.ExpiresAfter > maxLife {
		r.Defaults.ExpiresAfter = maxLife
	}

	eff, _ := spec.EffectiveWith(r.Defaults) // combination errors are reported by the caller's validation
	env := eff.Environment
	for _, p := range selected {
		s := p.Spec
		var broken []string
		if len(s.AllowedScopes) > 0 {
			r.GrantsScopes = true
			for _, sc := range spec.Scopes {
				if !allowed(s.AllowedScopes, sc) {
					if r.forbidden == nil {
						r.forbidden = map[string]bool{}
					}
					r.forbidden[sc] = true
					broken = append(broken, fmt.Sprintf("scope %s is not allowed (allowed: %s)", sc, join(s.AllowedScopes)))
				}
			}
		}
		if len(s.AllowedEnvironments) > 0 && !slices.Contains(s.AllowedEnvironments, env) {
			broken = append(broken, fmt.Sprintf("environment %s is not allowed (allowed: %s)", env, joinEnv(s.AllowedEnvironments)))
		}
		if m := get(s.MaxExpiresAfter); m > 0 && eff.ExpiresAfter.Duration > m {
			broken = append(broken, fmt.Sprintf("expiresAfter %s exceeds maxExpiresAfter %s", eff.ExpiresAfter.Duration, m))
		}
		if s.RequireRotation && spec.Rotation == nil {
			broken = append(broken, "rotation is required (set spec.rotation.period)")
		}
		if m := get(s.MaxRotationPeriod); m > 0 && eff.RotationPeriod != nil && eff.RotationPeriod.Duration > m {
			broken = append(broken, fmt.Sprintf("rotation.period %s exceeds maxRotationPeriod %s", eff.RotationPeriod.Duration, m))
		}
		if s.MaxOverlap != nil && eff.RotationPeriod != nil && v1alpha1.Get(eff.Overlap) > s.MaxOverlap.Duration {
			broken = append(broken, fmt.Sprintf("rotation.overlap %s exceeds maxOverlap %s", v1alpha1.Get(eff.Overlap), s.MaxOverlap.Duration))
		}
		for _, b := range broken {
			r.Violations = append(r.Violations, fmt.Sprintf("ApiKeyPolicy %s: %s", p.Name, b))
		}
		if len(broken) > 0 && s.Enforcement == v1alpha1.EnforcementRevoke {
			r.Enforcement = v1alpha1.EnforcementRevoke
		}
	}
	return r
}

// Matches reports whether scope matches pattern (`users:read`, `audit:*`, `*:read`, `*:*`).
func Matches(pattern v1alpha1.ScopePattern, scope string) bool {
	pr, pa, ok1 := strings.Cut(string(pattern), ":")
	sr, sa, ok2 := strings.Cut(scope, ":")
	return ok1 && ok2 && (pr == "*" || pr == sr) && (pa == "*" || pa == sa)
}

func allowed(patterns []v1alpha1.ScopePattern, scope string) bool {
	for _, p := range patterns {
		if Matches(p, scope) {
			return true
		}
	}
	return false
}

func join(ps []v1alpha1.ScopePattern) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = string(p)
	}
	return strings.Join(s, ", ")
}

func joinEnv(es []v1alpha1.Environment) string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = string(e)
	}
	return strings.Join(s, ", ")
}

func get(d *metav1.Duration) time.Duration { return v1alpha1.Get(d) }

// shortest returns the smaller positive duration; 0 means unset.
func shortest(a, b time.Duration) time.Duration {
	switch {
	case a == 0:
		return b
	case b == 0:
		return a
	}
	return min(a, b)
}
