package v1alpha1

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func d(x time.Duration) *metav1.Duration { return &metav1.Duration{Duration: x} }

func TestValidate(t *testing.T) {
	ok := func() ApiKeySpec { return ApiKeySpec{Scopes: []string{"users:read"}, SecretName: "s"} }
	for _, tc := range []struct {
		name   string
		mutate func(*ApiKeySpec)
		want   string // substring of the error; "" for valid
	}{
		{"valid", func(*ApiKeySpec) {}, ""},
		{"valid edge scopes", func(s *ApiKeySpec) { s.Scopes = []string{"a:b", "billing.invoices:read-all"} }, ""},
		{"no scopes", func(s *ApiKeySpec) { s.Scopes = nil }, "at least one scope"},
		{"bad scope", func(s *ApiKeySpec) { s.Scopes = []string{"users"} }, "resource:action"},
		{"duplicate scope", func(s *ApiKeySpec) { s.Scopes = []string{"a:b", "a:b"} }, "Duplicate"},
		{"too many scopes", func(s *ApiKeySpec) {
			s.Scopes = nil
			for i := 0; i < 65; i++ {
				s.Scopes = append(s.Scopes, "r"+strings.Repeat("x", i)+":read")
			}
		}, "Too many"},
		{"environment", func(s *ApiKeySpec) { s.Environment = "prod" }, "Unsupported value"},
		{"secret name", func(s *ApiKeySpec) { s.SecretName = "A_B" }, "spec.secretName"},
		{"label value the API server refuses", func(s *ApiKeySpec) {
			s.SecretTemplate = &SecretTemplate{Labels: map[string]string{"team": "a b"}}
		}, "spec.secretTemplate.labels"},
		{"annotation key the API server refuses", func(s *ApiKeySpec) {
			s.SecretTemplate = &SecretTemplate{Annotations: map[string]string{"not a key": "x"}}
		}, "spec.secretTemplate.annotations"},
		{"reserved label", func(s *ApiKeySpec) {
			s.SecretTemplate = &SecretTemplate{Labels: map[string]string{"keysmith.dev/x": "y"}}
		}, "must not set"},
		{"short lifetime", func(s *ApiKeySpec) { s.ExpiresAfter = d(time.Second) }, "at least 1m"},
		{"short period", func(s *ApiKeySpec) { s.Rotation = &RotationSpec{Period: metav1.Duration{Duration: time.Second}} }, "at least 1m"},
		{"overlap = period", func(s *ApiKeySpec) {
			s.Rotation = &RotationSpec{Period: metav1.Duration{Duration: time.Hour}, Overlap: d(time.Hour)}
		}, "shorter than rotation.period"},
		{"negative overlap", func(s *ApiKeySpec) {
			s.Rotation = &RotationSpec{Period: metav1.Duration{Duration: time.Hour}, Overlap: d(-time.Second)}
		}, "shorter than rotation.period"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ok()
			tc.mutate(&s)
			err := s.Validate().ToAggregate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestEffective(t *testing.T) {
	for _, tc := range []struct {
		name        string
		spec        ApiKeySpec
		wantLife    time.Duration
		wantPeriod  time.Duration
		wantOverlap time.Duration
		wantErr     string
	}{
		{"defaults: no rotation, unscheduled rotations overlap 24h", ApiKeySpec{}, DefaultExpiresAfter, 0, 24 * time.Hour, ""},
		{"short lifetime: overlap is half of it", ApiKeySpec{ExpiresAfter: d(time.Hour)}, time.Hour, 0, 30 * time.Minute, ""},
		{"sub-second durations are truncated to seconds", ApiKeySpec{ExpiresAfter: d(time.Hour + 500*time.Millisecond),
			Rotation: &RotationSpec{Period: metav1.Duration{Duration: time.Minute + 500*time.Millisecond}, Overlap: d(1500 * time.Millisecond)}},
			time.Hour, time.Minute, time.Second, ""},
		{"monthly, default overlap 24h", ApiKeySpec{Rotation: &RotationSpec{Period: metav1.Duration{Duration: 720 * time.Hour}}},
			DefaultExpiresAfter, 720 * time.Hour, 24 * time.Hour, ""},
		{"hourly, default overlap is half the period", ApiKeySpec{Rotation: &RotationSpec{Period: metav1.Duration{Duration: time.Hour}}},
			DefaultExpiresAfter, time.Hour, 30 * time.Minute, ""},
		{"explicit overlap 0", ApiKeySpec{Rotation: &RotationSpec{Period: metav1.Duration{Duration: time.Hour}, Overlap: d(0)}},
			DefaultExpiresAfter, time.Hour, 0, ""},
		{"exactly the lifetime", ApiKeySpec{ExpiresAfter: d(2 * time.Hour), Rotation: &RotationSpec{Period: metav1.Duration{Duration: time.Hour}, Overlap: d(time.Hour - time.Second)}},
			2 * time.Hour, time.Hour, time.Hour - time.Second, ""},
		{"default overlap pushes past the default lifetime", ApiKeySpec{Rotation: &RotationSpec{Period: metav1.Duration{Duration: DefaultExpiresAfter}}},
			0, 0, 0, "overlap (24h0m0s, the default) exceeds the key lifetime (2160h0m0s, the default)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := tc.spec.Effective()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if e.Environment != EnvironmentLive || e.ExpiresAfter.Duration != tc.wantLife || Get(e.RotationPeriod) != tc.wantPeriod || Get(e.Overlap) != tc.wantOverlap {
				t.Fatalf("got %+v (period %s, overlap %s)", e, Get(e.RotationPeriod), Get(e.Overlap))
			}
		})
	}
}
