// Package rbac checks keysmith's least-privilege install on the real control plane (envtest's
// kube-apiserver with RBAC authorization): the standalone verifier's ServiceAccount may write lastUsedAt
// and nothing else (its ClusterRole plus the ValidatingAdmissionPolicy in config/verifier), /metrics of
// the manager and the verifier answer only authenticated and authorized scrapers, and the kustomize
// builds of config/default and config/verifier are objects the API server accepts.
//
// Everything is read from the manifests in config/, as users apply them; the identities are
// impersonated exactly as the API server authenticates a ServiceAccount.
package rbac

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/keysmith-dev/keysmith/internal/localcluster"
	"github.com/keysmith-dev/keysmith/internal/operator"
	"github.com/keysmith-dev/keysmith/internal/testenv"
)

const (
	systemNamespace = "keysmith-system"
	verifierSA      = "keysmith-verifier"
	managerSA       = "keysmith-manager"
	fieldOwner      = "keysmith-rbac-test"
)

var (
	env       *localcluster.Cluster
	cfg       *rest.Config // the envtest administrator (system:masters)
	k8s       client.Client
	clientset *kubernetes.Clientset
	logs      testenv.Buffer
)

func TestRBAC(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Least privilege (envtest, RBAC authorization)")
}

var _ = BeforeSuite(func() {
	ctrl.SetLogger(zap.New(zap.WriteTo(io.MultiWriter(&logs, GinkgoWriter))))
	e, c, err := testenv.StartWith(nil) // envtest runs kube-apiserver with --authorization-mode=RBAC
	Expect(err).NotTo(HaveOccurred())
	env, cfg = e, c
	DeferCleanup(func() { Expect(env.Stop()).To(Succeed()) })
	k8s, err = client.New(cfg, client.Options{Scheme: operator.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	clientset, err = kubernetes.NewForConfig(cfg)
	Expect(err).NotTo(HaveOccurred())

	// What config/default and config/verifier install for these identities, file by file.
	for _, f := range []string{
		"config/manager/namespace.yaml",
		"config/rbac/service_account.yaml",
		"config/rbac/role.yaml",
		"config/rbac/role_binding.yaml",
		"config/rbac/metrics_auth_role.yaml",
		"config/rbac/metrics_auth_role_binding.yaml",
		"config/rbac/metrics_reader_role.yaml",
		"config/rbac/verifier_role.yaml",
		"config/verifier/rbac.yaml",
		"config/verifier/policy.yaml",
	} {
		applyAll(readManifests(f))
	}

	By("RBAC is enforced: a ServiceAccount without bindings may not list ConfigMaps")
	nobody := impersonate(systemNamespace, "nobody")
	err = nobody.List(context.Background(), &corev1.ConfigMapList{}, client.InNamespace(systemNamespace))
	Expect(apierrors.IsForbidden(err)).To(BeTrue(), "expected 403, got %v", err)
})

// moduleRoot is the repository checkout (test/rbac/../..).
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// readManifests decodes every document of a YAML file relative to the module root.
func readManifests(path string) []*unstructured.Unstructured {
	b, err := os.ReadFile(filepath.Join(moduleRoot(), path))
	Expect(err).NotTo(HaveOccurred())
	return decodeManifests(b)
}

func decodeManifests(b []byte) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		obj := map[string]any{}
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			return out
		}
		Expect(err).NotTo(HaveOccurred())
		if len(obj) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: obj})
	}
}

// applyAll server-side applies the objects as the administrator, as `kubectl apply --server-side` does.
func applyAll(objs []*unstructured.Unstructured, opts ...client.ApplyOption) {
	opts = append([]client.ApplyOption{client.FieldOwner(fieldOwner), client.ForceOwnership}, opts...)
	for _, u := range objs {
		Expect(k8s.Apply(context.Background(), client.ApplyConfigurationFromUnstructured(u.DeepCopy()), opts...)).
			To(Succeed(), "applying %s %s/%s", u.GetKind(), u.GetNamespace(), u.GetName())
	}
}

// serviceAccountUser is the user name the API server gives a ServiceAccount's tokens.
func serviceAccountUser(ns, name string) string {
	return "system:serviceaccount:" + ns + ":" + name
}

// impersonatedConfig authenticates as the ServiceAccount ns/name, with the groups its token carries.
func impersonatedConfig(ns, name string) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.Impersonate = rest.ImpersonationConfig{
		UserName: serviceAccountUser(ns, name),
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
	}
	return c
}

func impersonate(ns, name string) client.Client {
	c, err := client.New(impersonatedConfig(ns, name), client.Options{Scheme: operator.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	return c
}

func newNamespace(prefix string, labels map[string]string) string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-", Labels: labels}}
	Expect(k8s.Create(context.Background(), ns)).To(Succeed())
	return ns.Name
}

// kustomize builds a kustomization directory with the pinned kustomize (hack/tools/go.mod), as
// `make deploy` does.
func kustomize(dir string) []byte {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go") // go test did not put go on PATH
	}
	cmd := exec.Command(goBin, "tool", "-modfile=hack/tools/go.mod", "kustomize", "build", dir)
	cmd.Dir = moduleRoot()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	Expect(err).NotTo(HaveOccurred(), fmt.Sprintf("kustomize build %s: %s", dir, stderr.String()))
	return out
}

// kubectl runs the control plane's kubectl (built by make controlplane next to kube-apiserver) as the
// administrator and returns its combined output.
func kubectl(args ...string) (string, error) {
	GinkgoHelper()
	assets, err := testenv.Assets()
	Expect(err).NotTo(HaveOccurred())
	bin := filepath.Join(assets, "kubectl")
	Expect(bin).To(BeAnExistingFile(), "make controlplane builds kubectl")
	user, err := env.AddUser(envtest.User{Name: "rbac-test-admin", Groups: []string{"system:masters"}}, nil)
	Expect(err).NotTo(HaveOccurred())
	kc, err := user.KubeConfig()
	Expect(err).NotTo(HaveOccurred())
	path := filepath.Join(GinkgoT().TempDir(), "kubeconfig")
	Expect(os.WriteFile(path, kc, 0o600)).To(Succeed())
	out, err := exec.Command(bin, append([]string{"--kubeconfig", path}, args...)...).CombinedOutput()
	return string(out), err
}
