package gitops

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// HealthTests is a health_test.yaml: each input object with the health Argo CD must show for it.
type HealthTests struct {
	Tests []struct {
		HealthStatus HealthStatus `json:"healthStatus"`
		InputPath    string       `json:"inputPath"`
	} `json:"tests"`
}

// ActionTests is an actions/action_test.yaml: the actions discovery offers for each input, and each
// action's output (or error) for an input.
type ActionTests struct {
	DiscoveryTests []struct {
		InputPath string           `json:"inputPath"`
		Result    []ResourceAction `json:"result"`
	} `json:"discoveryTests"`
	ActionTests []struct {
		Action               string `json:"action"`
		InputPath            string `json:"inputPath"`
		ExpectedOutputPath   string `json:"expectedOutputPath"`
		ExpectedErrorMessage string `json:"expectedErrorMessage"`
	} `json:"actionTests"`
}

// ReadYAML reads a YAML file into v, refusing fields v does not have.
func ReadYAML(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := yaml.UnmarshalStrict(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// ReadObject reads a YAML manifest as an unstructured object's content, numbers as JSON decoding gives
// them (float64), as Argo CD's tests read their test data.
func ReadObject(path string) (map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var obj map[string]any
	if err := yaml.Unmarshal(b, &obj); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return obj, nil
}

// Normalize returns v through a JSON round trip, so that objects from YAML, from the API server and from
// Lua compare equal when they hold the same JSON.
func Normalize(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out map[string]any
	return out, json.Unmarshal(b, &out)
}

// AllowedPatchPaths are the only fields keysmith's actions may change: what a person would set with
// kubectl annotate or kubectl patch.
var AllowedPatchPaths = [][]string{
	{"metadata", "annotations", "keysmith.dev/rotate"},
	{"metadata", "annotations", "keysmith.dev/revoke"},
	{"spec", "disabled"},
}

// CheckPatch returns an error naming every leaf of a JSON merge patch outside AllowedPatchPaths.
func CheckPatch(patch []byte) error {
	if patch == nil {
		return nil
	}
	var p map[string]any
	if err := json.Unmarshal(patch, &p); err != nil {
		return err
	}
	var bad []string
	var walk func(path []string, v any)
	walk = func(path []string, v any) {
		if m, ok := v.(map[string]any); ok && len(m) > 0 && !allowed(path) {
			for k, e := range m {
				walk(append(slices.Clone(path), k), e)
			}
			return
		}
		if !allowed(path) {
			bad = append(bad, strings.Join(path, "."))
		}
	}
	walk(nil, p)
	if len(bad) > 0 {
		sort.Strings(bad)
		return fmt.Errorf("the action changes fields a person would not: %s", strings.Join(bad, ", "))
	}
	return nil
}

func allowed(path []string) bool {
	for _, a := range AllowedPatchPaths {
		if slices.Equal(path, a) {
			return true
		}
	}
	return false
}

// moduleRoot returns the module root above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}
