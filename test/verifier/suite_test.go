// Package verifier runs keysmith's manager, with its verifier, on the real control plane and checks the
// verification contracts end to end: keys issued by the operator verify, scopes are enforced, overlaps
// and revocations take effect, an unsynced verifier refuses, lastUsedAt is flushed, the audit trail holds
// no key material, and a real nginx in front of an upstream honours the /authz contract.
package verifier

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/keysmith-dev/keysmith/internal/operator"
	"github.com/keysmith-dev/keysmith/internal/testenv"
	"github.com/keysmith-dev/keysmith/internal/verify"
)

var (
	cfg       *rest.Config
	k8s       client.Client
	clk       *clocktesting.FakeClock
	mgr       *operator.Manager
	writes    testenv.WriteCounter
	logs      testenv.Buffer
	auditPath string
	base      string // http://<verifier address>
)

const flushInterval = 2 * time.Second

func TestVerifier(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Verifier (envtest, manager + verifier)")
}

var _ = BeforeSuite(func() {
	ctrl.SetLogger(zap.New(zap.WriteTo(io.MultiWriter(&logs, GinkgoWriter))))
	env, c, err := testenv.Start()
	Expect(err).NotTo(HaveOccurred())
	cfg = c
	DeferCleanup(func() { Expect(env.Stop()).To(Succeed()) })
	k8s, err = client.New(cfg, client.Options{Scheme: operator.Scheme()})
	Expect(err).NotTo(HaveOccurred())

	clk = clocktesting.NewFakeClock(time.Now().UTC().Truncate(time.Second))
	auditPath = filepath.Join(GinkgoT().TempDir(), "audit.log")
	mgrCfg := rest.CopyConfig(cfg)
	writes.Wrap(mgrCfg)
	mgr, err = operator.NewManager(mgrCfg, operator.Options{
		MetricsBindAddress: "0", HealthProbeBindAddress: "0", Clock: clk,
		Verify: verify.Options{
			HTTPAddress: "127.0.0.1:0", GRPCAddress: "127.0.0.1:0",
			FlushInterval: flushInterval, AuditSink: auditPath,
		},
	})
	Expect(err).NotTo(HaveOccurred())
	base = "http://" + mgr.Verifier.HTTPAddr()
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(stopped)
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
	DeferCleanup(func() { cancel(); <-stopped })
})

var _ = AfterSuite(func() {
	b, err := os.ReadFile(auditPath)
	Expect(err).NotTo(HaveOccurred())
	Expect(len(b)).To(BeNumerically(">", 0))
	Expect(testenv.FindKeys(string(b))).To(BeZero(), "a key appears in the audit trail")
	Expect(testenv.FindKeys(logs.String())).To(BeZero(), "a key appears in the logs")
})
