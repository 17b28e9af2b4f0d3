// Package cli runs the kubectl plugin as people run it: the kubectl-apikey binary, built from
// cmd/kubectl-apikey into a temporary directory on PATH, found and started by the real kubectl (bin/kubectl
// from make controlplane) as `kubectl apikey ...`, against the local control plane with keysmith's
// manager (and its verifier) in process. Each user has a kubeconfig of their own (client certificates,
// no system:masters) and only the RBAC bound here: alice the ApiKey editor and viewer roles of
// config/rbac in the payments namespace, carol the viewer role cluster-wide, bob nothing. No output may
// contain a key.
//
// The outputs of the commands docs/cli.md shows are written to bin/cli-transcript.md.
package cli

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
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	"github.com/keysmith-dev/keysmith/internal/localcluster"
	"github.com/keysmith-dev/keysmith/internal/operator"
	"github.com/keysmith-dev/keysmith/internal/testenv"
)

const (
	eventually = 30 * time.Second
	poll       = 100 * time.Millisecond
)

var (
	ctx     = context.Background()
	cluster *localcluster.Cluster
	k8s     client.Client // the administrator
	mgr     *operator.Manager
	logs    testenv.Buffer

	kubectl    string            // bin/kubectl
	pluginDir  string            // kubectl-apikey and kubectl_complete-apikey
	home       string            // HOME of every run (kubectl's cache)
	kubeconfig map[string]string // user -> kubeconfig path
)

func TestCLI(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "kubectl apikey (the real kubectl, the plugin binary, per-user RBAC, local cluster, manager)")
}

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

var _ = BeforeSuite(func() {
	ctrl.SetLogger(zap.New(zap.WriteTo(io.MultiWriter(&logs, GinkgoWriter))))

	// Build the plugin while the control plane starts.
	pluginDir = GinkgoT().TempDir()
	home = GinkgoT().TempDir()
	built := make(chan error, 1)
	go func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		cmd := exec.Command(goBin, "build", "-trimpath", "-o", filepath.Join(pluginDir, "kubectl-apikey"), "./cmd/kubectl-apikey")
		cmd.Dir = moduleRoot()
		out, err := cmd.CombinedOutput()
		if err != nil {
			err = fmt.Errorf("go build ./cmd/kubectl-apikey: %w\n%s", err, out)
		}
		built <- err
	}()
	script, err := os.ReadFile(filepath.Join(moduleRoot(), "dist", "krew", "kubectl_complete-apikey"))
	Expect(err).NotTo(HaveOccurred())
	Expect(os.WriteFile(filepath.Join(pluginDir, "kubectl_complete-apikey"), script, 0o755)).To(Succeed())

	c, cfg, err := testenv.Start()
	Expect(err).NotTo(HaveOccurred())
	cluster = c
	DeferCleanup(func() { Expect(cluster.Stop()).To(Succeed()) })
	k8s, err = client.New(cfg, client.Options{Scheme: operator.Scheme()})
	Expect(err).NotTo(HaveOccurred())

	var stop func() error
	mgr, stop, err = testenv.StartManager(cfg, GinkgoT().TempDir()+"/audit.log", func(o *operator.Options) { o.Verify.FlushInterval = time.Second })
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(stop()).To(Succeed()) })

	assets, err := testenv.Assets()
	Expect(err).NotTo(HaveOccurred())
	kubectl = filepath.Join(assets, "kubectl")
	Expect(kubectl).To(BeAnExistingFile(), "make controlplane builds kubectl")

	// The roles as config/rbac ships them, and the users.
	for _, f := range []string{"config/rbac/apikey_editor_role.yaml", "config/rbac/apikey_viewer_role.yaml"} {
		b, err := os.ReadFile(filepath.Join(moduleRoot(), f))
		Expect(err).NotTo(HaveOccurred())
		role := &rbacv1.ClusterRole{}
		Expect(yaml.UnmarshalStrict(b, role)).To(Succeed())
		Expect(k8s.Create(ctx, role)).To(Succeed())
	}
	kubeconfig = map[string]string{}
	for _, u := range []struct {
		name   string
		groups []string
	}{{"admin", []string{"system:masters"}}, {"alice", nil}, {"bob", nil}, {"carol", nil}} {
		user, err := cluster.AddUser(envtest.User{Name: u.name, Groups: u.groups}, nil)
		Expect(err).NotTo(HaveOccurred())
		kc, err := user.KubeConfig()
		Expect(err).NotTo(HaveOccurred())
		path := filepath.Join(GinkgoT().TempDir(), u.name+".kubeconfig")
		Expect(os.WriteFile(path, kc, 0o600)).To(Succeed())
		kubeconfig[u.name] = path
	}
	Expect(<-built).To(Succeed())
})

var _ = AfterSuite(func() {
	Expect(testenv.FindKeys(logs.String())).To(BeZero(), "a key appears in the logs")
	writeTranscript()
})

// bindInNamespace binds user to the ClusterRoles in namespace ns only.
func bindInNamespace(ns, user string, roles ...string) {
	for _, r := range roles {
		Expect(k8s.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user + "-" + r},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: r},
		})).To(Succeed())
	}
}

// bindClusterWide binds user to the ClusterRole in every namespace.
func bindClusterWide(user, role string) {
	Expect(k8s.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user + "-" + role},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
	})).To(Succeed())
}

// result is one run of kubectl.
type result struct {
	args     []string
	out, err string
	code     int
	took     time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("kubectl %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.code, r.out, r.err)
}

// run runs the real kubectl as user, with the plugin's directory first on PATH. Every output is
// checked for keys.
func run(user string, args ...string) result {
	GinkgoHelper()
	return runIn("", user, args...)
}

// runIn is run with stdin as the standard input.
func runIn(stdin, user string, args ...string) result {
	GinkgoHelper()
	cmd := exec.Command(kubectl, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), "PATH="+pluginDir+string(os.PathListSeparator)+os.Getenv("PATH"),
		"KUBECONFIG="+kubeconfig[user], "HOME="+home)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{args: args, out: stdout.String(), err: stderr.String(), took: time.Since(start)}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else {
		Expect(err).NotTo(HaveOccurred())
	}
	Expect(testenv.FindKeys(r.out)).To(BeZero(), "a key appears in the output of kubectl %s", strings.Join(args, " "))
	Expect(testenv.FindKeys(r.err)).To(BeZero(), "a key appears in the errors of kubectl %s", strings.Join(args, " "))
	return r
}

// apikey runs `kubectl apikey args...` as user and expects exit code 0.
func apikey(user string, args ...string) result {
	GinkgoHelper()
	r := run(user, append([]string{"apikey"}, args...)...)
	Expect(r.code).To(BeZero(), "%s", r)
	return r
}

// apikeyFails runs `kubectl apikey args...` as user and expects exit code code.
func apikeyFails(code int, user string, args ...string) result {
	GinkgoHelper()
	r := run(user, append([]string{"apikey"}, args...)...)
	Expect(r.code).To(Equal(code), "%s", r)
	return r
}

// The transcript: what docs/cli.md shows, in the order recorded.
var (
	transcriptMu sync.Mutex
	transcript   []string
)

// record keeps a run for the transcript, under a title, as `$ kubectl ...` followed by its output.
func record(title string, r result) {
	transcriptMu.Lock()
	defer transcriptMu.Unlock()
	var b strings.Builder
	args := make([]string, len(r.args))
	for i, a := range r.args {
		args[i] = a
		if a == "" {
			args[i] = `""`
		}
	}
	fmt.Fprintf(&b, "### %s\n\n```console\n$ kubectl %s\n%s%s```\n", title, strings.Join(args, " "), r.out, r.err)
	if r.code != 0 {
		fmt.Fprintf(&b, "exit code %d\n", r.code)
	}
	transcript = append(transcript, b.String())
}

func writeTranscript() {
	transcriptMu.Lock()
	defer transcriptMu.Unlock()
	if len(transcript) == 0 {
		return
	}
	path := filepath.Join(moduleRoot(), "bin", "cli-transcript.md")
	body := "<!-- written by go test ./test/cli at " + time.Now().UTC().Format(time.RFC3339) + " -->\n\n" + strings.Join(transcript, "\n")
	Expect(os.MkdirAll(filepath.Dir(path), 0o755)).To(Succeed())
	Expect(os.WriteFile(path, []byte(body), 0o644)).To(Succeed())
	fmt.Fprintf(GinkgoWriter, "transcript: %s\n", path)
}
