package v1alpha1

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

var scopePattern = regexp.MustCompile(`^[a-z0-9]+([._-][a-z0-9]+)*:[a-z0-9]+([._-][a-z0-9]+)*$`)

// MinDuration is the shortest period, lifetime or rotation accepted.
const MinDuration = time.Minute

// Validate checks a spec the way the CRD schema and its CEL rules do, so that keysmith refuses to act on a
// spec that reached it without admission (an older CRD, a direct etcd write). The messages match the CRD's.
func (s *ApiKeySpec) Validate() field.ErrorList {
	var errs field.ErrorList
	p := field.NewPath("spec")
	switch n := len(s.Scopes); {
	case n == 0:
		errs = append(errs, field.Required(p.Child("scopes"), "at least one scope is required"))
	case n > 64:
		errs = append(errs, field.TooMany(p.Child("scopes"), n, 64))
	}
	seen := map[string]bool{}
	for i, sc := range s.Scopes {
		if len(sc) > 128 || !scopePattern.MatchString(sc) {
			errs = append(errs, field.Invalid(p.Child("scopes").Index(i), sc, "a scope is resource:action in lowercase, for example users:read"))
		}
		if seen[sc] {
			errs = append(errs, field.Duplicate(p.Child("scopes").Index(i), sc))
		}
		seen[sc] = true
	}
	if s.Environment != "" && s.Environment != EnvironmentLive && s.Environment != EnvironmentTest {
		errs = append(errs, field.NotSupported(p.Child("environment"), s.Environment, []string{"live", "test"}))
	}
	if msgs := validation.IsDNS1123Subdomain(s.SecretName); len(msgs) > 0 {
		errs = append(errs, field.Invalid(p.Child("secretName"), s.SecretName, strings.Join(msgs, "; ")))
	}
	if s.SecretTemplate != nil {
		for k := range s.SecretTemplate.Labels {
			if k == LabelManagedBy || strings.HasPrefix(k, "keysmith.dev/") {
				errs = append(errs, field.Forbidden(p.Child("secretTemplate", "labels").Key(k), "secretTemplate.labels must not set app.kubernetes.io/managed-by or keys under keysmith.dev/"))
			}
		}
	}
	if s.ExpiresAfter != nil && s.ExpiresAfter.Duration < MinDuration {
		errs = append(errs, field.Invalid(p.Child("expiresAfter"), s.ExpiresAfter.Duration.String(), "expiresAfter must be at least 1m"))
	}
	if r := s.Rotation; r != nil {
		if r.Period.Duration < MinDuration {
			errs = append(errs, field.Invalid(p.Child("rotation", "period"), r.Period.Duration.String(), "rotation.period must be at least 1m"))
		}
		if r.Overlap != nil && (r.Overlap.Duration < 0 || r.Overlap.Duration >= r.Period.Duration) {
			errs = append(errs, field.Invalid(p.Child("rotation", "overlap"), r.Overlap.Duration.String(), "rotation.overlap must be shorter than rotation.period"))
		}
	}
	return errs
}

// Effective returns the settings keysmith applies: the spec plus defaults. It fails when the combination
// cannot work (a key that would expire before its successor is issued).
func (s *ApiKeySpec) Effective() (EffectiveSettings, error) {
	e := EffectiveSettings{Environment: s.Environment, ExpiresAfter: durationOr(s.ExpiresAfter, DefaultExpiresAfter)}
	if e.Environment == "" {
		e.Environment = EnvironmentLive
	}
	if r := s.Rotation; r != nil {
		overlap := min(MaxDefaultOverlap, r.Period.Duration/2)
		if r.Overlap != nil {
			overlap = r.Overlap.Duration
		}
		e.RotationPeriod = durationPtr(r.Period.Duration)
		e.Overlap = durationPtr(overlap)
		if r.Period.Duration+overlap > e.ExpiresAfter.Duration {
			return e, fmt.Errorf("rotation.period (%s) + overlap (%s%s) exceeds the key lifetime (%s%s): a key would expire before its successor is issued; set a shorter period or overlap, or a longer expiresAfter",
				r.Period.Duration, overlap, defaultNote(r.Overlap == nil), e.ExpiresAfter.Duration, defaultNote(s.ExpiresAfter == nil))
		}
	}
	return e, nil
}

func defaultNote(isDefault bool) string {
	if isDefault {
		return ", the default"
	}
	return ""
}
