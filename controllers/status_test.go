package controllers

import (
	"strings"
	"testing"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/keys"
	"github.com/keysmith-dev/keysmith/internal/policy"
)

// A spec that bypassed admission (or predates a rule) is described without repeating its values: they
// go into a condition and a Warning event.
func TestValidateNeverEchoesValues(t *testing.T) {
	k, err := keys.Generate("ks", keys.Live)
	if err != nil {
		t.Fatal(err)
	}
	pasted := k.Plaintext()
	for _, tc := range []struct {
		name string
		spec v1alpha1.ApiKeySpec
		says string
	}{
		{name: "a key pasted as a scope", spec: v1alpha1.ApiKeySpec{Scopes: []string{pasted}, SecretName: "s"}, says: "spec.scopes[0]: Invalid value"},
		{name: "a key pasted as the Secret name", spec: v1alpha1.ApiKeySpec{Scopes: []string{"users:read"}, SecretName: pasted}, says: "spec.secretName: Invalid value"},
		{name: "a key pasted as a template label value", spec: v1alpha1.ApiKeySpec{Scopes: []string{"users:read"}, SecretName: "s",
			SecretTemplate: &v1alpha1.SecretTemplate{Labels: map[string]string{"team": pasted + " !"}}}, says: "spec.secretTemplate.labels[team]"},
		{name: "a key pasted as the environment", spec: v1alpha1.ApiKeySpec{Scopes: []string{"users:read"}, SecretName: "s", Environment: v1alpha1.Environment(pasted)},
			says: "spec.environment: Unsupported value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := validate(&v1alpha1.ApiKey{Spec: tc.spec}, policy.Evaluate(nil, &tc.spec))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("message %q does not say %q", err, tc.says)
			}
			if strings.Contains(err.Error(), pasted) || strings.Contains(err.Error(), pasted[:16]) {
				t.Errorf("message %q repeats the value", err)
			}
		})
	}
}
