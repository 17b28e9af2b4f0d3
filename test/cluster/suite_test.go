// Package cluster checks what a cluster does to keysmith's objects, with the garbage collector and the
// namespace controller of kube-controller-manager running beside the API server (internal/localcluster):
// an ApiKey deleted with background, foreground or orphaning propagation, and a namespace deleted with
// its ApiKeys in it. The manager runs in-process with its verifier; kubectl is the real one from bin/.
package cluster

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/keysmith-dev/keysmith/internal/localcluster"
	"github.com/keysmith-dev/keysmith/internal/operator"
	"github.com/keysmith-dev/keysmith/internal/testenv"
)

const (
	eventually = 30 * time.Second
	poll       = 100 * time.Millisecond
)

var (
	ctx        = context.Background()
	cluster    *localcluster.Cluster
	k8s        client.Client
	mgr        *operator.Manager
	logs       testenv.Buffer
	kubectl    string
	kubeconfig string
)

func TestCluster(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Garbage collector and namespace controller (local cluster, manager)")
}

var _ = BeforeSuite(func() {
	ctrl.SetLogger(zap.New(zap.WriteTo(io.MultiWriter(&logs, GinkgoWriter))))
	c, cfg, err := testenv.Start()
	Expect(err).NotTo(HaveOccurred())
	cluster = c
	DeferCleanup(func() { Expect(cluster.Stop()).To(Succeed()) })
	k8s, err = client.New(cfg, client.Options{Scheme: operator.Scheme()})
	Expect(err).NotTo(HaveOccurred())

	var stop func() error
	mgr, stop, err = testenv.StartManager(cfg, GinkgoT().TempDir()+"/audit.log", nil)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(stop()).To(Succeed()) })

	assets, err := testenv.Assets()
	Expect(err).NotTo(HaveOccurred())
	kubectl = filepath.Join(assets, "kubectl")
	user, err := cluster.AddUser(envtest.User{Name: "cluster-test-admin", Groups: []string{"system:masters"}}, nil)
	Expect(err).NotTo(HaveOccurred())
	kc, err := user.KubeConfig()
	Expect(err).NotTo(HaveOccurred())
	kubeconfig = filepath.Join(GinkgoT().TempDir(), "kubeconfig")
	Expect(os.WriteFile(kubeconfig, kc, 0o600)).To(Succeed())
})

var _ = ReportAfterEach(func(r SpecReport) {
	if r.Failed() {
		AddReportEntry("kube-controller-manager log", cluster.ControllerManagerLog(40))
	}
})

var _ = AfterSuite(func() {
	Expect(testenv.FindKeys(logs.String())).To(BeZero(), "a key appears in the logs")
})
