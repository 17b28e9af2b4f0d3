package helm

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"

	"github.com/keysmith-dev/keysmith/internal/testenv"
)

const fieldManager = "keysmith-helm-test"

// server applies objects to the real API server with server-side apply and strict field validation, as
// `kubectl apply --server-side` does (which validates strictly by default).
type server struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newServer(t *testing.T, cfg *rest.Config) *server {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &server{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))}
}

func (s *server) resource(u *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := u.GroupVersionKind()
	m, err := s.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, err
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return s.dyn.Resource(m.Resource).Namespace(u.GetNamespace()), nil
	}
	return s.dyn.Resource(m.Resource), nil
}

// apply server-side applies u; with dryRun nothing is stored (dryRun=All: admission and validation run).
func (s *server) apply(u *unstructured.Unstructured, dryRun bool) error {
	ri, err := s.resource(u)
	if err != nil {
		return err
	}
	b, err := json.Marshal(u.Object)
	if err != nil {
		return err
	}
	opts := metav1.PatchOptions{FieldManager: fieldManager, Force: ptr.To(true), FieldValidation: "Strict"}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	_, err = ri.Patch(context.Background(), u.GetName(), types.ApplyPatchType, b, opts)
	return err
}

func (s *server) get(gvk schema.GroupVersionKind, ns, name string) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	u.SetNamespace(ns)
	ri, err := s.resource(u)
	if err != nil {
		return nil, err
	}
	return ri.Get(context.Background(), name, metav1.GetOptions{})
}

// waitForKinds resets the discovery cache until every kind is served (CRDs just created).
func (s *server) waitForKinds(t *testing.T, gvks ...schema.GroupVersionKind) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, gvk := range gvks {
		for {
			s.mapper.Reset()
			if _, err := s.mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err == nil {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("%s is not served: %v", gvk, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

func namespaceObject(name string, labels map[string]string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace"}}
	u.SetName(name)
	u.SetLabels(labels)
	return u
}

var restricted = map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}

// podOf is a Pod with a Deployment's pod template, in its namespace: what the ReplicaSet would create,
// so that Pod Security admission judges it (a Deployment itself only draws warnings).
func podOf(d *unstructured.Unstructured) *unstructured.Unstructured {
	tmpl, _, _ := unstructured.NestedMap(d.Object, "spec", "template")
	pod := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": tmpl["metadata"], "spec": tmpl["spec"]}}
	pod.SetName(d.GetName() + "-pod-security")
	pod.SetNamespace(d.GetNamespace())
	return pod
}

// kubeconfig writes a kubeconfig for cfg's user (the control plane's administrator).
func kubeconfig(t *testing.T, cfg *rest.Config) string {
	t.Helper()
	host := cfg.Host
	if !strings.Contains(host, "://") {
		host = "https://" + host
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["local"] = &clientcmdapi.Cluster{Server: host, CertificateAuthorityData: cfg.CAData, CertificateAuthority: cfg.CAFile}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: cfg.CertData, ClientCertificate: cfg.CertFile,
		ClientKeyData: cfg.KeyData, ClientKey: cfg.KeyFile, Token: cfg.BearerToken,
	}
	kc.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "admin"}
	kc.CurrentContext = "local"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

var (
	crdGVK       = schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"}
	configMapGVK = schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}
	deployGVK    = schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
)

// The chart on the real API server: every object it renders is accepted (server-side dry run with strict
// field validation, Pod Security restricted for its pods), a broken object is not, and helm install,
// install --dry-run=server and uninstall work, keeping the CRDs and Argo CD's ConfigMap.
func TestAPIServer(t *testing.T) {
	env, cfg, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping the control plane: %v", err)
		}
	})
	s := newServer(t, cfg)
	kc := kubeconfig(t, cfg)

	for _, ns := range []*unstructured.Unstructured{
		namespaceObject(namespace, restricted), namespaceObject("platform", restricted), namespaceObject("argocd", nil),
	} {
		if err := s.apply(ns, false); err != nil {
			t.Fatal(err)
		}
	}
	values := map[string][]*unstructured.Unstructured{
		"defaults": render(t, release, namespace),
		"everything on, release keysmith": render(t, release, namespace,
			"-f", chartDir+"/ci/all-values.yaml", "-f", chartDir+"/ci/argocd-values.yaml"),
		"everything on, release acme in platform": render(t, "acme", "platform",
			"-f", chartDir+"/ci/all-values.yaml", "-f", chartDir+"/ci/argocd-values.yaml"),
	}
	all := values["everything on, release keysmith"]

	// The chart's CRDs for real (testenv installed config/'s already: the same, or this reports the
	// difference), then prometheus-operator's kinds.
	for _, crd := range ofKind(values["defaults"], "CustomResourceDefinition") {
		if err := s.apply(crd, false); err != nil {
			t.Fatalf("%s: %v", key(crd), err)
		}
	}
	b, err := os.ReadFile(filepath.Join(moduleRoot(), "test", "helm", "testdata", "monitoring.coreos.com.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, crd := range decode(t, b) {
		if err := s.apply(crd, false); err != nil {
			t.Fatalf("%s: %v", key(crd), err)
		}
	}
	s.waitForKinds(t,
		schema.GroupVersionKind{Group: "keysmith.dev", Version: "v1alpha1", Kind: "ApiKey"},
		schema.GroupVersionKind{Group: "monitoring.coreos.com", Version: "v1", Kind: "ServiceMonitor"},
		schema.GroupVersionKind{Group: "monitoring.coreos.com", Version: "v1", Kind: "PrometheusRule"})

	t.Run("accepts every rendered object", func(t *testing.T) {
		for _, name := range keys(values) {
			n := 0
			for _, u := range values[name] {
				if err := s.apply(u, true); err != nil {
					t.Errorf("%s: %s refused: %v", name, key(u), err)
				}
				n++
			}
			t.Logf("%s: %d objects accepted", name, n)
		}
		if n := len(all); n < 25 {
			t.Errorf("everything on renders only %d objects", n)
		}
	})

	t.Run("admits the pods at Pod Security restricted", func(t *testing.T) {
		for _, name := range []string{"everything on, release keysmith", "everything on, release acme in platform"} {
			deployments := ofKind(values[name], "Deployment")
			if len(deployments) != 2 {
				t.Fatalf("%s: %d Deployments, want 2", name, len(deployments))
			}
			for _, d := range deployments {
				if err := s.apply(podOf(d), true); err != nil {
					t.Errorf("%s: a pod of %s: %v", name, key(d), err)
				}
			}
		}
	})

	t.Run("refuses broken objects", func(t *testing.T) {
		manager := byKey(t, all)["Deployment keysmith-system/keysmith-manager"].DeepCopy()
		cs, _, _ := unstructured.NestedSlice(manager.Object, "spec", "template", "spec", "containers")
		cs[0].(map[string]any)["argz"] = []any{"manager"}
		_ = unstructured.SetNestedSlice(manager.Object, cs, "spec", "template", "spec", "containers")

		monitor := byKey(t, all)["ServiceMonitor keysmith-system/keysmith-manager"].DeepCopy()
		eps, _, _ := unstructured.NestedSlice(monitor.Object, "spec", "endpoints")
		eps[0].(map[string]any)["scheme"] = "ftp"
		_ = unstructured.SetNestedSlice(monitor.Object, eps, "spec", "endpoints")

		root := podOf(byKey(t, all)["Deployment keysmith-system/keysmith-verifier"])
		unstructured.RemoveNestedField(root.Object, "spec", "securityContext")

		for _, tc := range []struct {
			what string
			obj  *unstructured.Unstructured
			want string
		}{
			{"a Deployment with an unknown container field", manager, `.argz: field not declared in schema`},
			{"a ServiceMonitor with scheme ftp", monitor, `Unsupported value: "ftp"`},
			{"a pod without its pod security context", root, `violates PodSecurity "restricted:latest"`},
		} {
			err := s.apply(tc.obj, true)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: got %v, want an error with %q", tc.what, err, tc.want)
			}
		}
	})

	t.Run("kubectl apply --server-side --dry-run=server", func(t *testing.T) {
		assets, err := testenv.Assets()
		if err != nil {
			t.Fatal(err)
		}
		manifest := filepath.Join(t.TempDir(), "keysmith.yaml")
		if err := os.WriteFile(manifest, helm(t, "template", release, chartDir, "--namespace", namespace), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(filepath.Join(assets, "kubectl"), "--kubeconfig", kc,
			"apply", "--server-side", "--dry-run=server", "-f", manifest).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl apply: %v\n%s", err, out)
		}
		t.Logf("helm template keysmith dist/chart -n keysmith-system | kubectl apply --server-side --dry-run=server -f -\n%s", out)
	})

	t.Run("helm install and uninstall", func(t *testing.T) {
		// A fresh cluster has no keysmith CRDs; testenv's (and this test's) are not Helm's, and Helm refuses
		// to take over objects it does not own (unless --take-ownership).
		for _, crd := range ofKind(values["defaults"], "CustomResourceDefinition") {
			ri, _ := s.resource(crd)
			if err := ri.Delete(context.Background(), crd.GetName(), metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			waitGone(t, s, crdGVK, "", crd.GetName())
		}
		env := helmEnv(t)
		run := func(args ...string) string {
			t.Helper()
			out, stderr, err := tool(env, "helm", append(args, "--kubeconfig", kc)...)
			if err != nil {
				t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
			}
			return string(out) + stderr
		}

		out := run("install", release, chartDir, "--namespace", namespace, "--dry-run=server")
		t.Logf("helm install keysmith dist/chart -n keysmith-system --dry-run=server\n%s", firstLines(out, 12))
		for _, want := range []string{"STATUS: pending-install", "kind: Deployment", "NOTES:", "kubectl -n payments wait --for=condition=Ready apikey/billing-api"} {
			if !strings.Contains(out, want) {
				t.Errorf("helm install --dry-run=server printed no %q", want)
			}
		}
		if _, err := s.get(crdGVK, "", "apikeys.keysmith.dev"); !apierrors.IsNotFound(err) {
			t.Errorf("helm install --dry-run=server created the CRD (%v)", err)
		}

		// Argo CD installed from its manifests: argocd-cm exists, owned by no Helm release.
		argocdCM := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
			"data": map[string]any{"url": "https://argocd.example.com"}}}
		argocdCM.SetName("argocd-cm")
		argocdCM.SetNamespace("argocd")
		argocdCM.SetLabels(map[string]string{"app.kubernetes.io/name": "argocd-cm", "app.kubernetes.io/part-of": "argocd"})
		if err := s.apply(argocdCM, false); err != nil {
			t.Fatal(err)
		}
		out = run("install", release, chartDir, "--namespace", namespace, "--take-ownership",
			"-f", chartDir+"/ci/all-values.yaml", "-f", chartDir+"/ci/argocd-values.yaml")
		t.Logf("helm install keysmith dist/chart -n keysmith-system --take-ownership -f ci/all-values.yaml -f ci/argocd-values.yaml\n%s", out)
		for _, name := range []string{"keysmith-manager", "keysmith-verifier"} {
			if _, err := s.get(deployGVK, namespace, name); err != nil {
				t.Errorf("after helm install: Deployment %s: %v", name, err)
			}
		}
		cm, err := s.get(configMapGVK, "argocd", "argocd-cm")
		if err != nil {
			t.Fatal(err)
		}
		data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
		for _, k := range []string{"url", "resource.customizations.health.keysmith.dev_ApiKey", "resource.customizations.actions.keysmith.dev_ApiKey"} {
			if data[k] == "" {
				t.Errorf("argocd-cm after helm install --take-ownership lacks %s (has %v)", k, keys(data))
			}
		}
		if l := cm.GetLabels(); l["app.kubernetes.io/name"] != "argocd-cm" || l["app.kubernetes.io/part-of"] != "argocd" {
			t.Errorf("argocd-cm lost Argo CD's labels: %v", l)
		}

		// The ApiKey NOTES.txt tells to apply is one the API server accepts.
		var sample string
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, `"kind": "ApiKey"`) && strings.Count(line, "'") == 2 {
				sample = line[strings.Index(line, "'")+1 : strings.LastIndex(line, "'")]
			}
		}
		apikey := &unstructured.Unstructured{}
		if err := json.Unmarshal([]byte(sample), &apikey.Object); err != nil {
			t.Errorf("NOTES.txt: no ApiKey in JSON (%v) in:\n%s", err, out)
		} else {
			if err := s.apply(namespaceObject(apikey.GetNamespace(), nil), false); err != nil {
				t.Fatal(err)
			}
			if err := s.apply(apikey, true); err != nil {
				t.Errorf("NOTES.txt's ApiKey: %v", err)
			}
		}

		out = run("uninstall", release, "--namespace", namespace)
		t.Logf("helm uninstall keysmith -n keysmith-system\n%s", out)
		for _, kept := range []string{"apikeys.keysmith.dev", "apikeypolicies.keysmith.dev"} {
			if !strings.Contains(out, kept) {
				t.Errorf("helm uninstall did not report keeping %s", kept)
			}
			if _, err := s.get(crdGVK, "", kept); err != nil {
				t.Errorf("CRD %s after helm uninstall: %v", kept, err)
			}
		}
		if cm, err := s.get(configMapGVK, "argocd", "argocd-cm"); err != nil {
			t.Errorf("argocd-cm after helm uninstall: %v", err)
		} else if d, _, _ := unstructured.NestedStringMap(cm.Object, "data"); d["url"] == "" {
			t.Errorf("argocd-cm lost Argo CD's own settings: %v", keys(d))
		}
		waitGone(t, s, deployGVK, namespace, "keysmith-manager")
	})
}

func waitGone(t *testing.T, s *server, gvk schema.GroupVersionKind, ns, name string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := s.get(gvk, ns, name)
		if apierrors.IsNotFound(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s/%s still there after 30 s (%v)", gvk.Kind, ns, name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = append(lines[:n], fmt.Sprintf("... (%d more lines)", strings.Count(s, "\n")-n))
	}
	return strings.Join(lines, "\n")
}
