package v1alpha1

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/keysmith-dev/keysmith/internal/keys"
)

func TestValidateSecretTemplate(t *testing.T) {
	prefix := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 61) // 253
	n := func(count int, p string) map[string]string {
		m := map[string]string{}
		for i := range count {
			m[fmt.Sprintf("%s%d", p, i)] = "v"
		}
		return m
	}
	with := func(m map[string]string, k, v string) map[string]string {
		m = maps.Clone(m)
		if m == nil {
			m = map[string]string{}
		}
		m[k] = v
		return m
	}
	for _, tc := range []struct {
		name        string
		labels      map[string]string
		annotations map[string]string
		want        string // substring of the error; "" for valid
	}{
		{"empty", nil, nil, ""},
		{"32 labels and 32 annotations", n(32, "l"), n(32, "a"), ""},
		{"33 labels", n(33, "l"), nil, "spec.secretTemplate.labels: Too many: 33: must have at most 32 items"},
		{"33 annotations", nil, n(33, "a"), "spec.secretTemplate.annotations: Too many: 33: must have at most 32 items"},
		{"longest label key, value and empty value", with(with(nil, prefix+"/"+strings.Repeat("n", 63), strings.Repeat("v", 63)), "e", ""), nil, ""},
		{"label key with a space", with(nil, "not a key", "v"), nil, "labels keys must be qualified names"},
		{"label key name of 64", with(nil, "example.com/"+strings.Repeat("n", 64), "v"), nil, "labels keys must be qualified names"},
		{"label key prefix of 254", with(nil, prefix+"e/name", "v"), nil, "labels keys must be qualified names"},
		{"label key prefix in capitals", with(nil, "Example.com/name", "v"), nil, "labels keys must be qualified names"},
		{"label key with two slashes", with(nil, "example.com/a/b", "v"), nil, "labels keys must be qualified names"},
		{"label value of 64", with(nil, "team", strings.Repeat("v", 64)), nil, "labels values must have at most 63 characters"},
		{"label value with a space", with(nil, "team", "a b"), nil, "labels values must have at most 63 characters"},
		{"label value ending in a dash", with(nil, "team", "payments-"), nil, "labels values must have at most 63 characters"},
		{"reserved label", with(nil, LabelManagedBy, "me"), nil, "must not set app.kubernetes.io/managed-by"},
		{"reserved label prefix", with(nil, "keysmith.dev/x", "y"), nil, "must not set app.kubernetes.io/managed-by"},
		{"longest annotation key and value, in characters", nil, with(nil, prefix+"/"+strings.Repeat("n", 63), strings.Repeat("é", 4096)), ""},
		{"annotation key prefix in capitals", nil, with(nil, "Example.com/Note", "any text: ok"), ""},
		{"annotation key with a space", nil, with(nil, "not a key", "v"), "annotations keys must be qualified names"},
		{"annotation key name of 64", nil, with(nil, "example.com/"+strings.Repeat("n", 64), "v"), "annotations keys must be qualified names"},
		{"annotation key prefix of 254", nil, with(nil, prefix+"e/name", "v"), "annotations keys must be qualified names"},
		{"annotation value of 4097 characters", nil, with(nil, "note", strings.Repeat("x", 4097)), "spec.secretTemplate.annotations[note]: Too long: may not be more than 4096 characters"},
		{"annotations beyond the API server's 256 KiB in total", nil, func() map[string]string {
			m := map[string]string{}
			for i := range 32 {
				m[fmt.Sprintf("a%d", i)] = strings.Repeat("é", 4096) // 8 KiB each
			}
			m["a0"] += "x"
			return m
		}(), "spec.secretTemplate.annotations"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ApiKeySpec{Scopes: []string{"users:read"}, SecretName: "s", SecretTemplate: &SecretTemplate{Labels: tc.labels, Annotations: tc.annotations}}
			err := s.Validate().ToAggregate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %.300v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %.300v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// The operator refuses what admission refuses: every secretTemplate manifest of the admission corpus
// (test/testdata, run against the API server by controllers/corpus_test.go) gets the same verdict here.
func TestValidateSecretTemplateCorpus(t *testing.T) {
	for _, dir := range []string{"invalid", "valid"} {
		files, err := filepath.Glob(filepath.Join("..", "..", "test", "testdata", dir, "*.yaml"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no corpus in %s: %v", dir, err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), "secretTemplate:") || !strings.Contains(string(b), "kind: ApiKey\n") {
				continue
			}
			t.Run(dir+"/"+filepath.Base(f), func(t *testing.T) {
				ak := &ApiKey{}
				if err := yaml.Unmarshal(b, ak); err != nil {
					t.Fatal(err)
				}
				errs := ak.Spec.Validate()
				if dir == "valid" && len(errs) > 0 {
					t.Errorf("refused: %.300v", errs.ToAggregate())
				}
				if dir == "invalid" && len(errs) == 0 {
					t.Error("accepted")
				}
			})
		}
	}
}

// Conditions and events name an error's field and rule, never its value (controllers/status.go); a
// template's keys are user input too: a path names an entry, but never one whose key looks like an API
// key.
func TestValidateSecretTemplateNamesNoKey(t *testing.T) {
	k, err := keys.Generate("ks", keys.Live)
	if err != nil {
		t.Fatal(err)
	}
	pasted := k.Plaintext() // a valid label key
	s := ApiKeySpec{Scopes: []string{"users:read"}, SecretName: "s", SecretTemplate: &SecretTemplate{
		Labels:      map[string]string{pasted: "a b", pasted + " ": "v", "keysmith.dev/" + pasted: "v", "team": "a b"},
		Annotations: map[string]string{pasted: strings.Repeat("x", 4097), pasted + " ": "v"},
	}}
	errs := s.Validate()
	if len(errs) < 6 {
		t.Fatalf("%d errors, want at least 6", len(errs))
	}
	named := false
	for _, e := range errs {
		if strings.Contains(e.Field, pasted[:16]) || strings.Contains(e.Detail, pasted[:16]) {
			t.Errorf("an error's field or detail names the pasted key: %s", e.Type)
		}
		named = named || e.Field == "spec.secretTemplate.labels[team]"
	}
	if !named {
		t.Error("an ordinary entry is not named")
	}
}
