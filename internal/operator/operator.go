// Package operator assembles keysmith's controller manager: the scheme, the caches (keysmith's own Secrets
// only, managed fields stripped) and the controllers. cmd/keysmith, `keysmith dev` and the test suites all
// build the manager here, so that tests run what users run.
package operator

import (
	"context"
	"fmt"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/controllers"
	"github.com/keysmith-dev/keysmith/internal/keys"
	"github.com/keysmith-dev/keysmith/internal/metrics"
	"github.com/keysmith-dev/keysmith/internal/verify"
)

// Options configure the manager. Zero values are the production defaults where one exists.
type Options struct {
	KeyPrefix               string
	LeaderElection          bool
	LeaderElectionNamespace string
	// LeaseDuration, RenewDeadline and RetryPeriod time the leader election; zero means the defaults below.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	MetricsBindAddress                        string
	HealthProbeBindAddress                    string
	MaxConcurrentReconciles                   int
	// InsecureMetrics serves /metrics over plain HTTP to anyone who can reach it (--metrics-secure=false,
	// for local runs). By default /metrics is HTTPS and every scrape is authenticated and authorized
	// with the API server (metricsServerOptions).
	InsecureMetrics bool
	// MetricsCertDir holds tls.crt and tls.key for /metrics (reloaded when they change); empty means a
	// self-signed certificate.
	MetricsCertDir string
	// RequirePolicy denies by default: ApiKeys in namespaces that no ApiKeyPolicy with allowedScopes
	// selects get no key.
	RequirePolicy bool
	// Clock is injected by tests; nil means the real clock.
	Clock clock.PassiveClock
	// Verify configures the verification service that runs on every replica.
	Verify verify.Options
}

// Manager is a controller-runtime manager with keysmith's parts registered.
type Manager struct {
	ctrl.Manager
	// Verifier is the verification service running in this manager.
	Verifier *verify.Verifier
}

// Start runs the manager until ctx ends, then closes the verifier's audit trail once its servers have
// answered their last requests, so that every decision they made is written before Start returns.
func (m *Manager) Start(ctx context.Context) error {
	err := m.Manager.Start(ctx)
	m.Verifier.Close()
	return err
}

// Leader election defaults. A replica killed without releasing the Lease is replaced once the Lease has
// expired, as the other replica observed it: at worst one retry period (with client-go's jitter, up to
// 2.2 periods) after the last renewal was seen, plus the lease duration, plus one more retry: with these
// values 14.4 s at most, typically 12 s, so rotations resume within 20 s (controller-runtime's 15 s /
// 10 s / 2 s allow up to 23.8 s). A graceful stop releases the Lease at once.
const (
	DefaultLeaseDuration = 10 * time.Second
	DefaultRenewDeadline = 7 * time.Second
	DefaultRetryPeriod   = time.Second
)

// LeaderElectionID is the name of the Lease the manager replicas compete for.
const LeaderElectionID = "keysmith-manager.keysmith.dev"

// Scheme returns a scheme with the Kubernetes types and keysmith's.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// SecretSelector selects the Secrets keysmith caches and watches: the ones it labelled as its own.
func SecretSelector() labels.Selector {
	return labels.SelectorFromSet(labels.Set{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue})
}

// NewManager builds the manager and registers keysmith's controller and the verifier.
func NewManager(cfg *rest.Config, o Options) (*Manager, error) {
	if o.KeyPrefix == "" {
		o.KeyPrefix = keys.DefaultPrefix
	}
	if err := keys.ValidatePrefix(o.KeyPrefix); err != nil {
		return nil, fmt.Errorf("--key-prefix %q: %w", o.KeyPrefix, err)
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.MaxConcurrentReconciles < 1 {
		o.MaxConcurrentReconciles = 1
	}
	o.Verify.Clock = o.Clock
	v, err := verify.New(o.Verify)
	if err != nil {
		return nil, err
	}
	scheme := Scheme()
	cfg = rest.CopyConfig(cfg)
	cfg.DisableCompression = true
	metricsOpts, err := metricsServerOptions(o.MetricsBindAddress, o.InsecureMetrics, o.MetricsCertDir)
	if err != nil {
		return nil, err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsOpts,
		HealthProbeBindAddress:        o.HealthProbeBindAddress,
		LeaderElection:                o.LeaderElection,
		LeaderElectionID:              LeaderElectionID,
		LeaderElectionNamespace:       o.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 orDefault(o.LeaseDuration, DefaultLeaseDuration),
		RenewDeadline:                 orDefault(o.RenewDeadline, DefaultRenewDeadline),
		RetryPeriod:                   orDefault(o.RetryPeriod, DefaultRetryPeriod),
		Cache:                         cacheOptions(v, map[client.Object]cache.ByObject{&corev1.Secret{}: {Label: SecretSelector(), Transform: transformSecret}}),
	})
	if err != nil {
		return nil, err
	}
	rec, err := newEventRecorder(mgr, cfg, scheme, "keysmith")
	if err != nil {
		return nil, err
	}
	r := &controllers.ApiKeyReconciler{
		Client:        mgr.GetClient(),
		APIReader:     mgr.GetAPIReader(),
		Scheme:        scheme,
		Recorder:      rec,
		Clock:         o.Clock,
		KeyPrefix:     o.KeyPrefix,
		RequirePolicy: o.RequirePolicy,
	}
	// A process may build a manager again once the previous one stopped (the suites restart it as a
	// crash would), so controller-runtime's process-wide check for duplicate controller names is off.
	skipNameValidation := true
	if err := r.SetupWithManager(mgr, controller.Options{MaxConcurrentReconciles: o.MaxConcurrentReconciles, SkipNameValidation: &skipNameValidation}); err != nil {
		return nil, err
	}
	if err := addProbes(mgr); err != nil {
		return nil, err
	}
	if err := v.Attach(mgr); err != nil {
		return nil, err
	}
	if err := metrics.Register(ctrlmetrics.Registry, mgr.GetCache(), ctrl.Log.WithName("metrics")); err != nil {
		return nil, err
	}
	return &Manager{Manager: mgr, Verifier: v}, nil
}

// VerifierOptions configure the standalone verifier (`keysmith verifier`).
type VerifierOptions struct {
	MetricsBindAddress     string
	HealthProbeBindAddress string
	Verify                 verify.Options
	// InsecureMetrics and MetricsCertDir: as in Options.
	InsecureMetrics bool
	MetricsCertDir  string
}

// NewVerifierManager builds a manager that only verifies: no controller, no leader election, no Secret
// access; its cache holds only the ApiKeys in the verifier's scope.
func NewVerifierManager(cfg *rest.Config, o VerifierOptions) (*Manager, error) {
	v, err := verify.New(o.Verify)
	if err != nil {
		return nil, err
	}
	scope := v.Scope()
	byObject := cache.ByObject{Label: scope.Selector}
	if len(scope.Namespaces) > 0 {
		byObject.Namespaces = map[string]cache.Config{}
		for _, ns := range scope.Namespaces {
			byObject.Namespaces[ns] = cache.Config{}
		}
	}
	metricsOpts, err := metricsServerOptions(o.MetricsBindAddress, o.InsecureMetrics, o.MetricsCertDir)
	if err != nil {
		return nil, err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 Scheme(),
		Metrics:                metricsOpts,
		HealthProbeBindAddress: o.HealthProbeBindAddress,
		Cache:                  cacheOptions(v, map[client.Object]cache.ByObject{&v1alpha1.ApiKey{}: byObject}),
	})
	if err != nil {
		return nil, err
	}
	if err := addProbes(mgr); err != nil {
		return nil, err
	}
	if err := v.Attach(mgr); err != nil {
		return nil, err
	}
	return &Manager{Manager: mgr, Verifier: v}, nil
}

// cacheOptions are the manager's and the standalone verifier's cache: informers that wait out an
// unreachable API server (informers.go), managed fields stripped, ApiKeys reduced to what keysmith reads
// (apikeycache.go), watch errors reported to the verifier, and byObject narrowing what is cached.
func cacheOptions(v *verify.Verifier, byObject map[client.Object]cache.ByObject) cache.Options {
	v.ListTransform = cachedApiKey // the probe's lists get what the cache gets
	return cache.Options{
		NewInformer:              newInformer(v.Index),
		DefaultTransform:         cache.TransformStripManagedFields(),
		DefaultWatchErrorHandler: v.WatchErrorHandler,
		ByObject:                 withApiKeyTransform(byObject),
	}
}

func addProbes(mgr ctrl.Manager) error {
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	return mgr.AddReadyzCheck("informers", func(req *http.Request) error {
		if !mgr.GetCache().WaitForCacheSync(req.Context()) {
			return fmt.Errorf("informers not synced")
		}
		return nil
	})
}

func orDefault(d, def time.Duration) *time.Duration {
	if d <= 0 {
		d = def
	}
	return &d
}
