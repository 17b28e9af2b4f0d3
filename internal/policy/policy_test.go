package policy

import (
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
)

func d(x time.Duration) *metav1.Duration { return &metav1.Duration{Duration: x} }

func pol(name string, mutate func(*v1alpha1.ApiKeyPolicySpec)) v1alpha1.ApiKeyPolicy {
	p := v1alpha1.ApiKeyPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}
	mutate(&p.Spec)
	return p
}

func TestMatches(t *testing.T) {
	for _, tc := range []struct {
		pattern v1alpha1.ScopePattern
		scope   string
		want    bool
	}{
		{"users:read", "users:read", true},
		{"users:read", "users:write", false},
		{"audit:*", "audit:read", true},
		{"audit:*", "auditing:read", false},
		{"*:read", "users:read", true},
		{"*:read", "users:readall", false},
		{"*:*", "anything:goes", true},
		{"users", "users:read", false},
		{"users:read", "users", false},
	} {
		if got := Matches(tc.pattern, tc.scope); got != tc.want {
			t.Errorf("Matches(%q, %q) = %v, want %v", tc.pattern, tc.scope, got, tc.want)
		}
	}
}

func TestSelect(t *testing.T) {
	all := []v1alpha1.ApiKeyPolicy{
		pol("everywhere", func(*v1alpha1.ApiKeyPolicySpec) {}),
		pol("prod", func(s *v1alpha1.ApiKeyPolicySpec) {
			s.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}
		}),
		pol("not-sandbox", func(s *v1alpha1.ApiKeyPolicySpec) {
			s.NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "sandbox", Operator: metav1.LabelSelectorOpDoesNotExist}}}
		}),
	}
	for _, tc := range []struct {
		labels map[string]string
		want   string
	}{
		{map[string]string{"env": "prod"}, "everywhere,not-sandbox,prod"},
		{map[string]string{"env": "dev"}, "everywhere,not-sandbox"},
		{map[string]string{"sandbox": "yes"}, "everywhere"},
		{nil, "everywhere,not-sandbox"},
	} {
		got, err := Select(all, tc.labels)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, p := range got {
			names = append(names, p.Name)
		}
		if strings.Join(names, ",") != tc.want {
			t.Errorf("labels %v: selected %v, want %s", tc.labels, names, tc.want)
		}
	}
	bad := []v1alpha1.ApiKeyPolicy{pol("bad", func(s *v1alpha1.ApiKeyPolicySpec) {
		s.NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Near"}}}
	})}
	if _, err := Select(bad, nil); err == nil || !strings.Contains(err.Error(), "ApiKeyPolicy bad") {
		t.Fatalf("bad selector: %v", err)
	}
}

func TestEvaluate(t *testing.T) {
	base := func() *v1alpha1.ApiKeySpec {
		return &v1alpha1.ApiKeySpec{Scopes: []string{"users:read", "audit:read"}, SecretName: "s"}
	}
	for _, tc := range []struct {
		name        string
		policies    []v1alpha1.ApiKeyPolicy
		spec        func(*v1alpha1.ApiKeySpec)
		violations  []string // substrings, in order
		enforcement v1alpha1.Enforcement
		defaults    v1alpha1.Defaults
	}{
		{name: "no policy: built-in defaults", defaults: v1alpha1.BuiltinDefaults, enforcement: v1alpha1.EnforcementBlock},
		{
			name: "allowed scopes by pattern",
			policies: []v1alpha1.ApiKeyPolicy{pol("scopes", func(s *v1alpha1.ApiKeyPolicySpec) {
				s.AllowedScopes = []v1alpha1.ScopePattern{"users:read", "audit:*"}
			})},
			defaults: v1alpha1.BuiltinDefaults, enforcement: v1alpha1.EnforcementBlock,
		},
		{
			name: "every broken rule is named",
			policies: []v1alpha1.ApiKeyPolicy{pol("strict", func(s *v1alpha1.ApiKeyPolicySpec) {
				s.AllowedScopes = []v1alpha1.ScopePattern{"*:read"}
				s.AllowedEnvironments = []v1alpha1.Environment{v1alpha1.EnvironmentTest}
				s.MaxExpiresAfter = d(720 * time.Hour)
				s.RequireRotation = true
				s.Enforcement = v1alpha1.EnforcementRevoke
			})},
			spec: func(s *v1alpha1.ApiKeySpec) {
				s.Scopes = append(s.Scopes, "users:write")
				s.ExpiresAfter = d(1000 * time.Hour)
			},
			violations: []string{
				"ApiKeyPolicy strict: scope users:write is not allowed (allowed: *:read)",
				"ApiKeyPolicy strict: environment live is not allowed (allowed: test)",
				"ApiKeyPolicy strict: expiresAfter 1000h0m0s exceeds maxExpiresAfter 720h0m0s",
				"ApiKeyPolicy strict: rotation is required",
			},
			enforcement: v1alpha1.EnforcementRevoke,
			defaults:    v1alpha1.Defaults{ExpiresAfter: 720 * time.Hour, ExpiryWarning: v1alpha1.DefaultExpiryWarning},
		},
		{
			name: "rotation limits",
			policies: []v1alpha1.ApiKeyPolicy{pol("rot", func(s *v1alpha1.ApiKeyPolicySpec) {
				s.MaxRotationPeriod = d(168 * time.Hour)
				s.MaxOverlap = d(time.Hour)
			})},
			spec: func(s *v1alpha1.ApiKeySpec) {
				s.Rotation = &v1alpha1.RotationSpec{Period: metav1.Duration{Duration: 720 * time.Hour}}
			},
			violations:  []string{"rotation.period 720h0m0s exceeds maxRotationPeriod 168h0m0s", "rotation.overlap 24h0m0s exceeds maxOverlap 1h0m0s"},
			enforcement: v1alpha1.EnforcementBlock, defaults: v1alpha1.BuiltinDefaults,
		},
		{
			name: "merged defaults: shortest lifetime capped by the smallest maximum, shortest unused limit, longest warning",
			policies: []v1alpha1.ApiKeyPolicy{
				pol("a", func(s *v1alpha1.ApiKeyPolicySpec) {
					s.DefaultExpiresAfter = d(1000 * time.Hour)
					s.RevokeUnusedAfter = d(720 * time.Hour)
					s.ExpiryWarning = d(24 * time.Hour)
				}),
				pol("b", func(s *v1alpha1.ApiKeyPolicySpec) {
					s.MaxExpiresAfter = d(500 * time.Hour)
					s.RevokeUnusedAfter = d(240 * time.Hour)
					s.ExpiryWarning = d(720 * time.Hour)
				}),
			},
			enforcement: v1alpha1.EnforcementBlock,
			defaults:    v1alpha1.Defaults{ExpiresAfter: 500 * time.Hour, RevokeUnusedAfter: 240 * time.Hour, ExpiryWarning: 720 * time.Hour},
		},
		{
			name: "all policies must be satisfied; only broken ones decide enforcement",
			policies: []v1alpha1.ApiKeyPolicy{
				pol("lenient", func(s *v1alpha1.ApiKeyPolicySpec) { s.Enforcement = v1alpha1.EnforcementRevoke }),
				pol("scopes", func(s *v1alpha1.ApiKeyPolicySpec) { s.AllowedScopes = []v1alpha1.ScopePattern{"users:*"} }),
			},
			violations:  []string{"ApiKeyPolicy scopes: scope audit:read is not allowed"},
			enforcement: v1alpha1.EnforcementBlock, defaults: v1alpha1.BuiltinDefaults,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := base()
			if tc.spec != nil {
				tc.spec(spec)
			}
			r := Evaluate(tc.policies, spec)
			if len(r.Violations) != len(tc.violations) {
				t.Fatalf("violations %q, want %d", r.Violations, len(tc.violations))
			}
			for i, v := range tc.violations {
				if !strings.Contains(r.Violations[i], v) {
					t.Errorf("violation %d = %q, want it to contain %q", i, r.Violations[i], v)
				}
			}
			if r.Enforcement != tc.enforcement {
				t.Errorf("enforcement %s, want %s", r.Enforcement, tc.enforcement)
			}
			if r.Defaults != tc.defaults {
				t.Errorf("defaults %+v, want %+v", r.Defaults, tc.defaults)
			}
			if len(r.Applied) != len(tc.policies) {
				t.Errorf("applied %v", r.Applied)
			}
		})
	}
}

func TestGrant(t *testing.T) {
	users := pol("users", func(s *v1alpha1.ApiKeyPolicySpec) { s.AllowedScopes = []v1alpha1.ScopePattern{"users:*"} })
	reads := pol("reads", func(s *v1alpha1.ApiKeyPolicySpec) { s.AllowedScopes = []v1alpha1.ScopePattern{"*:read"} })
	lifetime := pol("lifetime", func(s *v1alpha1.ApiKeyPolicySpec) { s.MaxExpiresAfter = d(24 * time.Hour) })
	for _, tc := range []struct {
		name         string
		selected     []v1alpha1.ApiKeyPolicy
		scopes       []string
		require      bool
		grant        []string
		grantsScopes bool
		violations   int
	}{
		{name: "no policy grants what the spec asks", scopes: []string{"users:read", "admin:write"}, grant: []string{"users:read", "admin:write"}},
		{name: "a policy without allowedScopes grants everything", selected: []v1alpha1.ApiKeyPolicy{lifetime}, scopes: []string{"admin:write"}, grant: []string{"admin:write"}},
		{name: "a forbidden scope is dropped from the grant", selected: []v1alpha1.ApiKeyPolicy{users}, scopes: []string{"users:read", "admin:write"},
			grant: []string{"users:read"}, grantsScopes: true, violations: 1},
		{name: "every policy must allow a scope", selected: []v1alpha1.ApiKeyPolicy{reads, users}, scopes: []string{"users:read", "users:write", "audit:read"},
			grant: []string{"users:read"}, grantsScopes: true, violations: 2},
		{name: "deny by default without a granting policy", selected: []v1alpha1.ApiKeyPolicy{lifetime}, scopes: []string{"users:read"}, require: true,
			grant: []string{}, violations: 1},
		{name: "deny by default with a granting policy", selected: []v1alpha1.ApiKeyPolicy{users}, scopes: []string{"users:read"}, require: true,
			grant: []string{"users:read"}, grantsScopes: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := &v1alpha1.ApiKeySpec{Scopes: tc.scopes, SecretName: "s"}
			r := Evaluate(tc.selected, spec)
			if tc.require {
				r = RequireGrant(r, "team-a")
			}
			if got := r.Grant(spec.Scopes); !slices.Equal(got, tc.grant) {
				t.Errorf("Grant = %v, want %v", got, tc.grant)
			}
			if r.GrantsScopes != tc.grantsScopes {
				t.Errorf("GrantsScopes = %v, want %v", r.GrantsScopes, tc.grantsScopes)
			}
			if len(r.Violations) != tc.violations {
				t.Errorf("Violations = %q, want %d", r.Violations, tc.violations)
			}
			if tc.require && !tc.grantsScopes && !strings.Contains(strings.Join(r.Violations, ";"), "namespace team-a") {
				t.Errorf("the violation does not name the namespace: %q", r.Violations)
			}
		})
	}
}
