package argocd

import (
	"bytes"
	"os"
	"testing"
)

// TestPatchIsCurrent fails when argocd-cm.yaml is not what hack/argocd-gen renders from the .lua files.
func TestPatchIsCurrent(t *testing.T) {
	s, err := Embedded()
	if err != nil {
		t.Fatal(err)
	}
	if got := []string{"disable", "enable", "revoke", "rotate"}; len(s.Actions) != len(got) {
		t.Fatalf("actions %v, want %v", s.Actions, got)
	}
	want, err := Render(s)
	if err != nil {
		t.Fatal(err)
	}
	have, err := os.ReadFile(PatchFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, want) {
		t.Fatalf("config/argocd/%s is stale: run 'go run ./hack/argocd-gen' and commit it", PatchFile)
	}
}

// TestRenderRefusesWhatYAMLCannotCarry: a script that a literal block would change is refused.
func TestRenderRefusesWhatYAMLCannotCarry(t *testing.T) {
	s, err := Embedded()
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"return {}", "  return {}\n", "return {}\n\n", "return {}\r\n"} {
		c := s
		c.Health = bad
		if _, err := Render(c); err == nil {
			t.Errorf("Render accepted health.lua %q", bad)
		}
	}
}
