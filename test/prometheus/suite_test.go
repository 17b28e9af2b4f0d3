// Package prometheus lints keysmith's live /metrics with Prometheus' own promtool (`promtool check
// metrics`, bin/promtool from `make promtool`): the manager's, run in-process on the real control plane,
// and the standalone verifier's, run as the real `keysmith verifier` process (built from ./cmd/keysmith)
// so that its /metrics holds exactly what that process registers. ApiKeys are created, rotated on a
// schedule, disabled and deleted, and keys verified, so that every keysmith family has samples.
//
// The alerting rules and the dashboard are checked by `make prometheus-test` (hack/promtool.sh test, with
// rules_test.yaml in this directory); this suite also checks that every metric they read is in a live
// scrape.
package prometheus

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/keysmith-dev/keysmith/internal/operator"
	"github.com/keysmith-dev/keysmith/internal/testenv"
)

var (
	cfg      *rest.Config
	k8s      client.Client
	logs     testenv.Buffer
	promtool string
)

func TestPrometheus(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Prometheus (promtool check metrics on live scrapes of the manager and the verifier)")
}

var _ = BeforeSuite(func() {
	// First, so that a missing promtool fails at once, before the control plane starts.
	promtool = findPromtool()

	ctrl.SetLogger(zap.New(zap.WriteTo(io.MultiWriter(&logs, GinkgoWriter))))
	env, c, err := testenv.Start()
	Expect(err).NotTo(HaveOccurred())
	cfg = c
	DeferCleanup(func() { Expect(env.Stop()).To(Succeed()) })
	k8s, err = client.New(cfg, client.Options{Scheme: operator.Scheme()})
	Expect(err).NotTo(HaveOccurred())
})

var _ = AfterSuite(func() {
	Expect(testenv.FindKeys(logs.String())).To(BeZero(), "a key appears in the logs")
})

// moduleRoot is the directory of keysmith's go.mod, above the test's working directory.
func moduleRoot() string {
	dir, err := os.Getwd()
	Expect(err).NotTo(HaveOccurred())
	for {
		if _, err := os.Stat(filepath.Join(dir, "hack", "promtool.sh")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				return dir
			}
		}
		parent := filepath.Dir(dir)
		Expect(parent).NotTo(Equal(dir), "no module root with hack/promtool.sh above the working directory")
		dir = parent
	}
}

// findPromtool returns bin/promtool at the module root, else in the control plane's assets directory
// (KUBEBUILDER_ASSETS), and fails (not skips) when neither has it.
func findPromtool() string {
	candidates := []string{filepath.Join(moduleRoot(), "bin", "promtool")}
	if assets, err := testenv.Assets(); err == nil {
		candidates = append(candidates, filepath.Join(assets, "promtool"))
	}
	for _, p := range candidates {
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	Fail("promtool is missing (looked for " + candidates[0] + "): run `make promtool`")
	return ""
}
