//go:build dev

package main

import (
	"context"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/keysmith-dev/keysmith/config"
	"github.com/keysmith-dev/keysmith/internal/localcluster"
	"github.com/keysmith-dev/keysmith/internal/operator"
)

func runDev(args []string) error {
	flags := flag.NewFlagSet("keysmith dev", flag.ContinueOnError)
	flags.Usage = func() {
		fmt.Fprintf(flags.Output(), "Usage: keysmith dev [flags]\n\nStarts a local control plane (etcd, kube-apiserver and kube-controller-manager with the garbage\ncollector and the namespace controller, from --assets, built by 'make controlplane'),\ninstalls the CRDs, runs the operator and applies the samples. Ctrl-C stops everything.\n\nFlags:\n")
		flags.PrintDefaults()
	}
	assets := flags.String("assets", "bin", "Directory holding kube-apiserver, kube-controller-manager, etcd and kubectl.")
	samples := flags.String("samples", "", "Directory of manifests to apply at start (default: the embedded config/samples).")
	stateDir := flags.String("state-dir", ".dev", "Directory for the kubeconfig.")
	o, zo := managerFlags(flags)
	if err := flags.Parse(args); err != nil {
		return err
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(zo)))
	o.LeaderElection = false
	// Locally, /metrics is plain HTTP on the loopback interface unless --metrics-secure is given.
	metricsSecureSet := false
	flags.Visit(func(f *flag.Flag) { metricsSecureSet = metricsSecureSet || f.Name == "metrics-secure" })
	if !metricsSecureSet {
		o.InsecureMetrics = true
	}
	if o.MetricsBindAddress == ":8443" {
		o.MetricsBindAddress = "127.0.0.1:8080"
	}
	if o.HealthProbeBindAddress == ":8081" {
		o.HealthProbeBindAddress = "127.0.0.1:8081"
	}
	if o.Verify.HTTPAddress == ":8083" {
		o.Verify.HTTPAddress = "127.0.0.1:8083"
	}
	if o.Verify.GRPCAddress == ":8084" {
		o.Verify.GRPCAddress = "127.0.0.1:8084"
	}
	if o.Verify.AuditSink == "stdout" {
		o.Verify.AuditSink = filepath.Join(*stateDir, "audit.log")
	}
	if err := os.MkdirAll(*stateDir, 0o700); err != nil {
		return err
	}

	crds, err := operator.CRDs()
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(*assets)
	if err != nil {
		return err
	}
	fmt.Println(">> starting etcd, kube-apiserver and kube-controller-manager from", abs)
	env, err := localcluster.Start(localcluster.Options{Assets: abs, CRDs: crds})
	if err != nil {
		return fmt.Errorf("starting the control plane (run 'make controlplane' first): %w", err)
	}
	cfg := env.Config
	defer func() {
		fmt.Println(">> stopping the control plane")
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the control plane:", err)
		}
	}()

	kubeconfig, err := writeKubeconfig(env, *stateDir)
	if err != nil {
		return err
	}
	mgr, err := operator.NewManager(cfg, *o)
	if err != nil {
		return err
	}
	ctx := ctrl.SetupSignalHandler()
	errc := make(chan error, 1)
	go func() { errc <- mgr.Start(ctx) }()

	var sampleFS fs.FS = config.Samples
	dir := "samples"
	if *samples != "" {
		sampleFS, dir = os.DirFS(*samples), "."
	}
	if err := applySamples(ctx, mgr.GetClient(), sampleFS, dir); err != nil {
		return err
	}
	kubectl := filepath.Join(abs, "kubectl")
	fmt.Printf(`
keysmith is running on a local control plane. In another shell:

  export KUBECONFIG=%[1]s
  %[2]s get apikeys
  %[2]s describe apikey billing-api
  %[2]s get secret billing-api-key -o yaml
  %[2]s get secret billing-api-key -o jsonpath='{.data.api-key}' | base64 -d; echo
  %[2]s annotate apikey billing-api keysmith.dev/rotate=$(date +%%s) --overwrite
  %[2]s get events --field-selector involvedObject.kind=ApiKey

Verify the sample key (the verifier runs in the operator; audit records go to %[4]s):

  KEY=$(%[2]s get secret billing-api-key -o jsonpath='{.data.api-key}' | base64 -d)
  curl -s http://%[3]s/v1/verify -d "{\"key\":\"$KEY\",\"scopes\":[\"users:read\"]}"; echo
  curl -si http://%[3]s/authz -H "Authorization: Bearer $KEY" -H "X-Required-Scopes: roles:manage"

%[5]s
Press Ctrl-C to stop everything.
`, kubeconfig, kubectl, mgr.Verifier.HTTPAddr(), o.Verify.AuditSink, metricsHint(o))
	return <-errc
}

func writeKubeconfig(env *localcluster.Cluster, dir string) (string, error) {
	user, err := env.AddUser(envtest.User{Name: "keysmith-dev", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return "", err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	path, err := filepath.Abs(filepath.Join(dir, "kubeconfig"))
	if err != nil {
		return "", err
	}
	return path, os.WriteFile(path, kc, 0o600)
}

func applySamples(ctx context.Context, c client.Client, fsys fs.FS, dir string) error {
	objs, err := operator.Samples(fsys, dir)
	if err != nil {
		return err
	}
	for _, u := range objs {
		// The CRD was just installed; give discovery a moment.
		deadline := time.Now().Add(30 * time.Second)
		for {
			err = c.Create(ctx, u)
			if err == nil || apierrors.IsAlreadyExists(err) || time.Now().After(deadline) {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("applying %s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
		fmt.Printf(">> applied %s %s/%s\n", u.GetKind(), u.GetNamespace(), u.GetName())
	}
	return nil
}

// metricsHint tells how to read /metrics: plain HTTP locally, unless --metrics-secure was given.
func metricsHint(o *operator.Options) string {
	switch {
	case o.MetricsBindAddress == "0":
		return ""
	case o.InsecureMetrics:
		return fmt.Sprintf("Metrics (plain HTTP locally; --metrics-secure serves them as in a cluster):\n\n  curl -s http://%s/metrics | grep '^keysmith_'\n", o.MetricsBindAddress)
	default:
		return fmt.Sprintf("Metrics: https://%s/metrics, for a bearer token of a user allowed to get /metrics.\n", o.MetricsBindAddress)
	}
}
