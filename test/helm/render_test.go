// Package helm checks the Helm chart in dist/chart: rendered with its default values it holds the same
// objects as `kustomize build config/default`, and with the optional parts switched on the same as
// config/default, config/verifier and config/prometheus together, except for the differences listed in
// parity_test.go; its values schema refuses bad values; names and namespaces follow the release; and
// every object it renders is accepted by the real API server (server-side dry run, strict field
// validation), and `helm install` and `helm uninstall` work there.
//
// Helm and kustomize are the pinned ones (go tool -modfile=hack/tools/go.mod), as make chart-lint and
// make deploy run them.
package helm

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

const (
	chartDir = "dist/chart"
	// The release and namespace under which the chart's names are config/'s.
	release   = "keysmith"
	namespace = "keysmith-system"
)

// moduleRoot is the repository checkout (test/helm/../..).
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func goBin() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go") // go test did not put go on PATH
}

var (
	toolsMu sync.Mutex
	tools   = map[string]string{}
)

// toolCommand is the command line that runs a tool pinned in hack/tools/go.mod: the binary `go tool`
// builds (into the build cache, once), found with `go tool -n`, so that each run costs no go command.
func toolCommand(name string) []string {
	root := moduleRoot()
	goTool := []string{goBin(), "tool", "-modfile=" + filepath.Join(root, "hack", "tools", "go.mod")}
	toolsMu.Lock()
	defer toolsMu.Unlock()
	if bin, ok := tools[name]; ok {
		return []string{bin}
	}
	cmd := exec.Command(goTool[0], append(goTool[1:], "-n", name)...)
	cmd.Dir = root
	if out, err := cmd.Output(); err == nil {
		if bin := strings.TrimSpace(string(out)); !strings.ContainsAny(bin, " \n") {
			if _, err := os.Stat(bin); err == nil {
				tools[name] = bin
				return []string{bin}
			}
		}
	}
	return append(goTool, name)
}

// tool runs a tool pinned in hack/tools/go.mod from the module root, with extra environment variables.
func tool(env []string, name string, args ...string) (stdout []byte, stderr string, err error) {
	root := moduleRoot()
	command := append(toolCommand(name), args...)
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.Bytes(), errOut.String(), err
}

// helmEnv keeps Helm's cache, configuration and data out of the user's home.
func helmEnv(t *testing.T) []string {
	dir := t.TempDir()
	return []string{
		"HELM_CACHE_HOME=" + filepath.Join(dir, "cache"),
		"HELM_CONFIG_HOME=" + filepath.Join(dir, "config"),
		"HELM_DATA_HOME=" + filepath.Join(dir, "data"),
	}
}

// helm runs the pinned Helm and fails the test when it fails.
func helm(t *testing.T, args ...string) []byte {
	t.Helper()
	out, stderr, err := tool(helmEnv(t), "helm", args...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
	}
	return out
}

// render is `helm template <name> dist/chart --namespace <ns> <args>`, decoded.
func render(t *testing.T, name, ns string, args ...string) []*unstructured.Unstructured {
	t.Helper()
	return decode(t, helm(t, append([]string{"template", name, chartDir, "--namespace", ns}, args...)...))
}

// kustomize builds each directory with the pinned kustomize, as make deploy does, and returns all objects.
func kustomize(t *testing.T, dirs ...string) []*unstructured.Unstructured {
	t.Helper()
	var all []*unstructured.Unstructured
	for _, dir := range dirs {
		out, stderr, err := tool(nil, "kustomize", "build", dir)
		if err != nil {
			t.Fatalf("kustomize build %s: %v\n%s", dir, err, stderr)
		}
		all = append(all, decode(t, out)...)
	}
	return all
}

// decode reads every YAML document into an object (numbers as JSON numbers, the same for both sides), as
// kubectl and the API server's YAML parser (sigs.k8s.io/yaml) read them.
func decode(t *testing.T, b []byte) []*unstructured.Unstructured {
	t.Helper()
	out, err := decodeAll(b)
	if err != nil {
		t.Fatalf("decoding manifests: %v", err)
	}
	return out
}

func decodeNoTest(b []byte) []*unstructured.Unstructured {
	out, _ := decodeAll(b)
	return out
}

func decodeAll(b []byte) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		obj := map[string]any{}
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if len(obj) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: obj})
	}
}

// key names an object as "Kind namespace/name", or "Kind name" when it has no namespace.
func key(u *unstructured.Unstructured) string {
	if u.GetNamespace() == "" {
		return u.GetKind() + " " + u.GetName()
	}
	return u.GetKind() + " " + u.GetNamespace() + "/" + u.GetName()
}

func byKey(t reporter, objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
	t.Helper()
	m := map[string]*unstructured.Unstructured{}
	for _, u := range objs {
		if _, dup := m[key(u)]; dup {
			t.Errorf("%s is rendered twice", key(u))
		}
		m[key(u)] = u
	}
	return m
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// chartMeta is what the tests read from Chart.yaml.
type chartMeta struct {
	Name       string `json:"name"`
	Version    string `json:"version"`
	AppVersion string `json:"appVersion"`
}

func readChart(t *testing.T) chartMeta {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(moduleRoot(), chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c chartMeta
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	if c.Name == "" || c.Version == "" || c.AppVersion == "" {
		t.Fatalf("Chart.yaml lacks name, version or appVersion: %+v", c)
	}
	return c
}

func ofKind(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, u := range objs {
		if u.GetKind() == kind {
			out = append(out, u)
		}
	}
	return out
}
