package main

import (
	"flag"
	"fmt"
	"strconv"

	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/keysmith-dev/keysmith/internal/keys"
	"github.com/keysmith-dev/keysmith/internal/operator"
)

// managerFlags binds the manager's flags to fs; dev reuses them.
func managerFlags(fs *flag.FlagSet) (*operator.Options, *zap.Options) {
	o := &operator.Options{}
	fs.StringVar(&o.KeyPrefix, "key-prefix", keys.DefaultPrefix, "Prefix of issued keys, 2 to 8 lowercase letters or digits (keys look like <prefix>_live_...).")
	fs.BoolVar(&o.LeaderElection, "leader-elect", true, "Elect a leader among manager replicas so that only one writes; a Lease in --leader-election-namespace.")
	fs.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader election Lease. Required outside a cluster; in a cluster, defaults to the Pod's namespace.")
	fs.DurationVar(&o.LeaseDuration, "leader-election-lease-duration", operator.DefaultLeaseDuration, "How long a Lease holder that stopped renewing keeps it; a replica killed without releasing it is replaced after about this long.")
	fs.DurationVar(&o.RenewDeadline, "leader-election-renew-deadline", operator.DefaultRenewDeadline, "How long the leader keeps trying to renew before it gives up leadership (and exits, to be restarted).")
	fs.DurationVar(&o.RetryPeriod, "leader-election-retry-period", operator.DefaultRetryPeriod, "How often the leader renews and the other replicas try to acquire the Lease.")
	metricsFlags(fs, &o.MetricsBindAddress, &o.InsecureMetrics, &o.MetricsCertDir)
	fs.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints; \"0\" disables them.")
	fs.IntVar(&o.MaxConcurrentReconciles, "max-concurrent-reconciles", 4, "ApiKeys reconciled in parallel.")
	fs.BoolVar(&o.RequirePolicy, "require-policy", false, "Deny by default: an ApiKey gets no key unless an ApiKeyPolicy with allowedScopes selects its namespace (it goes Stalled, reason PolicyViolation).")
	o.Verify.BindFlags(fs)
	zo := &zap.Options{}
	zo.BindFlags(fs)
	return o, zo
}

func runManager(args []string) error {
	fs := flag.NewFlagSet("keysmith manager", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: keysmith manager [flags]\n\nRuns the ApiKey operator against the cluster in KUBECONFIG, else the in-cluster config.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	o, zo := managerFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	return start(zo, func(cfg *rest.Config) (*operator.Manager, error) { return operator.NewManager(cfg, *o) },
		"starting keysmith manager", "keyPrefix", o.KeyPrefix, "leaderElection", o.LeaderElection)
}

// start sets up logging, builds a manager for the cluster in KUBECONFIG (else in-cluster) and runs it
// until SIGINT or SIGTERM.
func start(zo *zap.Options, build func(*rest.Config) (*operator.Manager, error), msg string, kv ...any) error {
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(zo)))
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return err
	}
	mgr, err := build(cfg)
	if err != nil {
		return err
	}
	if mgr.Verifier != nil {
		kv = append(kv, "verifyHTTP", mgr.Verifier.HTTPAddr(), "verifyGRPC", mgr.Verifier.GRPCAddr())
	}
	ctrl.Log.WithName("setup").Info(msg, kv...)
	return mgr.Start(ctrl.SetupSignalHandler())
}

// metricsFlags binds the /metrics flags the manager and the verifier share.
func metricsFlags(fs *flag.FlagSet, bindAddress *string, insecure *bool, certDir *string) {
	fs.StringVar(bindAddress, "metrics-bind-address", ":8443", "Address of the Prometheus /metrics endpoint (HTTPS unless --metrics-secure=false); \"0\" disables it.")
	fs.Var(negatedBool{insecure}, "metrics-secure", "Serve /metrics over HTTPS and only to callers whose bearer token the API server accepts and who may get the non-resource URL /metrics (ClusterRole keysmith-metrics-reader). false serves plain HTTP to anyone who can reach the port: for local runs only.")
	fs.StringVar(certDir, "metrics-cert-dir", "", "Directory with tls.crt and tls.key for /metrics, reloaded when they change (for example a mounted cert-manager Secret); empty: a self-signed certificate generated at start.")
}

// negatedBool is a boolean flag that stores the opposite of its value, so that an option whose zero value
// is the secure default can be set by a flag that reads positively.
type negatedBool struct{ p *bool }

func (b negatedBool) String() string {
	if b.p == nil {
		return ""
	}
	return strconv.FormatBool(!*b.p)
}

func (b negatedBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	*b.p = !v
	return nil
}

func (b negatedBool) IsBoolFlag() bool { return true }
