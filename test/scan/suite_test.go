// Package scan tests `kubectl apikey scan` as its users run it: the plugin binary, built from
// cmd/kubectl-apikey, with a kubeconfig of its own per user, against the real control plane
// (internal/testenv) with the manager and its verifier in process, and a standalone verifier (`keysmith
// verifier`) beside them. Keys are looked up, classified and revoked with each user's RBAC; the verifiers
// must refuse a key --revoke revoked, the standalone one also once the manager is stopped (the last spec
// of the ordered container stops it). The same package runs
// the real gitleaks (pinned in hack/tools) with config/scanners/gitleaks.toml and the pre-commit hook of
// .pre-commit-hooks.yaml. No command's output, and no log, may hold a key (testenv.FindKeys).
package scan

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/keys"
	"github.com/keysmith-dev/keysmith/internal/localcluster"
	"github.com/keysmith-dev/keysmith/internal/operator"
	"github.com/keysmith-dev/keysmith/internal/testenv"
	"github.com/keysmith-dev/keysmith/internal/verify"
)

const (
	eventually = 30 * time.Second
	poll       = 100 * time.Millisecond
	// The namespaces: the cluster-wide user sees both, the team user only teamNS.
	otherNS = "scan-payments"
	teamNS  = "scan-team-a"
)

var (
	ctx     = context.Background()
	cluster *localcluster.Cluster
	k8s     client.Client
	mgr     *operator.Manager
	// stopManager stops the in-process manager (and its verifier), as an operator that is down leaves
	// the cluster; the standalone verifier goes on.
	stopManager func() error
	logs        testenv.Buffer
	plugin      string // the kubectl-apikey binary
	// kubeconfigs: a user who may list and patch ApiKeys in every namespace, one who may in teamNS
	// only (the namespace of their kubeconfig's context), and one who may not list ApiKeys at all.
	clusterUser, teamUser, nobody string
	verifierURL, standaloneURL    string
	outputs                       testenv.Buffer // everything the commands printed, scanned at the end
)

func TestScan(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "kubectl apikey scan (local cluster, manager, plugin binary)")
}

func moduleRoot() string {
	dir, err := os.Getwd()
	Expect(err).NotTo(HaveOccurred())
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "cmd", "kubectl-apikey")); err == nil {
				return dir
			}
		}
		parent := filepath.Dir(dir)
		Expect(parent).NotTo(Equal(dir), "no module root")
		dir = parent
	}
}

func goBin() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

var _ = BeforeSuite(func() {
	ctrl.SetLogger(zap.New(zap.WriteTo(io.MultiWriter(&logs, GinkgoWriter))))
	// The plugin, built as make build builds it.
	bin := GinkgoT().TempDir()
	plugin = filepath.Join(bin, "kubectl-apikey")
	build := exec.Command(goBin(), "build", "-trimpath", "-o", plugin, "./cmd/kubectl-apikey")
	build.Dir = moduleRoot()
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "go build ./cmd/kubectl-apikey: %s", out)

	c, cfg, err := testenv.Start()
	Expect(err).NotTo(HaveOccurred())
	cluster = c
	DeferCleanup(func() { Expect(cluster.Stop()).To(Succeed()) })
	k8s, err = client.New(cfg, client.Options{Scheme: operator.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	mgr, stopManager, err = testenv.StartManager(cfg, GinkgoT().TempDir()+"/audit.log", nil)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(stopManager()).To(Succeed()) })
	verifierURL = "http://" + mgr.Verifier.HTTPAddr()
	standalone, err := operator.NewVerifierManager(cfg, operator.VerifierOptions{
		MetricsBindAddress: "0", HealthProbeBindAddress: "0",
		Verify: verify.Options{HTTPAddress: "127.0.0.1:0", GRPCAddress: "0", AuditSink: GinkgoT().TempDir() + "/verifier-audit.log"},
	})
	Expect(err).NotTo(HaveOccurred())
	stopStandalone := testenv.Run(standalone)
	DeferCleanup(func() { Expect(stopStandalone()).To(Succeed()) })
	Eventually(func() error { return standalone.Verifier.Index.Ready() }, eventually, poll).Should(Succeed())
	standaloneURL = "http://" + standalone.Verifier.HTTPAddr()

	for _, ns := range []string{otherNS, teamNS} {
		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	}
	rules := []rbacv1.PolicyRule{{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"apikeys"}, Verbs: []string{"get", "list", "watch", "patch"}}}
	Expect(k8s.Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "scan-apikeys"}, Rules: rules})).To(Succeed())
	Expect(k8s.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "scan-cluster-user"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "scan-apikeys"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "scan-cluster-user"}}})).To(Succeed())
	Expect(k8s.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: teamNS, Name: "scan-team-user"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "scan-apikeys"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "scan-team-user"}}})).To(Succeed())
	clusterUser = kubeconfig("scan-cluster-user", "")
	teamUser = kubeconfig("scan-team-user", teamNS)
	nobody = kubeconfig("scan-nobody", teamNS)
})

// kubeconfig writes a kubeconfig for a user (no groups: only the RBAC above applies), its context in
// namespace ns if given.
func kubeconfig(name, ns string) string {
	user, err := cluster.AddUser(envtest.User{Name: name}, nil)
	Expect(err).NotTo(HaveOccurred())
	b, err := user.KubeConfig()
	Expect(err).NotTo(HaveOccurred())
	cfg, err := clientcmd.Load(b)
	Expect(err).NotTo(HaveOccurred())
	if ns != "" {
		cfg.Contexts[cfg.CurrentContext].Namespace = ns
	}
	path := filepath.Join(GinkgoT().TempDir(), name+".kubeconfig")
	Expect(clientcmd.WriteToFile(*cfg, path)).To(Succeed())
	return path
}

var _ = AfterSuite(func() {
	Expect(testenv.FindKeys(logs.String())).To(BeZero(), "a key appears in the logs")
	Expect(testenv.FindKeys(outputs.String())).To(BeZero(), "a key appears in a command's output")
})

// result is one run of the plugin.
type result struct {
	code           int
	stdout, stderr string
}

// apikey runs `kubectl-apikey args...` in dir (the working directory when ""), with stdin, and fails
// the spec when its output holds a key; the output goes to GinkgoWriter (it holds no key).
func apikey(dir, stdin string, args ...string) result {
	GinkgoHelper()
	cmd := exec.Command(plugin, args...)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errOut.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		Expect(ok).To(BeTrue(), "running the plugin: %v", err)
		r.code = ee.ExitCode()
	}
	_, _ = outputs.Write([]byte(r.stdout + r.stderr))
	Expect(testenv.FindKeys(r.stdout+r.stderr)).To(BeZero(), "the plugin printed a key")
	fmt.Fprintf(GinkgoWriter, "$ kubectl-apikey %s\n%s%s(exit %d)\n", strings.Join(args, " "), r.stdout, r.stderr, r.code)
	return r
}

// issue creates an ApiKey and returns its current key once Ready.
func issue(ns, name string) string {
	GinkgoHelper()
	Expect(k8s.Create(ctx, &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.ApiKeySpec{Scopes: []string{"users:read"}, SecretName: name}})).To(Succeed())
	return currentKey(ns, name, "")
}

// currentKey waits until the ApiKey is Ready with a current key other than notID and returns it.
func currentKey(ns, name, notID string) string {
	GinkgoHelper()
	var key string
	Eventually(func(g Gomega) {
		ak := &v1alpha1.ApiKey{}
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, ak)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(ak.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue())
		g.Expect(ak.Status.CurrentKeyID).NotTo(BeEmpty())
		g.Expect(ak.Status.CurrentKeyID).NotTo(Equal(notID))
		s := &corev1.Secret{}
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, s)).To(Succeed())
		k := string(s.Data[v1alpha1.SecretKeyAPIKey])
		g.Expect(keys.ID(k)).To(Equal(ak.Status.CurrentKeyID))
		key = k
	}, eventually, poll).Should(Succeed())
	return key
}

// annotate sets an annotation with a merge patch.
func annotate(ns, name, k, v string) {
	GinkgoHelper()
	ak := &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, k, v)
	Expect(k8s.Patch(ctx, ak, client.RawPatch(types.MergePatchType, []byte(patch)))).To(Succeed())
}

// keyState returns the state status records for key id.
func keyState(ns, name, id string) v1alpha1.KeyState {
	GinkgoHelper()
	ak := &v1alpha1.ApiKey{}
	Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, ak)).To(Succeed())
	for _, k := range ak.Status.Keys {
		if k.ID == id {
			return k.State
		}
	}
	return ""
}

// brokenKey returns a string of a key's shape whose checksum does not hold.
func brokenKey(key string) string {
	GinkgoHelper()
	b := []byte(key)
	if b[len(b)-1] == 'x' {
		b[len(b)-1] = 'y'
	} else {
		b[len(b)-1] = 'x'
	}
	Expect(keys.Valid(string(b))).To(BeFalse())
	return string(b)
}

func newKey(env string) string {
	GinkgoHelper()
	k, err := keys.Generate("ks", env)
	Expect(err).NotTo(HaveOccurred())
	return k.Plaintext()
}

func writeFile(path, content string) {
	GinkgoHelper()
	Expect(os.MkdirAll(filepath.Dir(path), 0o755)).To(Succeed())
	Expect(os.WriteFile(path, []byte(content), 0o644)).To(Succeed())
}

// git runs git in dir with a configuration of its own (no user settings).
func git(dir string, args ...string) string {
	GinkgoHelper()
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com",
		"-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "git %s: %s", strings.Join(args, " "), out)
	return strings.TrimSpace(string(out))
}
