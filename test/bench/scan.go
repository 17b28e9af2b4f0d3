package main

// The scan scenario: `kubectl apikey scan` over a generated tree of text (source-like files and large
// logs) with keys scattered in it: live ones issued by ApiKeys on this control plane, revoked ones,
// unknown ones and strings with a bad checksum. The plugin runs as its own process (built like make
// build builds it) with a kubeconfig, so each figure includes its start, the walk, the scan and the one
// paged listing of ApiKeys; the harness counts the LIST requests the API server served meanwhile.
// `go run ./test/bench -only scan` runs this scenario alone and merges it into -out's results.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/keys"
	"github.com/keysmith-dev/keysmith/internal/localcluster"
	"github.com/keysmith-dev/keysmith/internal/operator"
	"github.com/keysmith-dev/keysmith/internal/testenv"
	"github.com/keysmith-dev/keysmith/internal/verify"
)

// The scan scenario's namespaces: its live and revoked keys, and the ApiKeys added for the lookup to list.
const (
	scanNS     = "bench-scan"
	scanFillNS = "bench-scan-fill"
)

// Scan is the scan scenario's figures.
type Scan struct {
	// Date, Commit and Command describe the run that measured it (it may be a -only scan run).
	Date    time.Time `json:"date"`
	Commit  string    `json:"commit"`
	Command string    `json:"command"`
	CPUs    int       `json:"cpus"`
	// The tree: Files files, Bytes bytes (SourceFiles source-like files, LogFiles logs), generated in
	// GenerateSeconds.
	Files           int     `json:"files"`
	Bytes           int64   `json:"bytes"`
	SourceFiles     int     `json:"sourceFiles"`
	LogFiles        int     `json:"logFiles"`
	GenerateSeconds float64 `json:"generateSeconds"`
	// Planted is how many occurrences of each kind were scattered in it (live, revoked, unknown,
	// bad-checksum); LiveApiKeys and RevokedApiKeys how many ApiKeys issued them.
	Planted        map[string]int `json:"planted"`
	LiveApiKeys    int            `json:"liveApiKeys"`
	RevokedApiKeys int            `json:"revokedApiKeys"`
	// ApiKeys is how many the lookup listed (every ApiKey of the cluster), ListRequests how many LIST
	// requests for ApiKeys the API server served during one run (pages of 500).
	ApiKeys      int `json:"apiKeys"`
	ListRequests int `json:"listRequests"`
	// Runs are the measured runs with the cluster lookup; Offline one run with --offline.
	Runs    []ScanRun `json:"runs"`
	Offline ScanRun   `json:"offline"`
	// MedianMBps is the median of the runs' whole-command throughput (wall clock, MB = 10^6 bytes).
	MedianMBps     float64 `json:"medianMBps"`
	MedianScanMBps float64 `json:"medianScanMBps"`
	// Found is the findings by state of the last run (checked against Planted).
	Found map[string]int `json:"found"`
	// LoadAverage is the machine's 1-minute load average before the runs (other work on the machine
	// shares its CPUs with the scan).
	LoadAverage float64 `json:"loadAverage"`
}

// ScanRun is one run of the plugin.
type ScanRun struct {
	// WallSeconds is the whole command, process start to exit; ScanSeconds the walk and scan alone (the
	// report's summary.seconds); LookupSeconds the rest (the listing, start-up, writing the report).
	WallSeconds   float64 `json:"wallSeconds"`
	ScanSeconds   float64 `json:"scanSeconds"`
	LookupSeconds float64 `json:"lookupSeconds"`
	MBps          float64 `json:"mbps"`
	ScanMBps      float64 `json:"scanMBps"`
	ExitCode      int     `json:"exitCode"`
}

// runScanOnly is `-only scan`: a control plane and a manager of its own, the scan scenario, and its
// figures merged into the results at o.out (when they exist) and the page regenerated from them.
func runScanOnly(o options) error {
	env, cfg, err := testenv.StartOptions(localcluster.Options{WithoutControllerManager: true})
	if err != nil {
		return err
	}
	defer env.Stop() //nolint:errcheck
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := client.New(cfg, client.Options{Scheme: operator.Scheme()})
	if err != nil {
		return err
	}
	mgr, err := operator.NewManager(cfg, operator.Options{
		MetricsBindAddress: "0", HealthProbeBindAddress: "0", MaxConcurrentReconciles: o.parallel,
		Verify: verify.Options{HTTPAddress: "127.0.0.1:0", GRPCAddress: "0", AuditSink: filepath.Join(os.TempDir(), "keysmith-bench-scan-audit.log")},
	})
	if err != nil {
		return err
	}
	mgrCtx, stopMgr := context.WithCancel(ctx)
	defer stopMgr()
	go func() { _ = mgr.Start(mgrCtx) }()
	sc, err := runScan(ctx, env, cfg, c, o)
	if err != nil {
		return err
	}
	printScan(sc)
	var res Results
	b, err := os.ReadFile(o.out)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &res); err != nil {
			return fmt.Errorf("%s: %w", o.out, err)
		}
	case errors.Is(err, os.ErrNotExist):
		res.Scan = &sc
		if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
			return err
		}
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(o.out, b, 0o644); err != nil {
			return err
		}
		fmt.Printf("\nwrote %s (no earlier results: the page is not regenerated; run make bench)\n", o.out)
		return nil
	default:
		return err
	}
	res.Scan = &sc
	b, _ = json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(o.out, b, 0o644); err != nil {
		return err
	}
	fmt.Printf("\nwrote %s (the scan figures merged into the earlier results)\n", o.out)
	return publish(res, o)
}

// runScan issues the keys, generates the tree, runs the plugin and removes the tree.
func runScan(ctx context.Context, env *localcluster.Cluster, cfg *rest.Config, c client.Client, o options) (Scan, error) {
	sc := Scan{Date: time.Now().UTC().Truncate(time.Second), Command: commandLine(), CPUs: runtime.NumCPU(),
		LiveApiKeys: 5, RevokedApiKeys: 5}
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		sc.Commit = strings.TrimSpace(string(out))
	}
	if err := createNamespace(ctx, c, scanNS); err != nil {
		return sc, err
	}
	fmt.Printf("scan: issuing %d live and %d revoked keys...\n", sc.LiveApiKeys, sc.RevokedApiKeys)
	var live, revoked []string
	for i := 0; i < sc.LiveApiKeys+sc.RevokedApiKeys; i++ {
		name := fmt.Sprintf("scan-%02d", i)
		if err := c.Create(ctx, &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: scanNS, Name: name},
			Spec: v1alpha1.ApiKeySpec{Scopes: []string{"users:read"}, SecretName: name}}); err != nil {
			return sc, err
		}
	}
	for i := 0; i < sc.LiveApiKeys+sc.RevokedApiKeys; i++ {
		k, err := scanWaitKey(ctx, c, fmt.Sprintf("scan-%02d", i))
		if err != nil {
			return sc, err
		}
		if i < sc.LiveApiKeys {
			live = append(live, k)
		} else {
			revoked = append(revoked, k)
		}
	}
	for i, k := range revoked {
		name := fmt.Sprintf("scan-%02d", sc.LiveApiKeys+i)
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, v1alpha1.AnnotationRevoke, keys.ID(k))
		if err := c.Patch(ctx, &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: scanNS, Name: name}}, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
			return sc, err
		}
	}
	for i, k := range revoked {
		if err := scanWaitRevoked(ctx, c, fmt.Sprintf("scan-%02d", sc.LiveApiKeys+i), keys.ID(k)); err != nil {
			return sc, err
		}
	}
	// The lookup lists every ApiKey of the cluster: at least -scan-apikeys of them (the full run has
	// thousands from the issuance sweep already).
	n, err := countApiKeys(ctx, c)
	if err != nil {
		return sc, err
	}
	if fill := o.scanApiKeys - n; fill > 0 {
		fmt.Printf("scan: creating %d more ApiKeys for the lookup to list...\n", fill)
		if err := createNamespace(ctx, c, scanFillNS); err != nil {
			return sc, err
		}
		if err := parallel(fill, o.parallel, func(i int) error { return client.IgnoreAlreadyExists(c.Create(ctx, scaleKey(scanFillNS, i))) }); err != nil {
			return sc, err
		}
		if err := waitAllReady(ctx, c, scanFillNS, fill); err != nil {
			return sc, err
		}
	}
	if sc.ApiKeys, err = countApiKeys(ctx, c); err != nil {
		return sc, err
	}

	dir, err := os.MkdirTemp("", "keysmith-bench-scan")
	if err != nil {
		return sc, err
	}
	defer os.RemoveAll(dir)
	plugin := filepath.Join(dir, "kubectl-apikey")
	fmt.Println("scan: building the plugin (go build ./cmd/kubectl-apikey)...")
	build := exec.Command("go", "build", "-trimpath", "-o", plugin, "./cmd/kubectl-apikey")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return sc, fmt.Errorf("go build ./cmd/kubectl-apikey: %v: %s", err, out)
	}
	user, err := env.AddUser(envtest.User{Name: "bench-scan", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return sc, err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return sc, err
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		return sc, err
	}

	tree := filepath.Join(dir, "tree")
	fmt.Printf("scan: generating %d MB of text in %s...\n", o.scanMB, tree)
	start := time.Now()
	gen, err := generateTree(tree, int64(o.scanMB)*1_000_000, live, revoked)
	if err != nil {
		return sc, err
	}
	sc.GenerateSeconds = time.Since(start).Seconds()
	sc.Files, sc.Bytes, sc.SourceFiles, sc.LogFiles, sc.Planted = gen.files, gen.bytes, gen.sourceFiles, gen.logFiles, gen.planted
	want := map[string]int{"Active": gen.planted["live"], "Revoked": gen.planted["revoked"], "unknown": gen.planted["unknown"], "not-a-key": gen.planted["bad-checksum"]}
	fmt.Printf("  %d files (%d source-like, %d logs), %.1f MB in %.1f s; planted %v\n", sc.Files, sc.SourceFiles, sc.LogFiles, float64(sc.Bytes)/1e6, sc.GenerateSeconds, gen.planted)

	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return sc, err
	}
	sc.LoadAverage = loadAverage()
	for i := 0; i < o.scanRuns; i++ {
		before, err := apikeyLists(ctx, cs)
		if err != nil {
			return sc, err
		}
		r, found, err := runPlugin(plugin, kubeconfig, tree, false)
		if err != nil {
			return sc, err
		}
		after, err := apikeyLists(ctx, cs)
		if err != nil {
			return sc, err
		}
		if err := sameCounts(found, want); err != nil {
			return sc, err
		}
		if r.ExitCode != 1 {
			return sc, fmt.Errorf("scan exited %d, want 1 (live keys found)", r.ExitCode)
		}
		sc.ListRequests, sc.Found = after-before, found
		sc.Runs = append(sc.Runs, r)
		fmt.Printf("  run %d: %.2f s (scan %.2f s), %.0f MB/s (scan alone %.0f MB/s), %d LIST requests\n", i+1, r.WallSeconds, r.ScanSeconds, r.MBps, r.ScanMBps, sc.ListRequests)
	}
	if sc.Offline, _, err = runPlugin(plugin, kubeconfig, tree, true); err != nil {
		return sc, err
	}
	fmt.Printf("  --offline: %.2f s, %.0f MB/s\n", sc.Offline.WallSeconds, sc.Offline.MBps)
	var mbps, scanMBps []float64
	for _, r := range sc.Runs {
		mbps, scanMBps = append(mbps, r.MBps), append(scanMBps, r.ScanMBps)
	}
	sc.MedianMBps, sc.MedianScanMBps = median(mbps), median(scanMBps)
	return sc, nil
}

// loadAverage is the 1-minute load average of /proc/loadavg (0 when unreadable).
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// runPlugin runs `kubectl-apikey scan --format json tree` and returns its timing and findings by state.
func runPlugin(plugin, kubeconfig, tree string, offline bool) (ScanRun, map[string]int, error) {
	args := []string{"--kubeconfig", kubeconfig, "scan", "--format", "json"}
	if offline {
		args = append(args, "--offline")
	}
	cmd := exec.Command(plugin, append(args, tree)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	r := ScanRun{WallSeconds: wall.Seconds()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.ExitCode = ee.ExitCode()
	case err != nil:
		return r, nil, err
	}
	if testenv.FindKeys(out.String()+errOut.String()) > 0 {
		return r, nil, errors.New("the plugin printed a key")
	}
	var rep struct {
		Summary struct {
			Bytes   int64          `json:"bytes"`
			Seconds float64        `json:"seconds"`
			ByState map[string]int `json:"byState"`
		} `json:"summary"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		return r, nil, fmt.Errorf("scan (exit %d): %v: %s", r.ExitCode, err, errOut.String())
	}
	r.ScanSeconds = rep.Summary.Seconds
	r.LookupSeconds = r.WallSeconds - r.ScanSeconds
	r.MBps = float64(rep.Summary.Bytes) / 1e6 / r.WallSeconds
	r.ScanMBps = float64(rep.Summary.Bytes) / 1e6 / r.ScanSeconds
	return r, rep.Summary.ByState, nil
}

func sameCounts(found, want map[string]int) error {
	for k, v := range want {
		if found[k] != v {
			return fmt.Errorf("scan found %v, planted %v", found, want)
		}
	}
	for k, v := range found {
		if want[k] != v {
			return fmt.Errorf("scan found %v, planted %v", found, want)
		}
	}
	return nil
}

// apikeyLists sums apiserver_request_total for LIST of apikeys from the API server's /metrics.
func apikeyLists(ctx context.Context, cs *kubernetes.Clientset) (int, error) {
	b, err := cs.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0, err
	}
	n := 0.0
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "apiserver_request_total{") || !strings.Contains(line, `resource="apikeys"`) ||
			!strings.Contains(line, `verb="LIST"`) || !strings.Contains(line, `group="keysmith.dev"`) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			n += v
		}
	}
	return int(n), nil
}

func countApiKeys(ctx context.Context, c client.Client) (int, error) {
	n, cont := 0, ""
	for {
		list := &v1alpha1.ApiKeyList{}
		opts := []client.ListOption{client.Limit(500)}
		if cont != "" {
			opts = append(opts, client.Continue(cont))
		}
		if err := c.List(ctx, list, opts...); err != nil {
			return 0, err
		}
		n += len(list.Items)
		if cont = list.Continue; cont == "" {
			return n, nil
		}
	}
}

func waitAllReady(ctx context.Context, c client.Client, ns string, n int) error {
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		list := &v1alpha1.ApiKeyList{}
		if err := c.List(ctx, list, client.InNamespace(ns)); err != nil {
			return err
		}
		ready := 0
		for i := range list.Items {
			if meta.IsStatusConditionTrue(list.Items[i].Status.Conditions, v1alpha1.ConditionReady) {
				ready++
			}
		}
		if ready >= n {
			return nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("ApiKeys of %s not Ready in time", ns)
}

// scanWaitKey waits until the ApiKey is Ready and returns its key from the Secret.
func scanWaitKey(ctx context.Context, c client.Client, name string) (string, error) {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		ak, s := &v1alpha1.ApiKey{}, &corev1.Secret{}
		key := types.NamespacedName{Namespace: scanNS, Name: name}
		if c.Get(ctx, key, ak) == nil && meta.IsStatusConditionTrue(ak.Status.Conditions, v1alpha1.ConditionReady) && c.Get(ctx, key, s) == nil {
			if k := string(s.Data[v1alpha1.SecretKeyAPIKey]); keys.ID(k) == ak.Status.CurrentKeyID {
				return k, nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "", fmt.Errorf("ApiKey %s not Ready in time", name)
}

func scanWaitRevoked(ctx context.Context, c client.Client, name, id string) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		ak := &v1alpha1.ApiKey{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: scanNS, Name: name}, ak); err != nil {
			return err
		}
		for _, k := range ak.Status.Keys {
			if k.ID == id && k.State == v1alpha1.KeyRevoked {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("key of ApiKey %s not revoked in time", name)
}

// --- the tree

type generated struct {
	files, sourceFiles, logFiles int
	bytes                        int64
	planted                      map[string]int
}

// generateTree writes about total bytes under dir: 60% as source-like files (Go, Python, YAML,
// Markdown, JSON; 256 B to 256 KB, most of them small) in directories of 64 files, 40% as logs of 1 to
// 32 MB, every line from a pool of realistic lines (with identifiers such as run_test_suite that hold a
// separator but no key), and a key-like line about every 1.25 MB: in turn a live key, a revoked key, an
// unknown key (generated here, never issued) and a string with a bad checksum.
func generateTree(dir string, total int64, live, revoked []string) (generated, error) {
	rng := rand.New(rand.NewPCG(42, 1))
	pool := linePool(rng)
	g := generated{planted: map[string]int{}}
	plants := int(total / 1_250_000)
	offsets := make([]int64, plants)
	for i := range offsets {
		offsets[i] = rng.Int64N(total)
	}
	sort.Slice(offsets, func(i, j int) bool { return offsets[i] < offsets[j] })
	kinds := []string{"live", "revoked", "unknown", "bad-checksum"}
	formats := []string{"API_KEY=%s\n", "    \"api_key\": \"%s\",\n", "Authorization: Bearer %s\n", "2026-12-01T10:00:00.000Z WARN client sent key=%s in the query string\n", "  token: %s\n"}
	var written int64
	next := 0
	plant := func(buf *bytes.Buffer) error {
		kind := kinds[next%len(kinds)]
		var k string
		switch kind {
		case "live":
			k = live[rng.IntN(len(live))]
		case "revoked":
			k = revoked[rng.IntN(len(revoked))]
		default:
			gk, err := keys.Generate("ks", keys.Live)
			if err != nil {
				return err
			}
			k = gk.Plaintext()
			if kind == "bad-checksum" {
				b := []byte(k)
				b[len(b)-1] = map[bool]byte{true: 'y', false: 'x'}[b[len(b)-1] == 'x']
				k = string(b)
			}
		}
		fmt.Fprintf(buf, formats[rng.IntN(len(formats))], k)
		g.planted[kind]++
		next++
		return nil
	}
	exts := []string{".go", ".py", ".yaml", ".md", ".json", ".go", ".ts"}
	var buf bytes.Buffer
	writeFile := func(path string, size int64, lines [][]byte) error {
		buf.Reset()
		for int64(buf.Len()) < size {
			for next < plants && written+int64(buf.Len()) >= offsets[next] {
				if err := plant(&buf); err != nil {
					return err
				}
			}
			buf.Write(lines[rng.IntN(len(lines))])
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			return err
		}
		written += int64(buf.Len())
		g.files++
		return nil
	}
	srcBudget := total * 6 / 10
	for i := 0; written < srcBudget; i++ {
		var size int64
		switch r := rng.IntN(10); {
		case r < 4:
			size = 256 + rng.Int64N(4<<10)
		case r < 8:
			size = 4<<10 + rng.Int64N(28<<10)
		default:
			size = 32<<10 + rng.Int64N(224<<10)
		}
		path := filepath.Join(dir, "src", fmt.Sprintf("pkg%03d", i/64), fmt.Sprintf("file%03d%s", i%64, exts[rng.IntN(len(exts))]))
		if err := writeFile(path, size, pool.code); err != nil {
			return g, err
		}
		g.sourceFiles++
	}
	for i := 0; written < total; i++ {
		size := min(1<<20+rng.Int64N(31<<20), total-written)
		if err := writeFile(filepath.Join(dir, "logs", fmt.Sprintf("app-%02d.log", i)), size, pool.logs); err != nil {
			return g, err
		}
		g.logFiles++
	}
	// Plants whose offset fell past the last byte (the last file ends a line short of total).
	for next < plants {
		buf.Reset()
		if err := plant(&buf); err != nil {
			return g, err
		}
		f, err := os.OpenFile(filepath.Join(dir, "logs", fmt.Sprintf("app-%02d.log", g.logFiles-1)), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return g, err
		}
		_, err = f.Write(buf.Bytes())
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return g, err
		}
		written += int64(buf.Len())
	}
	g.bytes = written
	return g, nil
}

type lines struct {
	code, logs [][]byte
}

// linePool builds the lines the files are made of.
func linePool(rng *rand.Rand) lines {
	words := strings.Fields("order user account billing invoice payment request response handler service client server cache queue " +
		"token session config value error retry timeout context status result item list count total index record event")
	ident := func() string {
		w := words[rng.IntN(len(words))]
		switch rng.IntN(6) {
		case 0:
			return w + "_" + words[rng.IntN(len(words))]
		case 1: // identifiers that hold a separator but are no key
			return []string{"run_test_suite", "is_live_mode", "skip_test_data", "go_live_date", "unit_test_helper"}[rng.IntN(5)]
		case 2:
			return strings.ToUpper(w[:1]) + w[1:] + strings.ToUpper(words[rng.IntN(len(words))][:1])
		}
		return w
	}
	hex := func(n int) string {
		const digits = "0123456789abcdef"
		b := make([]byte, n)
		for i := range b {
			b[i] = digits[rng.IntN(16)]
		}
		return string(b)
	}
	var p lines
	for i := 0; i < 4096; i++ {
		var s string
		switch rng.IntN(9) {
		case 0:
			s = fmt.Sprintf("func (s *%s) %s(ctx context.Context, %s *%s) (%s, error) {", ident(), ident(), ident(), ident(), ident())
		case 1:
			s = fmt.Sprintf("\tif err := s.%s.%s(ctx, %s); err != nil {", ident(), ident(), ident())
		case 2:
			s = fmt.Sprintf("\t\treturn nil, fmt.Errorf(\"%s %s: %%w\", err)", ident(), ident())
		case 3:
			s = fmt.Sprintf("def %s(self, %s, %s=None):", ident(), ident(), ident())
		case 4:
			s = fmt.Sprintf("    %s: %s  # %s %s %s", ident(), ident(), words[rng.IntN(len(words))], words[rng.IntN(len(words))], words[rng.IntN(len(words))])
		case 5:
			s = fmt.Sprintf("  \"%s\": {\"%s\": %d, \"%s\": \"%s\"},", ident(), ident(), rng.IntN(100000), ident(), hex(16))
		case 6:
			s = "// " + strings.Repeat(words[rng.IntN(len(words))]+" ", 3+rng.IntN(10))
		case 7:
			s = fmt.Sprintf("\t%s := %s.%s(%s, %d)", ident(), ident(), ident(), ident(), rng.IntN(1000))
		default:
			s = ""
		}
		p.code = append(p.code, []byte(s+"\n"))
		levels := []string{"INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"}
		l := fmt.Sprintf("2026-12-01T%02d:%02d:%02d.%03dZ %-5s %s.%s request_id=%s method=%s path=/v1/%s/%d status=%d latency_ms=%d user=%s trace_id=%s",
			rng.IntN(24), rng.IntN(60), rng.IntN(60), rng.IntN(1000), levels[rng.IntN(len(levels))], ident(), ident(), hex(16),
			[]string{"GET", "POST", "PUT", "DELETE"}[rng.IntN(4)], words[rng.IntN(len(words))], rng.IntN(100000),
			[]int{200, 200, 200, 201, 204, 400, 404, 500}[rng.IntN(8)], rng.IntN(2000), ident(), hex(32))
		p.logs = append(p.logs, []byte(l+"\n"))
	}
	return p
}

func printScan(s Scan) {
	fmt.Printf(`
kubectl apikey scan benchmark (%d CPUs, commit %s)

  tree: %d files (%d source-like, %d logs), %.1f MB; planted %d live, %d revoked, %d unknown, %d bad checksum
  lookup: one paged listing of %d ApiKeys, %d LIST requests per run
`, s.CPUs, s.Commit, s.Files, s.SourceFiles, s.LogFiles, float64(s.Bytes)/1e6,
		s.Planted["live"], s.Planted["revoked"], s.Planted["unknown"], s.Planted["bad-checksum"], s.ApiKeys, s.ListRequests)
	for i, r := range s.Runs {
		fmt.Printf("  run %d: %6.2f s  %6.0f MB/s   (scan %5.2f s, %6.0f MB/s; lookup and start %.2f s)\n", i+1, r.WallSeconds, r.MBps, r.ScanSeconds, r.ScanMBps, r.LookupSeconds)
	}
	fmt.Printf("  median %.0f MB/s with the cluster lookup (target >= 200); --offline %.0f MB/s; load average %.2f before the runs\n", s.MedianMBps, s.Offline.MBps, s.LoadAverage)
}
