// Command bench measures keysmith on the local control plane and prints the figures (make bench).
//
// Verifier figures: the in-process check (ns/op, allocations), the HTTP verifier against a trivial
// handler that returns 200 under the same load generator in the same run (throughput ratio, p50, p99),
// and revocation latency: how long after the API call a key is refused (ApiKey deleted; rotation with
// overlap 0), polling the verifier.
//
// Issuance runs for every N of -sweep (and -n, the headline), interleaved on one control plane with the
// manager running: for each N the bare client first (on a copy of the ApiKey kind that the manager does
// not watch, floor.go), then keysmith, each in a namespace of its own. The harness writes the results
// as JSON (-out), draws its charts as PNG and regenerates docs/benchmarks.md (-docs).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/keys"
	"github.com/keysmith-dev/keysmith/internal/localcluster"
	"github.com/keysmith-dev/keysmith/internal/operator"
	"github.com/keysmith-dev/keysmith/internal/testenv"
	"github.com/keysmith-dev/keysmith/internal/verify"
)

type options struct {
	keys     int
	workers  int
	duration time.Duration
	trials   int
	out      string
	n        int
	parallel int
	idle     time.Duration
	memKeys  int
	foreign  int
	gogc     string
	storm    int
	sweep    []int // every N of the issuance sweep, ascending, -n included
	docs     string
	img      string
	profile  *apiServerProfiler
	// only names the one scenario to run ("scan"); scanMB, scanRuns and scanApiKeys size the scan (scan.go).
	only        string
	scanMB      int
	scanRuns    int
	scanApiKeys int
}

func main() {
	var o options
	flag.IntVar(&o.keys, "keys", 50, "ApiKeys created for the load test")
	flag.IntVar(&o.workers, "workers", 16, "concurrent load-generator connections")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "length of each load run")
	flag.IntVar(&o.trials, "revocation-trials", 200, "trials per revocation-latency scenario")
	flag.StringVar(&o.out, "out", "bin/bench/results.json", "where to write the JSON results")
	flag.IntVar(&o.n, "n", 1000, "ApiKeys issued at once in the headline issuance benchmark (also run as part of -sweep)")
	sweep := flag.String("sweep", "500,1000,2000,5000", "comma-separated N for time-to-Ready against N (each in namespaces of its own; -n is added)")
	flag.StringVar(&o.docs, "docs", "docs/benchmarks.md", "page to regenerate from the results (empty: none)")
	flag.StringVar(&o.img, "img", "", "directory for the PNG charts (default: img/ beside -docs, or beside -out without -docs)")
	flag.IntVar(&o.parallel, "parallel", 4, "reconcile workers (--max-concurrent-reconciles) and bare-client workers")
	flag.DurationVar(&o.idle, "idle", 60*time.Second, "how long writes are counted while nothing is due")
	flag.IntVar(&o.memKeys, "memory-apikeys", 5000, "ApiKeys for the memory measurement (0 skips it)")
	flag.IntVar(&o.foreign, "foreign-secrets", 50000, "foreign Secrets of 1 KiB in other namespaces for the memory measurement")
	flag.IntVar(&o.storm, "storm", 1000, "ApiKeys in the rotation storm, all due at the same instant (0 skips it)")
	flag.StringVar(&o.gogc, "gogc", "50", "GOGC of the measured manager process (config/manager sets 50)")
	apiProfile := flag.String("apiserver-profile", "", "directory for CPU profiles of the API server, taken during each issuance phase (bare client and keysmith)")
	apiProfileSeconds := flag.Int("apiserver-profile-seconds", 4, "length of each API server profile, from the start of its phase")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	render := flag.String("render", "", "measure nothing: redraw the charts and the page from this results JSON (after editing the page's template)")
	flag.StringVar(&o.only, "only", "", "run only this scenario (scan: kubectl apikey scan) on a control plane of its own, merge its figures into -out's results and regenerate -docs")
	flag.IntVar(&o.scanMB, "scan-mb", 500, "MB of generated text that kubectl apikey scan reads (0 skips the scan scenario)")
	flag.IntVar(&o.scanRuns, "scan-runs", 3, "measured runs of kubectl apikey scan over the tree")
	flag.IntVar(&o.scanApiKeys, "scan-apikeys", 1000, "ApiKeys the scan's lookup lists at least (more are created when the cluster has fewer)")
	flag.Parse()
	if o.only != "" && o.only != "scan" {
		fmt.Fprintln(os.Stderr, "bench: -only takes scan")
		os.Exit(2)
	}
	var err error
	if o.sweep, err = sweepOf(*sweep, o.n); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if o.img == "" {
		if o.docs != "" {
			o.img = filepath.Join(filepath.Dir(o.docs), "img")
		} else {
			o.img = filepath.Dir(o.out)
		}
	}
	o.profile = &apiServerProfiler{dir: *apiProfile, seconds: *apiProfileSeconds}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(discard{})))
	if *render != "" {
		if err := rerender(*render, o); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(o); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// sweepOf parses the comma-separated list of N and adds n: distinct, ascending.
func sweepOf(list string, n int) ([]int, error) {
	set := map[int]bool{n: true}
	for _, f := range strings.Split(list, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := strconv.Atoi(f)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("-sweep: %q is not a positive number", f)
		}
		set[v] = true
	}
	var out []int
	for v := range set {
		out = append(out, v)
	}
	sort.Ints(out)
	return out, nil
}

// Results is what the harness prints and writes.
type Results struct {
	Machine string       `json:"machine"`
	Host    testenv.Host `json:"host"`
	// Date is when the run started (UTC); Command is how it was started, Settings every flag's value.
	Date         time.Time         `json:"date"`
	Command      string            `json:"command"`
	Settings     map[string]string `json:"settings"`
	InProcess    InProcess         `json:"inProcessCheck"`
	Verifier     Load              `json:"httpVerifier"`
	Trivial      Load              `json:"trivialHandler"`
	Ratio        float64           `json:"throughputRatio"`
	RevokeDelete Distribution      `json:"revocationDelete"`
	RevokeRotate Distribution      `json:"revocationRotateOverlap0"`
	// Issuance is the headline N (-n); Sweep has every N, with the per-key curves.
	Issuance Headline   `json:"issuance"`
	Sweep    []Issuance `json:"issuanceSweep"`
	Memory   *Memory    `json:"memory,omitempty"`
	Storm    *Storm     `json:"rotationStorm,omitempty"`
	Scan     *Scan      `json:"scan,omitempty"`
}

// Headline is the issuance of -n ApiKeys (its per-key curves are in the sweep) and the API requests the
// manager sent afterwards, for IdleSeconds, with nothing due, to every namespace of the sweep.
type Headline struct {
	Issuance
	IdleSeconds float64 `json:"idleSeconds"`
	IdleWrites  int     `json:"idleWrites"`
}

type InProcess struct {
	NsPerOp     float64 `json:"nsPerOp"`
	AllocsPerOp int64   `json:"allocsPerOp"`
	IndexKeys   int     `json:"indexKeys"`
}

type Load struct {
	Requests  int     `json:"requests"`
	Errors    int     `json:"errors"`
	PerSecond float64 `json:"requestsPerSecond"`
	P50Micros float64 `json:"p50Micros"`
	P99Micros float64 `json:"p99Micros"`
	MaxMicros float64 `json:"maxMicros"`
	// SampleMicros is the latency of every request, sorted; past 10,000 requests, 10,000 evenly spaced
	// order statistics (and the maximum), which keeps the distribution's shape.
	SampleMicros []float64 `json:"latencySampleMicros,omitempty"`
}

type Distribution struct {
	Trials    int     `json:"trials"`
	P50Millis float64 `json:"p50Millis"`
	P99Millis float64 `json:"p99Millis"`
	MaxMillis float64 `json:"maxMillis"`
	// Millis is each trial's latency, in the order of the trials.
	Millis []float64 `json:"latenciesMillis,omitempty"`
}

func run(o options) error {
	if o.only == "scan" {
		return runScanOnly(o)
	}
	crds, err := floorCRDs()
	if err != nil {
		return err
	}
	// Without kube-controller-manager: nothing in the measured paths needs the garbage collector, and its
	// watches of every resource would take CPU from the two cores the figures are measured on.
	env, cfg, err := testenv.StartOptions(localcluster.Options{WithoutControllerManager: true, Configure: func(env *envtest.Environment) {
		env.CRDs = crds
		if o.profile.dir != "" {
			env.ControlPlane.GetAPIServer().Configure().Set("profiling", "true")
		}
	}})
	if err != nil {
		return err
	}
	defer env.Stop() //nolint:errcheck
	o.profile.cfg = cfg
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: operator.Scheme()})
	if err != nil {
		return err
	}
	res := Results{
		Machine: fmt.Sprintf("%s/%s, %d CPUs, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version()),
		Host:    testenv.DescribeHost(cfg), Date: time.Now().UTC().Truncate(time.Second), Command: commandLine(), Settings: settings(),
	}
	// The bare client writes the floor's kind (see floor.go), so it runs beside the manager.
	var bareWrites testenv.WriteCounter
	bareCfg := rest.CopyConfig(cfg)
	bareWrites.Wrap(bareCfg)
	bareClient, err := client.New(bareCfg, client.Options{Scheme: floorScheme()})
	if err != nil {
		return err
	}
	// A round that is not measured first: the first requests of a fresh control plane are slower.
	if _, err := bareIssuance(ctx, bareClient, "warmup-bare", 100, o.parallel); err != nil {
		return err
	}
	var writes testenv.WriteCounter
	mgrCfg := rest.CopyConfig(cfg)
	writes.Wrap(mgrCfg)
	// The manager runs on a fake clock that starts now, so that the rotation storm can jump past a period.
	clk := clocktesting.NewFakeClock(time.Now())
	mgr, err := operator.NewManager(mgrCfg, operator.Options{
		MetricsBindAddress: "0", HealthProbeBindAddress: "0", MaxConcurrentReconciles: o.parallel, Clock: clk,
		Verify: verify.Options{HTTPAddress: "127.0.0.1:0", GRPCAddress: "0", AuditSink: filepath.Join(os.TempDir(), "keysmith-bench-audit.log")},
	})
	if err != nil {
		return err
	}
	mgrCtx, stopMgr := context.WithCancel(ctx)
	defer stopMgr()
	mgrDone := make(chan struct{})
	go func() { defer close(mgrDone); _ = mgr.Start(mgrCtx) }()
	// Likewise, a first round while the manager starts, not measured.
	managerCache = mgr.GetCache()
	if _, _, err := keysmithIssuance(ctx, c, "warmup-keysmith", 100, o.parallel); err != nil {
		return err
	}
	var sweepNS []string
	for _, n := range o.sweep {
		ns := fmt.Sprintf("scale-keysmith-%d", n)
		sweepNS = append(sweepNS, ns)
		// The floor for this N right before keysmith's run, on the same stored and cached objects.
		fmt.Printf("issuance floor: a bare client writing %d keys' worth with %d workers...\n", n, o.parallel)
		wait := o.profile.start(fmt.Sprintf("bare-%d", n))
		bare, err := bareIssuance(ctx, bareClient, fmt.Sprintf("scale-bare-%d", n), n, o.parallel)
		if err != nil {
			return err
		}
		wait()
		printLatencies(fmt.Sprintf("bare client, N = %d", n), bareWrites.All(fmt.Sprintf("scale-bare-%d", n)))
		fmt.Printf("issuance: keysmith issuing %d first keys with %d workers...\n", n, o.parallel)
		wait = o.profile.start(fmt.Sprintf("keysmith-%d", n))
		is, err := runIssuance(ctx, c, &writes, bare, ns, n, o.parallel)
		if err != nil {
			return err
		}
		wait()
		printLatencies(fmt.Sprintf("keysmith, N = %d", n), writes.All(ns))
		fmt.Printf("  all Ready after %.2f s (bare client %.2f s)\n", is.KeysmithSeconds, is.BareSeconds)
		res.Sweep = append(res.Sweep, is)
		if n == o.n {
			res.Issuance.Issuance = is
			res.Issuance.KeysmithReadySeconds, res.Issuance.BareDoneSeconds = nil, nil
		}
	}
	printReconcileResults()
	fmt.Printf("idle: counting the manager's API requests for %s with nothing due...\n", o.idle)
	attempts := func() (n int) {
		for _, ns := range sweepNS {
			n += len(writes.Attempts(ns))
		}
		return n
	}
	before := attempts()
	time.Sleep(o.idle)
	res.Issuance.IdleSeconds, res.Issuance.IdleWrites = o.idle.Seconds(), attempts()-before
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}}); err != nil {
		return err
	}
	fmt.Printf("creating %d ApiKeys...\n", o.keys)
	var plain []string
	for i := 0; i < o.keys; i++ {
		if err := c.Create(ctx, apiKey(fmt.Sprintf("load-%d", i), nil)); err != nil {
			return err
		}
	}
	for i := 0; i < o.keys; i++ {
		k, err := waitKey(ctx, c, fmt.Sprintf("load-%d", i), "")
		if err != nil {
			return err
		}
		plain = append(plain, k)
	}

	// In-process check against the running verifier's index.
	br := testing.Benchmark(func(b *testing.B) {
		now := time.Now()
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if verify.Check(mgr.Verifier.Index, now, verify.Request{Key: plain[i%len(plain)], Scopes: []string{"users:read"}}).Code != verify.CodeValid {
				b.Fatal("not valid")
			}
		}
	})
	res.InProcess = InProcess{NsPerOp: float64(br.NsPerOp()), AllocsPerOp: br.AllocsPerOp(), IndexKeys: mgr.Verifier.Index.Len()}

	// The same load generator against the verifier and against a trivial handler.
	trivial, stop, err := trivialServer()
	if err != nil {
		return err
	}
	defer stop()
	fmt.Printf("load: %d workers for %s against the verifier, then against a trivial 200 handler...\n", o.workers, o.duration)
	res.Verifier = load("http://"+mgr.Verifier.HTTPAddr()+"/authz?scopes=users:read", plain, o.workers, o.duration)
	res.Trivial = load(trivial+"/authz?scopes=users:read", plain, o.workers, o.duration)
	if res.Trivial.PerSecond > 0 {
		res.Ratio = res.Verifier.PerSecond / res.Trivial.PerSecond
	}

	fmt.Printf("revocation latency: %d trials each...\n", o.trials)
	verifyURL := "http://" + mgr.Verifier.HTTPAddr() + "/v1/verify"
	if res.RevokeDelete, err = revocation(ctx, c, verifyURL, o.trials, "del", func(name string) error {
		return c.Delete(ctx, &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: name}})
	}, nil); err != nil {
		return err
	}
	zero := &v1alpha1.RotationSpec{Period: metav1.Duration{Duration: 720 * time.Hour}, Overlap: &metav1.Duration{}}
	if res.RevokeRotate, err = revocation(ctx, c, verifyURL, o.trials, "rot", func(name string) error {
		ak := &v1alpha1.ApiKey{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: "bench", Name: name}, ak); err != nil {
			return err
		}
		patch := client.MergeFrom(ak.DeepCopy())
		ak.Annotations = map[string]string{v1alpha1.AnnotationRotate: "now"}
		return c.Patch(ctx, ak, patch)
	}, zero); err != nil {
		return err
	}

	if o.scanMB > 0 {
		sc, err := runScan(ctx, env, cfg, c, o)
		if err != nil {
			return err
		}
		res.Scan = &sc
	}
	if o.storm > 0 {
		fmt.Printf("rotation storm: %d ApiKeys due at the same instant...\n", o.storm)
		st, err := runStorm(ctx, c, clk, &writes, o.storm, o.parallel)
		if err != nil {
			return err
		}
		res.Storm = &st
	}
	if o.memKeys > 0 {
		stopMgr() // the measured manager is a separate process; this one must not reconcile too
		<-mgrDone
		// The measured manager must see -memory-apikeys ApiKeys, not those of the earlier phases too.
		fmt.Println("memory: deleting the earlier phases' ApiKeys and Secrets...")
		if err := clearNamespaces(ctx, c, append(sweepNS, "warmup-keysmith", "bench", stormNS, scanNS, scanFillNS), 16); err != nil {
			return err
		}
		m, err := runMemory(ctx, env.Environment, c, o.memKeys, o.foreign, 16, o.gogc)
		if err != nil {
			return err
		}
		res.Memory = &m
	}
	print(res)
	if res.Scan != nil {
		printScan(*res.Scan)
	}
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(o.out, b, 0o644); err != nil {
		return err
	}
	fmt.Printf("\nwrote %s\n", o.out)
	return publish(res, o)
}

// rerender reads results written by an earlier run and publishes them again.
func rerender(path string, o options) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return publish(res, o)
}

// publish draws the charts and regenerates the page.
func publish(res Results, o options) error {
	charts, err := writeCharts(res, o.img)
	if err != nil {
		return err
	}
	for _, name := range []string{chartIssuance, chartReady, chartRevocation, chartVerifier} {
		fmt.Printf("wrote %s\n", charts[name])
	}
	if o.docs != "" {
		if err := writeReport(o.docs, res, charts); err != nil {
			return err
		}
		fmt.Printf("wrote %s\n", o.docs)
	}
	return nil
}

// clearNamespaces deletes every ApiKey (finalizers removed first, with no manager running) and every Secret in
// the namespaces.
func clearNamespaces(ctx context.Context, c client.Client, namespaces []string, workers int) error {
	for _, ns := range namespaces {
		list := &v1alpha1.ApiKeyList{}
		if err := c.List(ctx, list, client.InNamespace(ns)); err != nil {
			return err
		}
		if err := parallel(len(list.Items), workers, func(i int) error {
			ak := &list.Items[i]
			if len(ak.Finalizers) == 0 {
				return nil
			}
			return client.IgnoreNotFound(c.Patch(ctx, ak, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`))))
		}); err != nil {
			return err
		}
		if err := c.DeleteAllOf(ctx, &v1alpha1.ApiKey{}, client.InNamespace(ns)); err != nil {
			return err
		}
		if err := c.DeleteAllOf(ctx, &corev1.Secret{}, client.InNamespace(ns)); err != nil {
			return err
		}
	}
	return nil
}

// printReconcileResults prints the manager's reconcile counts by result (success, error, requeue).
func printReconcileResults() {
	mfs, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		return
	}
	for _, mf := range mfs {
		if mf.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && m.GetCounter().GetValue() > 0 {
					fmt.Printf("  reconcile result %s: %.0f\n", l.GetValue(), m.GetCounter().GetValue())
				}
			}
		}
	}
}

func apiKey(name string, rot *v1alpha1.RotationSpec) *v1alpha1.ApiKey {
	return &v1alpha1.ApiKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: name},
		Spec:       v1alpha1.ApiKeySpec{Scopes: []string{"users:read"}, SecretName: name, Rotation: rot},
	}
}

// waitKey waits until the ApiKey is Ready with a current key other than notID and returns the key.
func waitKey(ctx context.Context, c client.Client, name, notID string) (string, error) {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		ak := &v1alpha1.ApiKey{}
		s := &corev1.Secret{}
		if c.Get(ctx, types.NamespacedName{Namespace: "bench", Name: name}, ak) == nil &&
			meta.IsStatusConditionTrue(ak.Status.Conditions, v1alpha1.ConditionReady) && ak.Status.CurrentKeyID != notID &&
			c.Get(ctx, types.NamespacedName{Namespace: "bench", Name: name}, s) == nil {
			k := string(s.Data[v1alpha1.SecretKeyAPIKey])
			if keys.ID(k) == ak.Status.CurrentKeyID {
				return k, nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "", fmt.Errorf("ApiKey %s not Ready in time", name)
}

func trivialServer() (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })}
	go func() { _ = srv.Serve(l) }()
	return "http://" + l.Addr().String(), func() { _ = srv.Close() }, nil
}

// load sends GET requests with a rotating set of valid keys from workers keep-alive connections for d.
func load(url string, keyset []string, workers int, d time.Duration) Load {
	tr := &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers}
	cl := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	var errs atomic.Int64
	lat := make([][]time.Duration, workers)
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; time.Now().Before(end); i++ {
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				req.Header.Set("Authorization", "Bearer "+keyset[i%len(keyset)])
				start := time.Now()
				resp, err := cl.Do(req)
				if err != nil || resp.StatusCode != http.StatusOK {
					errs.Add(1)
				}
				if resp != nil {
					resp.Body.Close()
				}
				lat[w] = append(lat[w], time.Since(start))
			}
		}(w)
	}
	wg.Wait()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	res := Load{Requests: len(all), Errors: int(errs.Load()), PerSecond: float64(len(all)) / d.Seconds(),
		P50Micros: micros(pct(all, 0.50)), P99Micros: micros(pct(all, 0.99))}
	if len(all) > 0 {
		res.MaxMicros = micros(all[len(all)-1])
	}
	const samples = 10000
	for i := 0; i < len(all) && i < samples; i++ {
		j := i
		if len(all) > samples {
			j = i * (len(all) - 1) / (samples - 1) // the last one is the maximum
		}
		res.SampleMicros = append(res.SampleMicros, math.Round(micros(all[j])*10)/10)
	}
	return res
}

// revocation measures, per trial, the time from the revoking API call returning to the verifier's first
// refusal, polling it continuously from another goroutine.
func revocation(ctx context.Context, c client.Client, url string, trials int, prefix string, revoke func(string) error, rot *v1alpha1.RotationSpec) (Distribution, error) {
	var ds []time.Duration
	cl := &http.Client{}
	for i := 0; i < trials; i++ {
		name := fmt.Sprintf("%s-%d", prefix, i)
		if err := c.Create(ctx, apiKey(name, rot)); err != nil {
			return Distribution{}, err
		}
		key, err := waitKey(ctx, c, name, "")
		if err != nil {
			return Distribution{}, err
		}
		// Ready and the key reach status in the same write; the verifier learns it from its watch a moment later.
		for wait := time.Now(); !valid(cl, url, key); time.Sleep(time.Millisecond) {
			if time.Since(wait) > 5*time.Second {
				return Distribution{}, fmt.Errorf("fresh key of %s refused for 5 s", name)
			}
		}
		if err := revoke(name); err != nil {
			return Distribution{}, err
		}
		issued := time.Now()
		deadline := issued.Add(30 * time.Second)
		for valid(cl, url, key) {
			if time.Now().After(deadline) {
				return Distribution{}, fmt.Errorf("key of %s still accepted 30s after revocation", name)
			}
		}
		ds = append(ds, time.Since(issued))
	}
	res := Distribution{Trials: len(ds)}
	for _, d := range ds {
		res.Millis = append(res.Millis, math.Round(millis(d)*1000)/1000)
	}
	if len(ds) == 0 {
		return res, nil
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	res.P50Millis, res.P99Millis, res.MaxMillis = millis(pct(ds, 0.5)), millis(pct(ds, 0.99)), millis(ds[len(ds)-1])
	return res, nil
}

// valid reports whether the verifier behind url (its /v1/verify) still accepts key; an error or a 503
// is not a refusal, so polling goes on.
func valid(cl *http.Client, url, key string) bool {
	return testenv.VerifyKey(cl, strings.TrimSuffix(url, "/v1/verify"), key) != testenv.Refused
}

func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
func millis(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

func print(r Results) {
	i := r.Issuance
	fmt.Printf(`
keysmith issuance benchmark (%s)

  %d ApiKeys applied at once, %d workers, same control plane     seconds
  keysmith: until every ApiKey is Ready                          %7.2f
  bare client: create, finalizer patch, status update, Secret    %7.2f
  ratio keysmith / bare client                                   %7.2f   (target <= 1.3)

  API writes per issuance (events aside)   %.2f   (target 4; events: %.2f per issuance; %d refused writes in all)
  API requests in %.0f s with nothing due    %d      (target 0)
  reconciles %d, mean %.1f ms
`, r.Machine, i.N, i.Parallel, i.KeysmithSeconds, i.BareSeconds, i.Ratio, i.WritesPerIssuance, i.EventsPerIssuance, i.RefusedWrites, i.IdleSeconds, i.IdleWrites, i.Reconciles, i.ReconcileMeanMillis)
	if len(r.Sweep) > 1 {
		fmt.Printf("\n  time until every ApiKey is Ready against N        keysmith s   bare client s   ratio   writes/issuance\n")
		for _, p := range r.Sweep {
			fmt.Printf("  N = %-6d                                        %9.2f   %13.2f   %5.2f   %15.2f\n", p.N, p.KeysmithSeconds, p.BareSeconds, p.Ratio, p.WritesPerIssuance)
		}
	}
	if st := r.Storm; st != nil {
		fmt.Printf(`
  rotation storm: %d ApiKeys due at the same instant (period 1h, overlap 10m, clock moved past both)
    every Secret holds a new key after %.2f s; %.2f writes per rotation (target 2)
    every previous key retired %.2f s after the overlap ended
`, st.N, st.RotatedSeconds, st.WritesPerRotation, st.RetiredSeconds)
	}
	if m := r.Memory; m != nil {
		fmt.Printf(`
  memory: bin/keysmith manager as its own process (GOGC=%s), %d ApiKeys, %d foreign Secrets of %d bytes elsewhere
    all Ready after %.1f s; peak RSS %.1f MiB, RSS %.1f MiB   (target <= 100 MiB)
    it caches: ApiKeys, Secrets labelled app.kubernetes.io/managed-by=keysmith, namespace metadata,
    ApiKeyPolicies (managed fields stripped); never the foreign Secrets
`, m.GOGC, m.ApiKeys, m.ForeignSecrets, m.ForeignBytes, m.ReadySeconds, m.PeakRSSMiB, m.RSSMiB)
	}
	fmt.Printf(`
keysmith verifier benchmark (%s)

  in-process check (parse, SHA-256, lookup, compare; %d keys indexed)   %.0f ns/op   %d allocs/op

  load generator, same run, same settings       req/s      p50 µs    p99 µs   errors
  HTTP verifier  GET /authz                 %9.0f   %9.0f %9.0f   %6d
  trivial handler returning 200             %9.0f   %9.0f %9.0f   %6d
  throughput ratio verifier / trivial           %.2f

  revocation latency (API call returned -> first refusal), polled continuously
                                   trials      p50 ms    p99 ms    max ms
  ApiKey deleted                   %6d   %9.1f %9.1f %9.1f
  rotated with overlap 0           %6d   %9.1f %9.1f %9.1f
`, r.Machine, r.InProcess.IndexKeys, r.InProcess.NsPerOp, r.InProcess.AllocsPerOp,
		r.Verifier.PerSecond, r.Verifier.P50Micros, r.Verifier.P99Micros, r.Verifier.Errors,
		r.Trivial.PerSecond, r.Trivial.P50Micros, r.Trivial.P99Micros, r.Trivial.Errors, r.Ratio,
		r.RevokeDelete.Trials, r.RevokeDelete.P50Millis, r.RevokeDelete.P99Millis, r.RevokeDelete.MaxMillis,
		r.RevokeRotate.Trials, r.RevokeRotate.P50Millis, r.RevokeRotate.P99Millis, r.RevokeRotate.MaxMillis)
}

// printLatencies prints, per kind of write, how many were sent and their latency percentiles.
func printLatencies(label string, ws []testenv.Write) {
	by := map[string][]float64{}
	for _, w := range ws {
		k := w.Verb + " " + w.Resource
		by[k] = append(by[k], float64(w.Latency.Microseconds())/1000)
	}
	kinds := make([]string, 0, len(by))
	for k := range by {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	fmt.Printf("  request latency, %s:\n", label)
	for _, k := range kinds {
		ms := by[k]
		sort.Float64s(ms)
		fmt.Printf("    %-28s %6d  p50 %6.1f ms  p90 %6.1f ms  p99 %6.1f ms\n", k, len(ms), ms[len(ms)/2], ms[len(ms)*9/10], ms[len(ms)*99/100])
	}
}
