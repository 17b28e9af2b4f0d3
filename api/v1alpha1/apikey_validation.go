package v1alpha1

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/keysmith-dev/keysmith/internal/keys"
)

var scopePattern = regexp.MustCompile(`^[a-z0-9]+([._-][a-z0-9]+)*:[a-z0-9]+([._-][a-z0-9]+)*$`)

// ValidScope reports whether s has the shape of a scope: resource:action in lowercase, at most 128
// characters.
func ValidScope(s string) bool { return len(s) <= 128 && scopePattern.MatchString(s) }

// holdsKey reports whether s contains a valid API key.
func holdsKey(s string) bool { return keys.ContainsKey(s) }

// MinDuration is the shortest period, lifetime or rotation accepted.
const MinDuration = time.Minute

// Limits of secretTemplate, as the CRD has them: they bound what one ApiKey makes keysmith and every
// verifier keep in memory. Label keys and values and annotation keys are also bounded by their syntax
// (qualified names of at most 253 + 1 + 63 characters, label values of at most 63).
const (
	MaxTemplateLabels                = 32
	MaxTemplateAnnotations           = 32
	MaxTemplateAnnotationValueLength = 4096 // characters
)

// The CRD's messages for secretTemplate.
const (
	msgTemplateReserved      = "secretTemplate.labels must not set app.kubernetes.io/managed-by or keys under keysmith.dev/"
	msgTemplateLabelKey      = "secretTemplate.labels keys must be qualified names: an optional DNS subdomain prefix of at most 253 characters and '/', then a name of at most 63 characters, alphanumeric at both ends with '-', '_' or '.' between"
	msgTemplateLabelValue    = "secretTemplate.labels values must have at most 63 characters, alphanumeric at both ends with '-', '_' or '.' between, or be empty"
	msgTemplateAnnotationKey = "secretTemplate.annotations keys must be qualified names: an optional DNS subdomain prefix of at most 253 characters and '/', then a name of at most 63 characters, alphanumeric at both ends with '-', '_' or '.' between"
)

// validate checks the template as the CRD does, and the annotations' total size as the API server will
// check the Secret's (a template it would refuse is refused before any key is issued). A path names the
// entry only when its key is a valid one that does not look like an API key: conditions and events
// repeat paths, never values, and a key pasted into the template must not reach them either.
func (t *SecretTemplate) validate(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	lp, ap := p.Child("labels"), p.Child("annotations")
	entry := func(p *field.Path, k string, valid bool) *field.Path {
		if valid && !holdsKey(k) {
			return p.Key(k)
		}
		return p
	}
	if n := len(t.Labels); n > MaxTemplateLabels {
		errs = append(errs, field.TooMany(lp, n, MaxTemplateLabels))
	}
	for _, k := range slices.Sorted(maps.Keys(t.Labels)) {
		v, valid := t.Labels[k], len(validation.IsQualifiedName(k)) == 0
		if k == LabelManagedBy || strings.HasPrefix(k, "keysmith.dev/") {
			errs = append(errs, field.Forbidden(entry(lp, k, valid), msgTemplateReserved))
		}
		if !valid {
			errs = append(errs, field.Invalid(lp, k, msgTemplateLabelKey))
		}
		if len(validation.IsValidLabelValue(v)) > 0 {
			errs = append(errs, field.Invalid(entry(lp, k, valid), v, msgTemplateLabelValue))
		}
	}
	if n := len(t.Annotations); n > MaxTemplateAnnotations {
		errs = append(errs, field.TooMany(ap, n, MaxTemplateAnnotations))
	}
	for _, k := range slices.Sorted(maps.Keys(t.Annotations)) {
		valid := len(validation.IsQualifiedName(strings.ToLower(k))) == 0
		if !valid {
			errs = append(errs, field.Invalid(ap, k, msgTemplateAnnotationKey))
		}
		if utf8.RuneCountInString(t.Annotations[k]) > MaxTemplateAnnotationValueLength {
			errs = append(errs, field.TooLongCharacters(entry(ap, k, valid), t.Annotations[k], MaxTemplateAnnotationValueLength))
		}
	}
	if err := apivalidation.ValidateAnnotationsSize(t.Annotations); err != nil {
		errs = append(errs, field.TooLong(ap, "", apivalidation.TotalAnnotationSizeLimitB))
	}
	return errs
}

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
	if t := s.SecretTemplate; t != nil {
		errs = append(errs, t.validate(p.Child("secretTemplate"))...)
	}
	if s.RevokeUnusedAfter != nil && s.RevokeUnusedAfter.Duration < MinDuration {
		errs = append(errs, field.Invalid(p.Child("revokeUnusedAfter"), s.RevokeUnusedAfter.Duration.String(), "revokeUnusedAfter must be at least 1m"))
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

// Effective returns the settings keysmith applies: the spec plus defaults, in whole seconds (status stores
// seconds). It fails when the combination cannot work (a key that would expire before its successor is
// issued). The overlap also applies to rotations that are not scheduled (a rotate request, a repaired
// Secret): without spec.rotation it is the smaller of 24h and half the lifetime.
func (s *ApiKeySpec) Effective() (EffectiveSettings, error) {
	return s.EffectiveWith(BuiltinDefaults)
}

// Defaults are the values used for what a spec leaves unset; ApiKeyPolicies can change them.
type Defaults struct {
	ExpiresAfter      time.Duration
	ExpiryWarning     time.Duration
	RevokeUnusedAfter time.Duration // 0: never
}

// BuiltinDefaults apply when no ApiKeyPolicy sets others.
var BuiltinDefaults = Defaults{ExpiresAfter: DefaultExpiresAfter, ExpiryWarning: DefaultExpiryWarning}

// EffectiveWith is Effective with the given defaults.
func (s *ApiKeySpec) EffectiveWith(d Defaults) (EffectiveSettings, error) {
	e := EffectiveSettings{Environment: s.Environment, ExpiresAfter: seconds(durationOr(s.ExpiresAfter, d.ExpiresAfter))}
	if e.Environment == "" {
		e.Environment = EnvironmentLive
	}
	e.Overlap = durationPtr(min(MaxDefaultOverlap, e.ExpiresAfter.Duration/2).Truncate(time.Second))
	e.ExpiryWarning = metav1.Duration{Duration: d.ExpiryWarning}
	if s.RevokeUnusedAfter != nil {
		e.RevokeUnusedAfter = durationPtr(s.RevokeUnusedAfter.Duration.Truncate(time.Second))
	} else if d.RevokeUnusedAfter > 0 {
		e.RevokeUnusedAfter = durationPtr(d.RevokeUnusedAfter.Truncate(time.Second))
	}
	if r := s.Rotation; r != nil {
		period := r.Period.Duration.Truncate(time.Second)
		overlap := min(MaxDefaultOverlap, period/2).Truncate(time.Second)
		if r.Overlap != nil {
			overlap = r.Overlap.Duration.Truncate(time.Second)
		}
		e.RotationPeriod = durationPtr(period)
		e.Overlap = durationPtr(overlap)
		if period+overlap > e.ExpiresAfter.Duration {
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

func seconds(d metav1.Duration) metav1.Duration {
	return metav1.Duration{Duration: d.Duration.Truncate(time.Second)}
}
