// Package integration holds specs that drive keysmith's reconciler directly, without a manager, against
// the real control plane: here a client that fails on purpose stands between the reconciler and the API
// server, to show that a crash at any write converges to a correct state.
package integration

import (
	"io"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/keysmith-dev/keysmith/internal/localcluster"
	"github.com/keysmith-dev/keysmith/internal/operator"
	"github.com/keysmith-dev/keysmith/internal/testenv"
)

var (
	env  *localcluster.Cluster
	cfg  *rest.Config
	live client.Client
)

func TestIntegration(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Crash safety (envtest, interceptor client)")
}

var logs testenv.Buffer

var _ = BeforeSuite(func() {
	ctrl.SetLogger(zap.New(zap.WriteTo(io.MultiWriter(&logs, GinkgoWriter))))
	var err error
	env, cfg, err = testenv.Start()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(env.Stop()).To(Succeed()) })
	live, err = client.New(cfg, client.Options{Scheme: operator.Scheme()})
	Expect(err).NotTo(HaveOccurred())
})

var _ = AfterSuite(func() {
	Expect(logs.String()).To(ContainSubstring("issued key"), "the reconciler's logs were captured")
	Expect(testenv.FindKeys(logs.String())).To(BeZero(), "a key appears in the reconciler's logs")
})
