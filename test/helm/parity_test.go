package helm

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/diff"
)

// Every way the chart's objects may differ from kustomize's. Anything else that differs fails the test;
// so does a difference listed here that no longer occurs (remove it then).
//
// Beyond these, objects are compared whole: kinds, names, namespaces, labels and selectors, container
// args, env, images, ports, probes, resources, security contexts, Service ports, PodDisruptionBudgets,
// NetworkPolicies, the admission policy's CEL, the CRDs, the alerts and the dashboard. RBAC rules are
// compared as sets.

// onlyInKustomize: objects config/ installs that the chart does not.
var onlyInKustomize = map[string]string{
	"Namespace keysmith-system": "the release namespace: Helm cannot own the namespace it installs into " +
		"(helm install fails on a Namespace it did not create, and --create-namespace creates it unlabelled); " +
		"values.yaml and README tell to create it with the label pod-security.kubernetes.io/enforce=restricted",
}

// onlyInChart: objects the chart renders that config/ does not have, for the values compared here.
var onlyInChart = map[string]string{}

type difference struct {
	id, why string
	// objects are the keys the difference applies to; empty: any object.
	objects []string
	// apply removes the difference from the chart's object c (and, where both sides carry a value that
	// differs, from kustomize's k), after checking it is exactly the allowed one. It reports whether the
	// difference was there.
	apply func(t reporter, meta chartMeta, c, k *unstructured.Unstructured) bool
}

var differences = []difference{
	{
		id: "helm-labels",
		why: "Helm's standard labels on every object and pod template (helm.sh/chart, app.kubernetes.io/instance, " +
			"app.kubernetes.io/version, app.kubernetes.io/managed-by); selectors stay config/'s, so a release never " +
			"changes an immutable Deployment selector",
		apply: func(t reporter, meta chartMeta, c, _ *unstructured.Unstructured) bool {
			want := map[string]string{
				"helm.sh/chart":                meta.Name + "-" + meta.Version,
				"app.kubernetes.io/instance":   release,
				"app.kubernetes.io/version":    meta.AppVersion,
				"app.kubernetes.io/managed-by": "Helm",
			}
			used := false
			for _, path := range [][]string{{"metadata", "labels"}, {"spec", "template", "metadata", "labels"}} {
				labels, found, _ := unstructured.NestedStringMap(c.Object, path...)
				if !found {
					continue
				}
				for k, v := range want {
					got, ok := labels[k]
					if !ok {
						if c.GetKind() != "CustomResourceDefinition" {
							t.Errorf("%s: %s lacks the label %s", key(c), strings.Join(path, "."), k)
						}
						continue
					}
					if got != v {
						t.Errorf("%s: %s %s=%q, want %q", key(c), strings.Join(path, "."), k, got, v)
					}
					delete(labels, k)
					used = true
				}
				setLabels(c, labels, path...)
			}
			return used
		},
	},
	{
		id:  "crd-keep",
		why: "the CRDs carry helm.sh/resource-policy: keep (crd.keep): helm uninstall would otherwise delete every ApiKey",
		apply: func(t reporter, _ chartMeta, c, _ *unstructured.Unstructured) bool {
			if c.GetKind() != "CustomResourceDefinition" {
				return false
			}
			a := c.GetAnnotations()
			if a["helm.sh/resource-policy"] != "keep" {
				t.Errorf("%s: annotation helm.sh/resource-policy=%q, want keep", key(c), a["helm.sh/resource-policy"])
				return false
			}
			delete(a, "helm.sh/resource-policy")
			if len(a) == 0 {
				a = nil
			}
			c.SetAnnotations(a)
			return true
		},
	},
	{
		id:  "image-tag",
		why: "the image tag defaults to the chart's appVersion; config/ sets keysmith:dev (make deploy IMG=... replaces it)",
		apply: func(t reporter, meta chartMeta, c, k *unstructured.Unstructured) bool {
			if c.GetKind() != "Deployment" {
				return false
			}
			cc, _, _ := unstructured.NestedSlice(c.Object, "spec", "template", "spec", "containers")
			kc, _, _ := unstructured.NestedSlice(k.Object, "spec", "template", "spec", "containers")
			if len(cc) != len(kc) {
				return false // the comparison reports it
			}
			for i := range cc {
				ci, ki := cc[i].(map[string]any), kc[i].(map[string]any)
				if ci["image"] != "keysmith:"+meta.AppVersion || ki["image"] != "keysmith:dev" {
					t.Errorf("%s container %d: image %v (chart) and %v (config), want keysmith:%s and keysmith:dev", key(c), i, ci["image"], ki["image"], meta.AppVersion)
				}
				ci["image"], ki["image"] = "keysmith:<tag>", "keysmith:<tag>"
			}
			_ = unstructured.SetNestedSlice(c.Object, cc, "spec", "template", "spec", "containers")
			_ = unstructured.SetNestedSlice(k.Object, kc, "spec", "template", "spec", "containers")
			return true
		},
	},
	{
		id: "kustomize-folded-cel",
		why: "kustomize (go-yaml v3) reads the folded (>-) CEL expression of config/verifier/policy.yaml with a blank " +
			"line after its opening bracket; the chart has the expression as the API server's YAML parser reads the " +
			"file (sigs.k8s.io/yaml). The same tokens: CEL ignores the whitespace",
		objects: []string{"ValidatingAdmissionPolicy keysmith-verifier-last-used-only"},
		apply: func(t reporter, _ chartMeta, c, k *unstructured.Unstructured) bool {
			ce, ke, fe := cel(c), cel(k), celFromFile(t)
			if reflect.DeepEqual(ce, ke) || len(ce) != len(ke) {
				return false // no difference, or one the comparison reports
			}
			if !reflect.DeepEqual(ce, fe) {
				t.Errorf("%s: the chart's CEL is not config/verifier/policy.yaml's", key(c))
				return false
			}
			for i := range ce {
				if strings.Join(strings.Fields(ce[i]), " ") != strings.Join(strings.Fields(ke[i]), " ") {
					t.Errorf("%s: CEL %d differs beyond whitespace:\n%s\n%s", key(c), i, ke[i], ce[i])
					return false
				}
			}
			setCEL(k, ce)
			return true
		},
	},
	{
		id: "name-label",
		why: "app.kubernetes.io/name=keysmith on the objects config/ leaves unlabelled (controller-gen's ClusterRole, " +
			"the dashboard from kustomize's configMapGenerator), as on every other object",
		objects: []string{"ClusterRole keysmith-manager", "ConfigMap keysmith-system/keysmith-grafana-dashboard"},
		apply: func(t reporter, _ chartMeta, c, k *unstructured.Unstructured) bool {
			if _, ok := k.GetLabels()["app.kubernetes.io/name"]; ok {
				return false
			}
			l := c.GetLabels()
			if l["app.kubernetes.io/name"] != "keysmith" {
				t.Errorf("%s: app.kubernetes.io/name=%q, want keysmith", key(c), l["app.kubernetes.io/name"])
				return false
			}
			delete(l, "app.kubernetes.io/name")
			setLabels(c, l, "metadata", "labels")
			return true
		},
	},
}

// celFromFile reads the ValidatingAdmissionPolicy's CEL as the API server's own YAML parser reads
// config/verifier/policy.yaml: expression and messageExpression of each variable and validation, in order.
func celFromFile(t reporter) []string {
	b, err := os.ReadFile(filepath.Join(moduleRoot(), "config", "verifier", "policy.yaml"))
	if err != nil {
		t.Fatalf("%v", err)
	}
	for _, u := range decodeNoTest(b) {
		if u.GetKind() == "ValidatingAdmissionPolicy" {
			return cel(u)
		}
	}
	t.Fatalf("config/verifier/policy.yaml has no ValidatingAdmissionPolicy")
	return nil
}

// cel lists a policy's expressions and messageExpressions, in order.
func cel(u *unstructured.Unstructured) []string {
	var out []string
	for _, field := range []string{"variables", "validations"} {
		list, _, _ := unstructured.NestedSlice(u.Object, "spec", field)
		for _, x := range list {
			m := x.(map[string]any)
			for _, f := range []string{"expression", "messageExpression"} {
				if s, ok := m[f].(string); ok {
					out = append(out, s)
				}
			}
		}
	}
	return out
}

// setCEL replaces a policy's expressions and messageExpressions, in cel's order.
func setCEL(u *unstructured.Unstructured, exprs []string) {
	i := 0
	for _, field := range []string{"variables", "validations"} {
		list, _, _ := unstructured.NestedSlice(u.Object, "spec", field)
		for _, x := range list {
			m := x.(map[string]any)
			for _, f := range []string{"expression", "messageExpression"} {
				if _, ok := m[f].(string); ok {
					m[f] = exprs[i]
					i++
				}
			}
		}
		_ = unstructured.SetNestedSlice(u.Object, list, "spec", field)
	}
}

func setLabels(u *unstructured.Unstructured, labels map[string]string, path ...string) {
	if len(labels) == 0 {
		unstructured.RemoveNestedField(u.Object, path...)
		return
	}
	m := map[string]any{}
	for k, v := range labels {
		m[k] = v
	}
	_ = unstructured.SetNestedMap(u.Object, m, path...)
}

// canonical sorts what the API server treats as a set: RBAC rules and their lists.
func canonical(u *unstructured.Unstructured) {
	if u.GetKind() != "ClusterRole" && u.GetKind() != "Role" {
		return
	}
	rules, _, _ := unstructured.NestedSlice(u.Object, "rules")
	var sorted []string
	for _, r := range rules {
		rule := r.(map[string]any)
		for k, v := range rule {
			if list, ok := v.([]any); ok {
				s := make([]string, len(list))
				for i, x := range list {
					s[i] = fmt.Sprint(x)
				}
				sort.Strings(s)
				rule[k] = s
			}
		}
		b, _ := json.Marshal(rule)
		sorted = append(sorted, string(b))
	}
	sort.Strings(sorted)
	// Stored as JSON strings: equal sets compare equal, and a diff shows the rules one per line.
	list := make([]any, len(sorted))
	for i, s := range sorted {
		list[i] = s
	}
	u.Object["rules"] = list
}

// compareWithKustomize checks that the chart's objects are config/'s but for the listed differences.
func compareWithKustomize(t reporter, meta chartMeta, chart, config []*unstructured.Unstructured) {
	t.Helper()
	c, k := byKey(t, chart), byKey(t, config)
	for _, name := range keys(k) {
		if _, ok := c[name]; ok {
			continue
		}
		if why, ok := onlyInKustomize[name]; ok {
			t.Logf("intentional: %s is not in the chart: %s", name, why)
			continue
		}
		t.Errorf("%s is in the kustomize build but not in the chart", name)
	}
	for _, name := range keys(c) {
		if _, ok := k[name]; ok {
			continue
		}
		if why, ok := onlyInChart[name]; ok {
			t.Logf("intentional: %s is only in the chart: %s", name, why)
			continue
		}
		t.Errorf("%s is in the chart but not in the kustomize build", name)
	}
	used := map[string]int{}
	for _, name := range keys(c) {
		kObj, ok := k[name]
		if !ok {
			continue
		}
		cObj, kObj := c[name].DeepCopy(), kObj.DeepCopy()
		for _, d := range differences {
			if len(d.objects) > 0 && !contains(d.objects, name) {
				continue
			}
			if d.apply(t, meta, cObj, kObj) {
				used[d.id]++
				used[d.id+" "+name]++
			}
		}
		canonical(cObj)
		canonical(kObj)
		if !reflect.DeepEqual(cObj.Object, kObj.Object) {
			t.Errorf("%s differs from config/ (- kustomize, + chart):\n%s", name, diff.Diff(kObj.Object, cObj.Object))
		}
	}
	for _, d := range differences {
		if len(d.objects) == 0 {
			if used[d.id] == 0 {
				t.Errorf("intentional difference %q no longer occurs: remove it from the list", d.id)
			}
			continue
		}
		for _, name := range d.objects {
			if _, inBoth := k[name]; inBoth && c[name] != nil && used[d.id+" "+name] == 0 {
				t.Errorf("intentional difference %q no longer occurs on %s: remove it from the list", d.id, name)
			}
		}
	}
	for _, d := range differences {
		if used[d.id] > 0 {
			t.Logf("intentional: %s (%d objects): %s", d.id, used[d.id], d.why)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// The default values render config/default.
func TestDefaultsMatchConfigDefault(t *testing.T) {
	chart := render(t, release, namespace)
	config := kustomize(t, "config/default")
	compareWithKustomize(t, readChart(t), chart, config)

	ns := byKey(t, config)["Namespace keysmith-system"]
	if ns == nil || ns.GetLabels()["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("config/default's namespace is no longer Pod Security restricted: update values.yaml, NOTES.txt and this test")
	}
	for _, kind := range []string{"ServiceMonitor", "PrometheusRule", "ValidatingAdmissionPolicy", "NetworkPolicy"} {
		if len(ofKind(chart, kind)) > 0 {
			t.Errorf("the default values render a %s: it must stay optional", kind)
		}
	}
}

// verifier.enabled and prometheus.* render config/verifier and config/prometheus on top of config/default.
func TestOptionalPartsMatchOverlays(t *testing.T) {
	chart := render(t, release, namespace,
		"--set", "verifier.enabled=true",
		"--set", "prometheus.serviceMonitor.enabled=true",
		"--set", "prometheus.rules.enabled=true",
		"--set", "prometheus.dashboard.enabled=true")
	config := kustomize(t, "config/default", "config/verifier", "config/prometheus")
	compareWithKustomize(t, readChart(t), chart, config)
}

// A difference that is not listed fails the comparison, and one that is listed but gone fails too.
func TestParityCheckFails(t *testing.T) {
	chart := render(t, release, namespace)
	config := kustomize(t, "config/default")

	for _, tc := range []struct {
		name   string
		break_ func(objs []*unstructured.Unstructured)
		want   string
	}{
		{"an extra manager flag", func(objs []*unstructured.Unstructured) {
			d := byKeyNoTest(objs)["Deployment keysmith-system/keysmith-manager"]
			cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
			c := cs[0].(map[string]any)
			c["args"] = append(c["args"].([]any), "--require-policy")
			_ = unstructured.SetNestedSlice(d.Object, cs, "spec", "template", "spec", "containers")
		}, "Deployment keysmith-system/keysmith-manager differs"},
		{"a verb dropped from the manager's ClusterRole", func(objs []*unstructured.Unstructured) {
			r := byKeyNoTest(objs)["ClusterRole keysmith-manager"]
			rules, _, _ := unstructured.NestedSlice(r.Object, "rules")
			_ = unstructured.SetNestedSlice(r.Object, rules[1:], "rules")
		}, "ClusterRole keysmith-manager differs"},
		{"a missing Service", func(objs []*unstructured.Unstructured) {
			s := byKeyNoTest(objs)["Service keysmith-system/keysmith-metrics"]
			s.SetName("keysmith-metrics-renamed")
		}, "Service keysmith-system/keysmith-metrics is in the kustomize build but not in the chart"},
		{"a CRD without the keep annotation", func(objs []*unstructured.Unstructured) {
			for _, u := range ofKind(objs, "CustomResourceDefinition") {
				u.SetAnnotations(map[string]string{"controller-gen.kubebuilder.io/version": u.GetAnnotations()["controller-gen.kubebuilder.io/version"]})
			}
		}, `intentional difference "crd-keep" no longer occurs`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			broken := make([]*unstructured.Unstructured, len(chart))
			for i, u := range chart {
				broken[i] = u.DeepCopy()
			}
			tc.break_(broken)
			rec := &recorder{t: t}
			compareWithKustomize(rec, readChart(t), broken, config)
			if got := strings.Join(rec.errs, "\n"); !strings.Contains(got, tc.want) {
				t.Errorf("the comparison did not fail with %q; it reported:\n%s", tc.want, got)
			}
		})
	}
}

// reporter is what the comparison needs of a *testing.T; recorder collects its errors instead.
type reporter interface {
	Helper()
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
	Fatalf(format string, args ...any)
}

type recorder struct {
	t    *testing.T
	errs []string
}

func (r *recorder) Helper()             {}
func (r *recorder) Logf(string, ...any) {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatalf(format string, args ...any) { r.t.Fatalf(format, args...) }

func byKeyNoTest(objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
	m := map[string]*unstructured.Unstructured{}
	for _, u := range objs {
		m[key(u)] = u
	}
	return m
}
