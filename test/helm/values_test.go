package helm

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// helm lint --strict passes with the values make chart-lint uses, and fails with each file in
// testdata/bad-values, with the message its "# want:" line names (values.schema.json).
func TestValuesSchema(t *testing.T) {
	root := moduleRoot()
	cases := map[string]string{"default values": ""}
	ci, _ := filepath.Glob(filepath.Join(root, chartDir, "ci", "*-values.yaml"))
	bad, _ := filepath.Glob(filepath.Join(root, "test", "helm", "testdata", "bad-values", "*.yaml"))
	if len(ci) == 0 || len(bad) < 10 {
		t.Fatalf("found %d ci values files and %d bad values files", len(ci), len(bad))
	}
	for _, f := range append(ci, bad...) {
		cases[f] = ""
	}
	names := keys(cases)
	for _, name := range names {
		t.Run(filepath.Base(name), func(t *testing.T) {
			args := []string{"lint", "--strict", chartDir}
			want := ""
			if name != "default values" {
				args = append(args, "-f", name)
				b, err := os.ReadFile(name)
				if err != nil {
					t.Fatal(err)
				}
				for _, line := range strings.Split(string(b), "\n") {
					if w, ok := strings.CutPrefix(line, "# want: "); ok {
						want = w
					}
				}
				if strings.Contains(name, "bad-values") && want == "" {
					t.Fatalf("%s has no '# want: <message>' line", name)
				}
			}
			out, stderr, err := tool(helmEnv(t), "helm", args...)
			if want == "" {
				if err != nil {
					t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
				}
				return
			}
			if err == nil {
				t.Fatalf("helm %s passed; want it to fail with %q\n%s", strings.Join(args, " "), want, out)
			}
			if !strings.Contains(string(out)+stderr, want) {
				t.Errorf("helm %s failed without %q:\n%s%s", strings.Join(args, " "), want, out, stderr)
			}
		})
	}
}

// With another release name and namespace every name, namespace and reference follows: nothing in the
// chart names keysmith-system or config/'s names.
func TestNamesFollowRelease(t *testing.T) {
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	objs := render(t, "acme", "platform", "-f", chartDir+"/ci/all-values.yaml", "-f", chartDir+"/ci/argocd-values.yaml",
		"--set", "image.repository=registry.example.com/keysmith", "--set", "image.digest="+digest)
	raw := helm(t, "template", "acme", chartDir, "--namespace", "platform", "-f", chartDir+"/ci/all-values.yaml")
	if strings.Contains(string(raw), "keysmith-system") {
		t.Errorf("the chart rendered in namespace platform still names keysmith-system")
	}

	serviceAccounts := map[string]bool{}
	roles := map[string]bool{}
	var podLabels []map[string]string
	for _, u := range objs {
		switch {
		case u.GetKind() == "CustomResourceDefinition":
		case u.GetKind() == "ConfigMap" && u.GetName() == "argocd-cm":
			if u.GetNamespace() != "argocd" {
				t.Errorf("%s: want namespace argocd (argocd.configMap.namespace)", key(u))
			}
		case u.GetName() != "acme-keysmith" && !strings.HasPrefix(u.GetName(), "acme-keysmith-"):
			t.Errorf("%s: want a name acme-keysmith-<suffix>", key(u))
		}
		switch u.GetKind() {
		case "ServiceAccount":
			serviceAccounts[u.GetNamespace()+"/"+u.GetName()] = true
		case "ClusterRole", "Role":
			roles[u.GetKind()+" "+u.GetName()] = true
		case "Deployment":
			l, _, _ := unstructured.NestedStringMap(u.Object, "spec", "template", "metadata", "labels")
			podLabels = append(podLabels, l)
			cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
			if img := cs[0].(map[string]any)["image"]; img != "registry.example.com/keysmith@"+digest {
				t.Errorf("%s: image %v, want the digest", key(u), img)
			}
		}
	}
	readers := map[string]bool{"monitoring/prometheus-k8s": true} // metrics.readers in ci/all-values.yaml
	for _, u := range objs {
		if u.GetNamespace() != "" && u.GetNamespace() != "platform" && u.GetName() != "argocd-cm" {
			t.Errorf("%s: want namespace platform", key(u))
		}
		switch u.GetKind() {
		case "ClusterRoleBinding", "RoleBinding":
			ref, _, _ := unstructured.NestedString(u.Object, "roleRef", "name")
			refKind, _, _ := unstructured.NestedString(u.Object, "roleRef", "kind")
			if !roles[refKind+" "+ref] {
				t.Errorf("%s binds %s %s, which the chart does not render", key(u), refKind, ref)
			}
			subjects, _, _ := unstructured.NestedSlice(u.Object, "subjects")
			for _, s := range subjects {
				s := s.(map[string]any)
				sa := s["namespace"].(string) + "/" + s["name"].(string)
				if !serviceAccounts[sa] && !readers[sa] {
					t.Errorf("%s binds ServiceAccount %s, which the chart does not render", key(u), sa)
				}
			}
		case "Deployment":
			sa, _, _ := unstructured.NestedString(u.Object, "spec", "template", "spec", "serviceAccountName")
			if !serviceAccounts["platform/"+sa] {
				t.Errorf("%s runs as ServiceAccount %s, which the chart does not render", key(u), sa)
			}
		case "Service", "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor":
			path := map[string][]string{
				"Service":             {"spec", "selector"},
				"PodDisruptionBudget": {"spec", "selector", "matchLabels"},
				"NetworkPolicy":       {"spec", "podSelector", "matchLabels"},
				"ServiceMonitor":      {"spec", "selector", "matchLabels"},
			}[u.GetKind()]
			sel, _, _ := unstructured.NestedStringMap(u.Object, path...)
			if u.GetKind() == "ServiceMonitor" {
				continue // it selects Services (by the same labels), checked above
			}
			if !selectsAny(sel, podLabels) {
				t.Errorf("%s selects %v, which no Deployment's pods carry", key(u), sel)
			}
		case "ValidatingAdmissionPolicy":
			conds, _, _ := unstructured.NestedSlice(u.Object, "spec", "matchConditions")
			expr := conds[0].(map[string]any)["expression"].(string)
			if want := "'system:serviceaccount:platform:acme-keysmith-verifier'"; !strings.Contains(expr, want) || !serviceAccounts["platform/acme-keysmith-verifier"] {
				t.Errorf("%s matches %q; want the verifier's ServiceAccount %s", key(u), expr, want)
			}
		case "ValidatingAdmissionPolicyBinding":
			if p, _, _ := unstructured.NestedString(u.Object, "spec", "policyName"); p != u.GetName() || len(ofKind(objs, "ValidatingAdmissionPolicy")) != 1 || ofKind(objs, "ValidatingAdmissionPolicy")[0].GetName() != p {
				t.Errorf("%s binds policy %q, which the chart does not render", key(u), p)
			}
		}
	}
	if len(podLabels) != 2 {
		t.Errorf("rendered %d Deployments, want the manager and the verifier", len(podLabels))
	}

	// fullnameOverride replaces the prefix.
	for _, u := range render(t, "acme", "platform", "--set", "fullnameOverride=ks") {
		if u.GetKind() != "CustomResourceDefinition" && !strings.HasPrefix(u.GetName(), "ks-") {
			t.Errorf("with fullnameOverride=ks: %s", key(u))
		}
	}
}

func selectsAny(sel map[string]string, pods []map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for _, labels := range pods {
		ok := true
		for k, v := range sel {
			if labels[k] != v {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// argocd.enabled renders the scripts of config/argocd exactly, as the same two argocd-cm keys as the
// kustomize Component's patch (config/argocd/argocd-cm.yaml).
func TestArgoCDCustomizations(t *testing.T) {
	root := moduleRoot()
	src := filepath.Join(root, "config", "argocd", "resource_customizations", "keysmith.dev", "ApiKey")
	if _, err := os.Stat(filepath.Join(src, "health.lua")); err != nil {
		t.Skipf("config/argocd has no scripts yet: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, chartDir, "files", "argocd", "health.lua")); err != nil {
		t.Fatalf("config/argocd has scripts but the chart does not: run make chart")
	}
	cms := ofKind(render(t, release, namespace, "-f", chartDir+"/ci/argocd-values.yaml", "--show-only", "templates/argocd/argocd-cm.yaml"), "ConfigMap")
	if len(cms) != 1 || key(cms[0]) != "ConfigMap argocd/argocd-cm" {
		t.Fatalf("want ConfigMap argocd/argocd-cm, got %d ConfigMaps", len(cms))
	}
	cm := cms[0]
	if cm.GetLabels()["app.kubernetes.io/part-of"] != "argocd" {
		t.Errorf("argocd-cm lacks app.kubernetes.io/part-of=argocd, without which Argo CD ignores it")
	}
	if cm.GetAnnotations()["helm.sh/resource-policy"] != "keep" {
		t.Errorf("argocd-cm is not kept on helm uninstall")
	}
	data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
	if len(data) != 2 {
		t.Errorf("argocd-cm data has %d keys, want 2: %v", len(data), keys(data))
	}
	const healthKey, actionsKey = "resource.customizations.health.keysmith.dev_ApiKey", "resource.customizations.actions.keysmith.dev_ApiKey"

	read := func(rel string) string {
		b, err := os.ReadFile(filepath.Join(src, rel))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	same := func(what, got, want string) {
		if strings.TrimRight(got, "\n") != strings.TrimRight(want, "\n") {
			t.Errorf("%s differs from config/argocd's:\n--- chart\n%s\n--- config\n%s", what, got, want)
		}
	}
	same("health.lua", data[healthKey], read("health.lua"))
	var actions struct {
		Discovery   string `json:"discovery.lua"`
		Definitions []struct {
			Name   string `json:"name"`
			Action string `json:"action.lua"`
		} `json:"definitions"`
	}
	if err := yaml.UnmarshalStrict([]byte(data[actionsKey]), &actions); err != nil {
		t.Fatalf("%s: %v", actionsKey, err)
	}
	same("actions/discovery.lua", actions.Discovery, read("actions/discovery.lua"))
	dirs, _ := filepath.Glob(filepath.Join(src, "actions", "*", "action.lua"))
	var want, got []string
	for _, d := range dirs {
		want = append(want, filepath.Base(filepath.Dir(d)))
	}
	for _, d := range actions.Definitions {
		got = append(got, d.Name)
		same("actions/"+d.Name+"/action.lua", d.Action, read(filepath.Join("actions", d.Name, "action.lua")))
	}
	sort.Strings(got)
	if !reflect.DeepEqual(got, want) || len(want) == 0 {
		t.Errorf("actions %v, want config/argocd's %v", got, want)
	}

	// The kustomize Component's patch holds the same keys with the same content.
	patch, err := os.ReadFile(filepath.Join(root, "config", "argocd", "argocd-cm.yaml"))
	if err != nil {
		t.Skipf("no kustomize Component patch to compare with: %v", err)
	}
	var p struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(patch, &p); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(keys(p.Data), keys(data)) {
		t.Errorf("argocd-cm keys %v, the Component's %v", keys(data), keys(p.Data))
	}
	same("the health key", data[healthKey], p.Data[healthKey])
	var fromPatch, fromChart any
	if err := yaml.Unmarshal([]byte(p.Data[actionsKey]), &fromPatch); err != nil {
		t.Fatal(err)
	}
	_ = yaml.Unmarshal([]byte(data[actionsKey]), &fromChart)
	if !reflect.DeepEqual(trimStrings(fromChart), trimStrings(fromPatch)) {
		t.Errorf("the actions key differs from the Component's patch")
	}
}

// trimStrings drops trailing newlines of every string (YAML block scalars differ only in those).
func trimStrings(v any) any {
	switch x := v.(type) {
	case string:
		return strings.TrimRight(x, "\n")
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = trimStrings(x[i])
		}
		return out
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			out[k] = trimStrings(e)
		}
		return out
	}
	return v
}

// The chart renders as a dependency of an umbrella chart, where Helm adds global values (a schema that
// refused unknown top-level keys without naming global would fail there).
func TestRendersAsSubchart(t *testing.T) {
	umbrella := t.TempDir()
	if err := os.WriteFile(filepath.Join(umbrella, "Chart.yaml"), []byte("apiVersion: v2\nname: platform\nversion: 0.1.0\ndependencies:\n  - name: keysmith\n    version: \">=0.0.0\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(umbrella, "values.yaml"), []byte("global:\n  imageRegistry: registry.example.com\nkeysmith:\n  verifier:\n    enabled: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(umbrella, "charts", "keysmith"), os.DirFS(filepath.Join(moduleRoot(), chartDir))); err != nil {
		t.Fatal(err)
	}
	out := helm(t, "template", "keysmith", umbrella, "--namespace", "keysmith-system")
	if !strings.Contains(string(out), "name: keysmith-verifier") {
		t.Errorf("the subchart did not render its verifier:\n%s", firstLines(string(out), 20))
	}
}
