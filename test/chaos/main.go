// Command chaos is keysmith's fault suite (make chaos). It runs the manager and the verifier as separate
// processes (bin/keysmith) against the local control plane and breaks things while rotations are due:
// kill -9 of the manager in a loop, leader failover between two replicas, an API server restart,
// another field manager applying the same ApiKeys every 100 ms, Secrets deleted and edited. An observer
// checks the invariants from outside throughout; the run ends with a summary table (also written to
// docs/reliability.md) and fails when any invariant was violated.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/localcluster"
	"github.com/keysmith-dev/keysmith/internal/operator"
	"github.com/keysmith-dev/keysmith/internal/testenv"
)

type options struct {
	short     bool
	kills     int
	failovers int
	storm     time.Duration
	tampers   int
	staleness time.Duration
	rotating  int
	expiring  int
	docs      string
	seed      uint64
	only      string
}

const (
	nsChaos    = "chaos"
	nsArgo     = "argo"
	nsSystem   = "keysmith-system"
	period     = time.Minute
	overlap    = 20 * time.Second
	expiresRot = 3 * time.Minute
)

func main() {
	var o options
	flag.BoolVar(&o.short, "short", false, "the CI version: fewer trials, a 5 s staleness bound (a few minutes in all)")
	flag.IntVar(&o.kills, "kills", 200, "kill -9 of the manager in the crash loop")
	flag.IntVar(&o.failovers, "failovers", 5, "leader failovers (kill -9 of the leader)")
	flag.DurationVar(&o.storm, "conflict-storm", 60*time.Second, "how long another field manager applies the ApiKeys every 100 ms")
	flag.IntVar(&o.tampers, "tampers", 60, "Secrets deleted or edited")
	flag.DurationVar(&o.staleness, "staleness", 30*time.Second, "--verify-max-staleness of the verifiers (the documented default is 30s)")
	flag.IntVar(&o.rotating, "rotating", 30, "ApiKeys rotating every minute with a 20 s overlap")
	flag.IntVar(&o.expiring, "expiring", 6, "ApiKeys expiring after a minute, deleted and recreated during the crash loop")
	flag.StringVar(&o.docs, "docs", "docs/reliability.md", "page to write the summary to (empty: do not write)")
	flag.StringVar(&o.only, "only", "", "comma-separated scenarios to run (crash,tamper,storm,failover,restart); empty runs all")
	flag.Uint64Var(&o.seed, "seed", uint64(time.Now().UnixNano()), "random seed")
	flag.Parse()
	if o.short {
		o.kills, o.failovers, o.storm, o.tampers, o.staleness, o.rotating, o.expiring = 25, 1, 20*time.Second, 15, 5*time.Second, 16, 4
		if !flagSet("docs") {
			o.docs = ""
		}
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
}

func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// suite holds what every scenario uses.
type suite struct {
	o        options
	rnd      *rand.Rand
	dir      string
	env      *localcluster.Cluster
	c        client.Client
	obs      *observer
	verifier *proc
	managers []*proc
	mgrKC    string
	audit    string
	host     string // the machine and the control plane, for the report
	results  []result
}

// result is one row of the summary table.
type result struct {
	Scenario   string
	Trials     int
	Violations int
	Figures    string
}

func run(o options) error {
	dir, err := os.MkdirTemp("", "keysmith-chaos")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	s := &suite{o: o, rnd: rand.New(rand.NewPCG(o.seed, 7)), dir: dir, audit: filepath.Join(dir, "audit.log")}
	certs := filepath.Join(dir, "apiserver")
	policy := filepath.Join(dir, "audit-policy.yaml")
	if err := os.MkdirAll(certs, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
		return err
	}
	env, cfg, err := testenv.StartWith(func(env *envtest.Environment) {
		api := env.ControlPlane.GetAPIServer()
		api.CertDir = certs // a fixed directory keeps the serving certificate across the restart
		api.Configure().Set("audit-policy-file", policy).Set("audit-log-path", s.audit)
	})
	if err != nil {
		return err
	}
	s.env = env
	defer func() { _ = env.Stop() }()
	cfg.Timeout = 10 * time.Second // polling loops must not hang while the API server is down
	s.host = testenv.DescribeHost(cfg).String()
	if s.c, err = client.New(cfg, client.Options{Scheme: operator.Scheme()}); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, ns := range []string{nsChaos, nsArgo, nsSystem} {
		if err := s.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
	}
	if s.mgrKC, err = s.kubeconfig("chaos-manager"); err != nil {
		return err
	}
	verifierKC, err := s.kubeconfig("chaos-verifier")
	if err != nil {
		return err
	}
	fmt.Printf("chaos: seed %d, work directory %s\n", o.seed, dir)
	s.verifier = newProc(dir, "verifier", verifierKC, "verifier", "--verify-max-staleness="+o.staleness.String())
	if err := s.verifier.run(); err != nil {
		return err
	}
	defer s.verifier.stop()
	if err := s.verifier.waitReady(ctx, 60*time.Second); err != nil {
		return err
	}
	single := newProc(dir, "manager", s.mgrKC, "manager", "--leader-elect=false", "--verify-max-staleness="+o.staleness.String())
	if err := single.run(); err != nil {
		return err
	}
	s.managers = []*proc{single}
	defer func() {
		for _, m := range s.managers {
			m.stop()
		}
	}()
	if err := single.waitReady(ctx, 60*time.Second); err != nil {
		return err
	}
	s.obs = newObserver(s.c, s.verifier.verifyAddr, s.managerUp, nsChaos, nsArgo)
	if err := s.workload(ctx); err != nil {
		return err
	}
	obsCtx, stopObs := context.WithCancel(ctx)
	defer stopObs()
	go s.obs.run(obsCtx, 500*time.Millisecond)

	start := time.Now()
	steps := []struct {
		name, short string
		f           func(context.Context) (result, error)
	}{
		{"crash loop", "crash", s.crashLoop},
		{"tampering", "tamper", s.tampering},
		{"conflict storm", "storm", s.conflictStorm},
		{"leader failover", "failover", s.failover},
		{"API server restart", "restart", s.apiServerRestart},
	}
	for _, st := range steps {
		if o.only != "" && !strings.Contains(","+o.only+",", ","+st.short+",") {
			continue
		}
		before := len(s.violations())
		fmt.Printf("\n== %s\n", st.name)
		r, err := st.f(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", st.name, err)
		}
		r.Scenario = st.name
		r.Violations += len(s.violations()) - before
		s.results = append(s.results, r)
		fmt.Printf("   %d trials, %d violations; %s\n", r.Trials, r.Violations, r.Figures)
	}
	stopObs()
	for _, m := range s.managers {
		m.stop()
	}
	s.verifier.stop()
	leak, err := s.leakScan(ctx)
	if err != nil {
		return err
	}
	s.results = append(s.results, leak)
	return s.report(time.Since(start))
}

// kubeconfig writes a kubeconfig for a user of the test control plane and returns its path.
func (s *suite) kubeconfig(user string) (string, error) {
	u, err := s.env.AddUser(envtest.User{Name: user, Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return "", err
	}
	kc, err := u.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(s.dir, user+".kubeconfig")
	return path, os.WriteFile(path, kc, 0o600)
}

// managerUp is how long a manager has been running (the longest-running replica).
func (s *suite) managerUp() time.Duration {
	var up time.Duration
	for _, m := range s.managers {
		up = max(up, m.up())
	}
	return up
}

func (s *suite) violations() []violation {
	v, _, _, _, _, _ := s.obs.snapshot()
	return v
}

// violate records a violation found by a scenario itself (rather than by the observer).
func (s *suite) violate(invariant, format string, args ...any) {
	s.obs.mu.Lock()
	defer s.obs.mu.Unlock()
	s.obs.violate(invariant, format, args...)
	fmt.Printf("   VIOLATION %s: %s\n", invariant, fmt.Sprintf(format, args...))
}

func rotatingKey(ns, name string) *v1alpha1.ApiKey {
	return &v1alpha1.ApiKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.ApiKeySpec{Scopes: []string{"orders:read"}, SecretName: name,
			Rotation:     &v1alpha1.RotationSpec{Period: metav1.Duration{Duration: period}, Overlap: &metav1.Duration{Duration: overlap}},
			ExpiresAfter: &metav1.Duration{Duration: expiresRot}},
	}
}

func expiringKey(name string) *v1alpha1.ApiKey {
	return &v1alpha1.ApiKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: nsChaos, Name: name},
		Spec: v1alpha1.ApiKeySpec{Scopes: []string{"orders:read"}, SecretName: name,
			ExpiresAfter: &metav1.Duration{Duration: time.Minute}},
	}
}

// workload creates the ApiKeys of the crash loop and waits until they are Ready.
func (s *suite) workload(ctx context.Context) error {
	for i := 0; i < s.o.rotating; i++ {
		if err := s.c.Create(ctx, rotatingKey(nsChaos, fmt.Sprintf("rot-%02d", i))); err != nil {
			return err
		}
		// Spread the due instants over the period, so that some rotation is always close.
		time.Sleep(period / time.Duration(2*s.o.rotating))
	}
	for i := 0; i < s.o.expiring; i++ {
		if err := s.c.Create(ctx, expiringKey(fmt.Sprintf("exp-%02d", i))); err != nil {
			return err
		}
	}
	_, err := s.converge(ctx, nsChaos, 60*time.Second)
	return err
}

func keyNames(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%02d", prefix, i)
	}
	return out
}

func joinProblems(p []string) string {
	if len(p) > 5 {
		return strings.Join(p[:5], "; ") + fmt.Sprintf("; and %d more", len(p)-5)
	}
	return strings.Join(p, "; ")
}
