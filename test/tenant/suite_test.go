// Package tenant reproduces, on the real control plane, what a namespace editor could do with keysmith
// before the tenant-safe verification work, and what the verifier must do with no operator running:
//   - a scope added to an ApiKey's spec opens nothing that keysmith has not granted (a policy that
//     forbids it keeps it closed), and a policy change takes effect for keys already issued;
//   - spec.disabled, keysmith.dev/revoke and deletion are refused by a standalone verifier within a
//     second while no manager runs;
//   - a verifier whose ApiKey watch is refused (429), while every other request succeeds, does not go on
//     answering from a state it no longer follows.
//
// The manager runs in-process until the specs that need it to be gone stop it; the standalone verifier
// (`keysmith verifier`) answers every check, over HTTP and gRPC.
package tenant

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/keysmith-dev/keysmith/internal/operator"
	"github.com/keysmith-dev/keysmith/internal/testenv"
	"github.com/keysmith-dev/keysmith/internal/verify"
)

var (
	cfg      *rest.Config
	k8s      client.Client
	logs     testenv.Buffer
	verifier *operator.Manager
	watches  = &watchBlocker{}
	// stopManager stops the in-process manager (as a crash or an uninstall would leave the cluster).
	stopManager func()
)

func TestTenant(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Tenant-safe verification (envtest, manager + standalone verifier)")
}

var _ = BeforeSuite(func() {
	ctrl.SetLogger(zap.New(zap.WriteTo(io.MultiWriter(&logs, GinkgoWriter))))
	env, c, err := testenv.Start()
	Expect(err).NotTo(HaveOccurred())
	cfg = c
	DeferCleanup(func() { Expect(env.Stop()).To(Succeed()) })
	k8s, err = client.New(cfg, client.Options{Scheme: operator.Scheme()})
	Expect(err).NotTo(HaveOccurred())

	mgr, err := operator.NewManager(cfg, operator.Options{
		MetricsBindAddress: "0", HealthProbeBindAddress: "0",
		Verify: verify.Options{HTTPAddress: "0", GRPCAddress: "0", AuditSink: GinkgoT().TempDir() + "/manager-audit.log"},
	})
	Expect(err).NotTo(HaveOccurred())
	stopManager = run(mgr)
	DeferCleanup(func() { stopManager() })

	vcfg := rest.CopyConfig(cfg)
	vcfg.Wrap(watches.wrap)
	verifier, err = operator.NewVerifierManager(vcfg, operator.VerifierOptions{
		MetricsBindAddress: "0", HealthProbeBindAddress: "0",
		Verify: verify.Options{HTTPAddress: "127.0.0.1:0", GRPCAddress: "127.0.0.1:0", AuditSink: GinkgoT().TempDir() + "/verifier-audit.log",
			MaxStaleness: 5 * time.Second},
	})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(run(verifier))
	Eventually(func() error { return verifier.Verifier.Index.Ready() }, 20*time.Second, 50*time.Millisecond).Should(Succeed())
})

var _ = AfterSuite(func() {
	Expect(testenv.FindKeys(logs.String())).To(BeZero(), "a key appears in the logs")
})

// run starts m and returns a function that stops it and waits until it has (it may be called again).
func run(m *operator.Manager) func() {
	stop := testenv.Run(m)
	return func() { Expect(stop()).To(Succeed()) }
}

// watchBlocker makes the API server refuse ApiKey watches with 429 while blocked (as an overloaded API
// server with priority and fairness does), and ends the watches already open; lists and gets pass.
type watchBlocker struct {
	mu      sync.Mutex
	blocked bool
	open    []io.Closer
	refused int
}

func (b *watchBlocker) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		isWatch := req.URL.Query().Get("watch") == "true" && strings.Contains(req.URL.Path, "/apikeys")
		if !isWatch {
			return rt.RoundTrip(req)
		}
		b.mu.Lock()
		if b.blocked {
			b.refused++
			b.mu.Unlock()
			return &http.Response{StatusCode: http.StatusTooManyRequests, Status: "429 Too Many Requests", Request: req,
				Header: http.Header{"Content-Type": {"application/json"}, "Retry-After": {"1"}},
				Body:   io.NopCloser(strings.NewReader(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"TooManyRequests","code":429,"message":"too many requests"}`))}, nil
		}
		b.mu.Unlock()
		resp, err := rt.RoundTrip(req)
		if err == nil {
			b.mu.Lock()
			b.open = append(b.open, resp.Body)
			b.mu.Unlock()
		}
		return resp, err
	})
}

// block refuses new watches and ends the open ones.
func (b *watchBlocker) block() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.blocked = true
	for _, c := range b.open {
		_ = c.Close()
	}
	b.open = nil
}

func (b *watchBlocker) unblock() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.blocked = false
}

func (b *watchBlocker) refusals() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.refused
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
