package gitops

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/keysmith-dev/keysmith/internal/testenv"
)

func TestGitOps(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "GitOps tools: Argo CD scripts, kstatus and kubectl wait (scripts offline, then the real control plane)")
}

// logs holds everything the in-process manager logs; no key may appear in it.
var logs testenv.Buffer

var _ = BeforeSuite(func() {
	ctrl.SetLogger(zap.New(zap.WriteTo(io.MultiWriter(&logs, GinkgoWriter))))
})

var _ = AfterSuite(func() {
	Expect(testenv.FindKeys(logs.String())).To(BeZero(), "a key appears in the logs")
})

var apiKeyGVK = schema.GroupVersionKind{Group: "keysmith.dev", Version: "v1alpha1", Kind: "ApiKey"}

// getObject reads an ApiKey from the API server (never a cache) as Argo CD, kstatus and kubectl see it.
func getObject(ctx context.Context, c client.Client, ns, name string) map[string]any {
	GinkgoHelper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(apiKeyGVK)
	Expect(c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, u)).To(Succeed())
	return u.Object
}

// kubectlRunner runs the control plane's kubectl (bin/kubectl, next to kube-apiserver) with a kubeconfig
// for an administrator.
type kubectlRunner struct{ bin, kubeconfig string }

func newKubectl(env interface {
	AddUser(envtest.User, *rest.Config) (*envtest.AuthenticatedUser, error)
}) kubectlRunner {
	GinkgoHelper()
	assets, err := testenv.Assets()
	Expect(err).NotTo(HaveOccurred())
	bin := filepath.Join(assets, "kubectl")
	Expect(bin).To(BeAnExistingFile(), "make controlplane builds kubectl")
	user, err := env.AddUser(envtest.User{Name: "gitops-admin", Groups: []string{"system:masters"}}, nil)
	Expect(err).NotTo(HaveOccurred())
	kc, err := user.KubeConfig()
	Expect(err).NotTo(HaveOccurred())
	path := filepath.Join(GinkgoT().TempDir(), "kubeconfig")
	Expect(os.WriteFile(path, kc, 0o600)).To(Succeed())
	return kubectlRunner{bin: bin, kubeconfig: path}
}

// run returns kubectl's combined output, its exit code and how long it took.
func (k kubectlRunner) run(args ...string) (string, int, time.Duration) {
	GinkgoHelper()
	start := time.Now()
	cmd := exec.Command(k.bin, append([]string{"--kubeconfig", k.kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	code := 0
	if err != nil {
		exit, ok := err.(*exec.ExitError)
		Expect(ok).To(BeTrue(), "kubectl did not run: %v", err)
		code = exit.ExitCode()
	}
	fmtOut := strings.TrimSpace(string(out))
	GinkgoWriter.Printf("$ kubectl %s\n%s\n(exit %d, %s)\n", strings.Join(args, " "), fmtOut, code, took.Round(100*time.Millisecond))
	return fmtOut, code, took
}

// writeGate makes the API server refuse the manager's writes to chosen resources of chosen namespaces
// (503, as an API server under maintenance or an admission webhook timing out would), so that a spec can
// hold an ApiKey in a state keysmith passes through quickly: no status yet, a status one generation
// behind, a key being issued.
type writeGate struct {
	mu      sync.Mutex
	blocked map[string]bool // namespace + " " + resource, for example "ns apikeys/status"
	refused map[string]int
}

func (g *writeGate) block(ns, resource string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.blocked[ns+" "+resource] = true
}

func (g *writeGate) unblock(ns, resource string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.blocked, ns+" "+resource)
}

func (g *writeGate) refusals(ns, resource string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.refused[ns+" "+resource]
}

func (g *writeGate) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		if req.Method == http.MethodGet || req.Method == http.MethodHead {
			return rt.RoundTrip(req)
		}
		ns, resource := namespacedResource(req.URL.Path)
		key := ns + " " + resource
		g.mu.Lock()
		blocked := g.blocked[key]
		if blocked {
			g.refused[key]++
		}
		g.mu.Unlock()
		if !blocked {
			return rt.RoundTrip(req)
		}
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return &http.Response{StatusCode: http.StatusServiceUnavailable, Status: "503 Service Unavailable", Request: req,
			Header: http.Header{"Content-Type": {"application/json"}},
			Body: io.NopCloser(strings.NewReader(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"ServiceUnavailable",` +
				`"code":503,"message":"the gitops suite holds this write back"}`))}, nil
	})
}

// namespacedResource reads ".../namespaces/NS/RESOURCE[/NAME[/SUBRESOURCE]]" as NS and
// RESOURCE[/SUBRESOURCE].
func namespacedResource(path string) (string, string) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	for i := 0; i+2 < len(parts); i++ {
		if parts[i] == "namespaces" {
			rest := parts[i+2:]
			resource := rest[0]
			if len(rest) > 2 {
				resource += "/" + rest[2]
			}
			return parts[i+1], resource
		}
	}
	return "", ""
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// offsetClock is the real clock moved forward by a chosen offset, for the manager and its verifier: a
// spec can let a key's lifetime pass at once.
type offsetClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *offsetClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *offsetClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

func (c *offsetClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}
