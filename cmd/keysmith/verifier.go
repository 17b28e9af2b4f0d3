package main

import (
	"flag"
	"fmt"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/keysmith-dev/keysmith/internal/operator"
)

func runVerifier(args []string) error {
	fs := flag.NewFlagSet("keysmith verifier", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: keysmith verifier [flags]\n\nRuns only the verification service (no controller, no leader election, no Secret access), for a\ndedicated Deployment that scales horizontally. Needs get/list/watch on apikeys, patch on apikeys/status,\nand create on tokenreviews and subjectaccessreviews for the authenticated /metrics (--metrics-secure).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	o := operator.VerifierOptions{}
	metricsFlags(fs, &o.MetricsBindAddress, &o.InsecureMetrics, &o.MetricsCertDir)
	fs.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints; \"0\" disables them.")
	o.Verify.BindFlags(fs)
	zo := &zap.Options{}
	zo.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	return start(zo, func(cfg *rest.Config) (*operator.Manager, error) { return operator.NewVerifierManager(cfg, o) },
		"starting keysmith verifier")
}
