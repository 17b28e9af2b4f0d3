package main

import (
	"flag"
	"fmt"

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
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", ":8080", "Address of the Prometheus /metrics endpoint; \"0\" disables it.")
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
