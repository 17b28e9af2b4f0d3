package main

// The report: the machine the run was on, the charts, and docs/benchmarks.md written from the results.

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
)

// commandLine is how the harness was started, as a shell would take it.
func commandLine() string {
	name := os.Args[0]
	if strings.Contains(name, "go-build") {
		name = "go run ./test/bench"
	}
	parts := []string{name}
	for _, a := range os.Args[1:] {
		parts = append(parts, shellQuote(a))
	}
	return strings.Join(parts, " ")
}

func shellQuote(s string) string {
	if s != "" && regexp.MustCompile(`^[A-Za-z0-9_./=,:+-]+$`).MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// settings is every flag's value, defaults included.
func settings() map[string]string {
	m := map[string]string{}
	flag.VisitAll(func(f *flag.Flag) {
		if f.Name != "kubeconfig" { // controller-runtime's, unused here
			m[f.Name] = f.Value.String()
		}
	})
	return m
}

// The charts, by name.
const (
	chartIssuance   = "bench-issuance.png"
	chartReady      = "bench-ready.png"
	chartRevocation = "bench-revocation.png"
	chartVerifier   = "bench-verifier.png"
)

// writeCharts draws the charts into dir and returns their paths by name.
func writeCharts(r Results, dir string) (map[string]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	keysmith, bare := Series{Name: "keysmith", Color: palette[0], Marks: true}, Series{Name: "bare client", Color: palette[1], Marks: true, Dashed: true}
	for _, p := range r.Sweep {
		keysmith.X, keysmith.Y = append(keysmith.X, float64(p.N)), append(keysmith.Y, p.KeysmithSeconds)
		bare.X, bare.Y = append(bare.X, float64(p.N)), append(bare.Y, p.BareSeconds)
	}
	workers := r.Issuance.Parallel
	charts := map[string]Chart{
		chartIssuance: {
			Title: fmt.Sprintf("Time until every ApiKey is Ready (%d workers)", workers), XLabel: "ApiKeys applied at once (N)", YLabel: "seconds",
			Width: 800, Height: 480, Series: []Series{keysmith, bare},
		},
		chartReady: {
			Title: "ApiKeys Ready against time, for each N", XLabel: "seconds since the first create", YLabel: "ApiKeys Ready",
			Width: 900, Height: 520, Legend: LegendRight,
		},
		chartRevocation: {
			Title: "Revocation: API call returned to first refusal", XLabel: "milliseconds (log scale)", YLabel: "fraction of trials",
			Width: 800, Height: 500, XLog: true, Legend: LegendBelow, Series: []Series{
				CDF(fmt.Sprintf("ApiKey deleted (%d)", r.RevokeDelete.Trials), r.RevokeDelete.Millis, palette[0]),
				CDF(fmt.Sprintf("rotated, overlap 0 (%d)", r.RevokeRotate.Trials), r.RevokeRotate.Millis, palette[1]),
			},
		},
		chartVerifier: {
			Title: "Request latency under the same load", XLabel: "microseconds (log scale)", YLabel: "fraction of requests",
			Width: 800, Height: 500, XLog: true, Legend: LegendBelow, Series: []Series{
				CDF("verifier GET /authz", r.Verifier.SampleMicros, palette[0]),
				CDF("trivial 200 handler", r.Trivial.SampleMicros, palette[1]),
			},
		},
	}
	// The largest N first, so that the shorter curves of smaller N are drawn over it.
	ready := charts[chartReady]
	for i := len(r.Sweep) - 1; i >= 0; i-- {
		p, col := r.Sweep[i], palette[i%len(palette)]
		ready.Series = append(ready.Series,
			Cumulative(fmt.Sprintf("keysmith, N=%d", p.N), p.KeysmithReadySeconds, col, false),
			Cumulative(fmt.Sprintf("bare, N=%d", p.N), p.BareDoneSeconds, col, true))
	}
	charts[chartReady] = ready
	paths := map[string]string{}
	for name, c := range charts {
		path := filepath.Join(dir, name)
		if err := c.WritePNG(path); err != nil {
			return nil, err
		}
		paths[name] = path
	}
	return paths, nil
}

// writeReport regenerates the benchmarks page from the results.
func writeReport(path string, r Results, charts map[string]string) error {
	img := map[string]string{}
	for name, p := range charts {
		rel, err := filepath.Rel(filepath.Dir(path), p)
		if err != nil {
			rel = p
		}
		img[name] = filepath.ToSlash(rel)
	}
	var keys []string
	for k := range r.Settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var all []string
	for _, k := range keys {
		all = append(all, "-"+k+"="+shellQuote(r.Settings[k]))
	}
	d := report{Results: r, Img: img, AllSettings: strings.Join(all, " ")}
	var b bytes.Buffer
	if err := reportTemplate.Execute(&b, d); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

type report struct {
	Results
	Img         map[string]string
	AllSettings string
}

var reportTemplate = template.Must(template.New("benchmarks").Funcs(template.FuncMap{
	"num": num,
	"met": func(ok bool) string {
		if ok {
			return "met"
		}
		return "**not met**"
	},
	"le":    func(a, b float64) bool { return a <= b+1e-9 },
	"lt":    func(a, b float64) bool { return a < b },
	"ms":    func(micros float64) string { return num(micros/1000, 1) },
	"float": func(v int) float64 { return float64(v) },
	"mb":    func(v int64) float64 { return float64(v) / 1e6 },
	"inc":   func(i int) int { return i + 1 },
}).Parse(reportText))

// num formats v with decimals and thousands separators.
func num(v float64, decimals int) string {
	s := strconv.FormatFloat(v, 'f', decimals, 64)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	whole, frac, _ := strings.Cut(s, ".")
	var b strings.Builder
	for i, c := range whole {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	out := b.String()
	if frac != "" {
		out += "." + frac
	}
	if neg {
		out = "-" + out
	}
	return out
}

const reportText = `# Benchmarks

<!-- Generated by make bench (test/bench, template in test/bench/report.go). Edits are overwritten. -->

_This page is generated by ` + "`make bench`" + ` from the run described below; edits are overwritten
by the next run. The template is in ` + "`test/bench/report.go`" + `._

` + "`make bench`" + ` runs the Go benchmarks of the hot paths (` + "`go test ./internal/keys ./internal/verify -bench .`" + `,
printed only), then ` + "`test/bench`" + ` on a local control plane (envtest with the kube-apiserver and etcd
that ` + "`make controlplane`" + ` builds). The harness prints a table, writes every figure and the raw
latencies to ` + "`bin/bench/results.json`" + `, draws the charts below and writes this page;
` + "`go run ./test/bench -h`" + ` lists its flags.
{{with .Host}}
## The run

| | |
|---|---|
| date | {{$.Date.Format "2006-01-02 15:04 UTC"}} |
| command | ` + "`{{$.Command}}`" + ` |
| every setting | ` + "`{{$.AllSettings}}`" + ` |
| keysmith | {{if .Commit}}commit {{.Commit}}{{else}}unknown commit{{end}} |
| CPU | {{if .CPU}}{{.CPU}}{{else}}unknown{{end}}, {{.CPUs}} CPUs{{if .SHANI}} (with SHA-NI){{end}} |
| memory | {{num .MemoryGiB 1}} GiB |
| kernel | {{.Kernel}} ({{.Platform}}) |
| Go | {{.Go}} |
| kube-apiserver | {{.KubeAPIServer}} |
| etcd | {{.Etcd}} |

Everything runs on these {{.CPUs}} CPUs at once: etcd, kube-apiserver, the manager with its verifier, and
the load generator, so each figure includes their contention for CPU.
{{- end}}
{{with .Issuance}}
## Issuance

| {{num (float .N) 0}} ApiKeys applied at once, {{.Parallel}} workers | | target |
|---|---|---|
| keysmith, until every ApiKey is Ready | {{num .KeysmithSeconds 2}} s | |
| bare client: create, finalizer patch, status update, Secret create | {{num .BareSeconds 2}} s | |
| ratio keysmith / bare client | {{num .Ratio 2}} | ≤ 1.3: {{met (le .Ratio 1.3)}} |
| API writes per first issuance, events aside | {{num .WritesPerIssuance 2}} (plus {{num .EventsPerIssuance 2}} events per issuance) | 4: {{met (le .WritesPerIssuance 4)}} |
| write requests the API server refused (such as optimistic-lock conflicts) | {{.RefusedWrites}} | |
| API requests in {{num .IdleSeconds 0}} s with nothing due | {{.IdleWrites}} | 0: {{met (eq .IdleWrites 0)}} |
| reconciles, mean duration | {{num (float .Reconciles) 0}}, {{num .ReconcileMeanMillis 1}} ms | |

The bare client is the floor: the same four requests per key that a first issuance needs (create,
finalizer patch, status update, Secret create), from a plain client with the same number of workers, with
no operator, no decisions, no cache, no watch and no events. It writes ApiKeys of an identical kind in a
group of its own (` + "`floor.bench.keysmith.dev`" + `: the same schema, CEL rules and objects, so the same work
for the API server) that the manager does not watch, so it runs on the same control plane right before
keysmith's run of the same N, with the manager running and the same objects stored. keysmith's figure is
the time from the first create until the manager's own informer has seen every ApiKey ` + "`Ready`" + ` (the
harness adds no watch or list of its own while it measures).

kube-apiserver's CPU decides both figures: etcd and the processes of the harness take the rest of the
2 cores. keysmith asks for 5 requests per key against the floor's 4 (the create, the finalizer, the
Secret, status with the key and ` + "`Ready`" + ` in one write, and the ` + "`KeyIssued`" + ` event that announces every
key), and every ApiKey and Secret write also reaches the manager's watches. The tuning therefore went
to the API server's work per request: ` + "`go run ./test/bench -apiserver-profile DIR`" + ` writes a CPU profile of
kube-apiserver for each phase (` + "`go tool pprof -top DIR/keysmith-1000.pprof`" + `), and the harness prints
each kind of request's latency.

Tuning, each step measured at 1,000 keys with the issuance alone (` + "`go run ./test/bench -n 1000 -sweep 1000 -storm 0 -memory-apikeys 0 -docs \"\"`" + `);
one run each, and runs of the same code differ by about ±0.04 in the ratio:

| step | keysmith | bare client | ratio |
|---|---|---|---|
| before (4 writes, 1.6 reconciles per key, the harness listing every 100 ms) | 15.6 s | 7.6 s | 2.05 |
| a Secret's own watch event no longer queues a second reconcile (1.0 per key) | 13.0 s | 5.8 s | 2.22 (harness still listing) |
| no API read of the Secret before a first key; Ready seen through the manager's informer | 11.7 s | 5.8 s | 2.03 |
| a first key's Secret before its status, Ready in that status write (3 writes) | 8.2 s | 5.6 s | 1.48 |
| the same code, the next day | 8.0 s | 5.9 s | 1.37 |
| status written as an update of the status subresource instead of a merge patch; no gzip on the manager's connection | 7.5 s | 5.6 s | 1.34 |
| the floor on a copy of the kind, beside the manager, interleaved per N (harness) | 7.8 s | 5.9 s | 1.33 |
| Events as protobuf, at most 2 in flight | 7.6 s | 5.7 s | 1.33 |
| ` + "`Reconciling`" + `, ` + "`Stalled`" + ` and ` + "`ExpiringSoon`" + ` present only while True | 7.1 s | 5.8 s | 1.23 |
| the same code again, three runs | 6.9, 6.9, 6.8 s | 5.4, 5.4, 5.5 s | 1.27, 1.27, 1.23 |

The last step cut kube-apiserver's CPU for the keysmith phase from 10.9 to 9.8 s (profiles of 9 s from
the start of each phase): three False conditions with their timestamps and managed-fields entries were a
large part of every ApiKey write, watch event and etcd record. Status as a merge patch instead of an
update measured 1.28 and 1.29 on top of it. For context on this machine class, measured separately:
cert-manager took 56 to 86 s and the mittwald secret generator 48.5 s for 1,000 objects.
{{end}}
### Time to Ready against N

Every N runs in namespaces of its own, in ascending order: for each N the bare client first, then
keysmith, on the same control plane with the manager running and every earlier N's objects in place.
Each side first issues 100 keys that are not measured, as the first requests to a fresh control plane,
and to a manager that is starting, are slower. At small N the ratio is higher: keysmith's reconciles share
the API server with the workers that create the ApiKeys until every create has returned, so its first
keys are Ready later than the floor's (compare the two curves' first tenth below); that cost is fixed,
and a larger N spreads it.

| N | keysmith | bare client | ratio | writes per issuance | reconciles, mean |
|---|---|---|---|---|---|
{{range .Sweep}}| {{num (float .N) 0}} | {{num .KeysmithSeconds 2}} s | {{num .BareSeconds 2}} s | {{num .Ratio 2}} | {{num .WritesPerIssuance 2}} | {{num (float .Reconciles) 0}}, {{num .ReconcileMeanMillis 1}} ms |
{{end}}
![Time until every ApiKey is Ready against N, keysmith and the bare client]({{index .Img "bench-issuance.png"}})

Each ApiKey's own time to Ready (when a watch on the namespace, or the 100 ms list, first showed it
` + "`Ready`" + `), counted over time; dashed, the bare client's keys as their last write returned:

![ApiKeys Ready against time for each N]({{index .Img "bench-ready.png"}})
{{with .Storm}}
## Rotation storm

{{num (float .N) 0}} ApiKeys (period 1h, overlap 10m) all due at the same instant: the manager's clock
jumps past the period and every ApiKey is woken.

| | | target |
|---|---|---|
| until every Secret holds a new key | {{num .RotatedSeconds 1}} s | |
| API writes per rotation, events aside | {{num .WritesPerRotation 2}} (status, Secret) | 2: {{met (le .WritesPerRotation 2)}} |
| until every previous key is retired, once the overlap has ended | {{num .RetiredSeconds 1}} s (one status write each) | |
{{end}}{{with .Memory}}
## Memory

` + "`bin/keysmith manager`" + ` as its own process against the same control plane, with {{num (float .ApiKeys) 0}}
ApiKeys, all issued (the earlier phases' ApiKeys and Secrets are deleted first), and
{{num (float .ForeignSecrets) 0}} foreign Secrets of {{num (float .ForeignBytes) 0}} bytes in 10 other namespaces;
peak RSS (VmHWM) once every ApiKey is Ready:

| GOGC | all Ready after | peak RSS | RSS then | target |
|---|---|---|---|---|
| {{.GOGC}}{{if eq .GOGC "50"}} (what config/manager sets, with GOMEMLIMIT from the memory limit){{end}}{{if eq .GOGC "100"}} (Go's default){{end}} | {{num .ReadySeconds 1}} s | {{num .PeakRSSMiB 1}} MiB | {{num .RSSMiB 1}} MiB | ≤ 100 MiB: {{met (le .PeakRSSMiB 100)}} |

The manager caches ApiKeys, the Secrets labelled ` + "`app.kubernetes.io/managed-by=keysmith`" + `,
namespace metadata and ApiKeyPolicies, all with managed fields stripped. It never lists or watches the
foreign Secrets, so its memory does not grow with them. (For comparison: cert-manager's controller
used 314 MiB with 5,000 Certificates.) ` + "`-gogc 100`" + ` measures Go's default setting instead.
{{end}}
## Verifier

| | | aim |
|---|---|---|
| in-process check: parse, SHA-256, lookup, compare ({{num (float .InProcess.IndexKeys) 0}} keys indexed) | {{num .InProcess.NsPerOp 0}} ns/op, {{.InProcess.AllocsPerOp}} allocs/op | |
| HTTP verifier, ` + "`GET /authz`" + `, {{index .Settings "workers"}} keep-alive connections, {{index .Settings "duration"}} | {{num .Verifier.PerSecond 0}} req/s, p50 {{num .Verifier.P50Micros 0}} µs, p99 {{ms .Verifier.P99Micros}} ms, max {{ms .Verifier.MaxMicros}} ms, {{.Verifier.Errors}} errors | p99 < 5 ms: {{met (lt .Verifier.P99Micros 5000)}} |
| trivial handler returning 200, same load generator, same run | {{num .Trivial.PerSecond 0}} req/s, p50 {{num .Trivial.P50Micros 0}} µs, p99 {{ms .Trivial.P99Micros}} ms, max {{ms .Trivial.MaxMicros}} ms | |
| throughput ratio verifier / trivial | {{num .Ratio 2}} (every decision is also audited) | |

The load generator, the verifier and the trivial handler share the same CPUs, so the trivial handler
is the ceiling this machine allows for any HTTP service under this load. The aim of p99 under 5 ms
leaves most of a proxy's budget (Envoy's ext_authz times out after 200 ms) to the network.

![Request latency of the verifier and of a trivial handler]({{index .Img "bench-verifier.png"}})

### Revocation latency

From the moment the API call (the delete, or the rotate annotation) returns to the verifier's first
refusal of the old key, polling the verifier continuously:

| | trials | p50 | p99 | max |
|---|---|---|---|---|
{{with .RevokeDelete}}| ApiKey deleted | {{.Trials}} | {{num .P50Millis 1}} ms | {{num .P99Millis 1}} ms | {{num .MaxMillis 1}} ms |
{{end}}{{with .RevokeRotate}}| rotated with overlap 0 | {{.Trials}} | {{num .P50Millis 1}} ms | {{num .P99Millis 1}} ms | {{num .MaxMillis 1}} ms |
{{end}}
A rotation with overlap 0 takes longer than a delete because the operator must first reconcile and
record the rotation before the verifier's index drops the old key; a delete reaches the index straight
from the watch. For comparison, hosted API-key services state propagation delays of 5 s to 180 s.

![Revocation latency distribution]({{index .Img "bench-revocation.png"}})
{{with .Scan}}
## kubectl apikey scan

` + "`kubectl apikey scan --format json TREE`" + ` as its own process (the plugin built as ` + "`make build`" + ` builds it, with a
kubeconfig), over a generated tree of {{num (mb .Bytes) 0}} MB of text in {{num (float .Files) 0}} files:
{{num (float .SourceFiles) 0}} source-like files (Go, Python, YAML, Markdown, JSON lines; 256 B to 256 KB, most under
32 KB) and {{.LogFiles}} logs of 1 to 32 MB, with identifiers such as ` + "`run_test_suite`" + ` that hold a separator and no
key. Scattered in it: {{index .Planted "live"}} occurrences of {{.LiveApiKeys}} live keys issued by ApiKeys on this control plane,
{{index .Planted "revoked"}} of {{.RevokedApiKeys}} revoked ones, {{index .Planted "unknown"}} unknown keys and {{index .Planted "bad-checksum"}} strings with a bad
checksum; every run must find exactly those. Each key is looked up in one paged listing of every ApiKey of the
cluster ({{num (float .ApiKeys) 0}}; {{.ListRequests}} LIST requests per run, counted on the API server). The tree is in the page
cache (written just before); MB are 10⁶ bytes. Measured {{.Date.Format "2006-01-02 15:04 UTC"}}, commit {{.Commit}}, with
` + "`{{.Command}}`" + `{{if .LoadAverage}}; the machine's load average was {{num .LoadAverage 2}} before the runs (other processes shared
its {{.CPUs}} CPUs){{end}}.

| | wall clock | MB/s | target |
|---|---|---|---|
{{range $i, $r := .Runs}}| run {{inc $i}}: walk, scan, lookup, report | {{num $r.WallSeconds 2}} s (scan {{num $r.ScanSeconds 2}} s) | {{num $r.MBps 0}} (scan alone {{num $r.ScanMBps 0}}) | |
{{end}}| median, with the cluster lookup | | **{{num .MedianMBps 0}}** | ≥ 200 MB/s on {{.CPUs}} CPUs: {{met (le 200 .MedianMBps)}} |
| ` + "`--offline`" + ` (format and checksum only) | {{num .Offline.WallSeconds 2}} s | {{num .Offline.MBps 0}} | |

The hot loop runs no regular expression: each worker (one per CPU) reads files in buffers of 1 MiB,
finds ` + "`_live_`" + ` and ` + "`_test_`" + ` with ` + "`bytes.Index`" + ` and checks the bytes around each occurrence against
the documented pattern and the checksum (` + "`internal/scan`" + `; its fuzz target compares it with the pattern run by
` + "`regexp`" + `). ` + "`go run ./test/bench -only scan`" + ` runs this scenario alone.
{{end}}`
