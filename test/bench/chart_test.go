package main

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/keysmith-dev/keysmith/internal/testenv"
)

func TestChartPNG(t *testing.T) {
	c := Chart{
		Title: "Time until every ApiKey is Ready", XLabel: "ApiKeys applied at once (N)", YLabel: "seconds",
		Width: 800, Height: 480,
		Series: []Series{
			{Name: "keysmith", X: []float64{250, 500, 1000}, Y: []float64{4, 8, 16}, Color: palette[0], Marks: true},
			{Name: "bare client", X: []float64{250, 500, 1000}, Y: []float64{2, 4, 8}, Color: palette[1], Marks: true, Dashed: true},
		},
	}
	path := filepath.Join(t.TempDir(), "chart.png")
	if err := c.WritePNG(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if got := img.Bounds().Size(); got != (image.Point{800, 480}) {
		t.Fatalf("size %v, want 800x480", got)
	}
	plot := c.PlotArea()
	counts := map[color.RGBA]int{}
	for y := plot.Min.Y; y < plot.Max.Y; y++ {
		for x := plot.Min.X; x < plot.Max.X; x++ {
			counts[color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)]++
		}
	}
	for _, s := range c.Series {
		if counts[s.Color] < 200 {
			t.Errorf("series %q: %d pixels of its colour in the plot area, want a line", s.Name, counts[s.Color])
		}
	}
	// Text: the title row above the plot area has dark pixels.
	dark := 0
	for y := 0; y < plot.Min.Y; y++ {
		for x := 0; x < img.Bounds().Dx(); x++ {
			if color.RGBAModel.Convert(img.At(x, y)).(color.RGBA) == textColor {
				dark++
			}
		}
	}
	if dark < 100 {
		t.Errorf("%d text pixels above the plot area, want the title", dark)
	}
}

func TestChartLogAxisAndCDF(t *testing.T) {
	s := CDF("delete", []float64{0.3, 0.7, 0.8, 1.2, 6.4}, palette[0])
	if len(s.X) != 10 || s.Y[len(s.Y)-1] != 1 {
		t.Fatalf("CDF %v %v", s.X, s.Y)
	}
	c := Chart{Title: "t", XLabel: "ms", YLabel: "fraction", XLog: true, Width: 640, Height: 400, Series: []Series{s}}
	img := c.Render()
	n := 0
	plot := c.PlotArea()
	for y := plot.Min.Y; y < plot.Max.Y; y++ {
		for x := plot.Min.X; x < plot.Max.X; x++ {
			if img.RGBAAt(x, y) == s.Color {
				n++
			}
		}
	}
	if n < 200 {
		t.Fatalf("%d pixels of the CDF in the plot area", n)
	}
	a := logAxis(0.3, 6.4)
	if a.min != 0.1 || a.max != 10 || len(a.ticks) != 3 {
		t.Fatalf("log axis %+v", a)
	}
	if l := tickLabel(0.1, a.ticks, true); l != "0.1" {
		t.Fatalf("label %q", l)
	}
	if l := tickLabel(logAxis(20, 30000).ticks[4], nil, true); l != "100k" {
		t.Fatalf("label %q", l)
	}
	if l := tickLabel(0.6000000000000001, []float64{0, 0.2}, false); l != "0.6" {
		t.Fatalf("label %q", l)
	}
}

func TestFontCoversPrintableASCII(t *testing.T) {
	for r := rune(33); r < 127; r++ {
		if _, ok := glyphs[r]; !ok {
			t.Errorf("no glyph for %q", r)
		}
	}
}

// TestReport draws every chart and writes the page from made-up results, so that the template and the
// charts are checked without a control plane. BENCH_REPORT_DIR keeps them for a look.
func TestReport(t *testing.T) {
	dir := os.Getenv("BENCH_REPORT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	ramp := func(n int, total float64) []float64 {
		var out []float64
		for i := 1; i <= n; i++ {
			out = append(out, total*float64(i)/float64(n)*(0.8+0.2*float64(i%7)/7))
		}
		return out
	}
	lat := func(n int, base float64) []float64 {
		var out []float64
		for i := 0; i < n; i++ {
			out = append(out, base*(1+float64(i*i%97)/20))
		}
		return out
	}
	r := Results{
		Host:         testenv.Host{CPU: "Test CPU", CPUs: 2, SHANI: true, MemoryGiB: 23.5, Kernel: "Linux 6.1", Platform: "linux/amd64", Go: "go1.26.8", KubeAPIServer: "v1.37.2", Etcd: "v3.6.16", Commit: "abc1234"},
		Command:      "go run ./test/bench -n 1000",
		Settings:     map[string]string{"n": "1000", "workers": "16", "duration": "5s", "docs": "docs/benchmarks.md"},
		InProcess:    InProcess{NsPerOp: 350, IndexKeys: 10005},
		Verifier:     Load{Requests: 170000, PerSecond: 34000, P50Micros: 380, P99Micros: 2800, MaxMicros: 9000, SampleMicros: lat(10000, 300)},
		Trivial:      Load{Requests: 255000, PerSecond: 51000, P50Micros: 250, P99Micros: 2300, MaxMicros: 7000, SampleMicros: lat(10000, 200)},
		Ratio:        0.67,
		RevokeDelete: Distribution{Trials: 200, P50Millis: 0.7, P99Millis: 5, MaxMillis: 6.4, Millis: lat(200, 0.5)},
		RevokeRotate: Distribution{Trials: 200, P50Millis: 7.2, P99Millis: 25, MaxMillis: 29.8, Millis: lat(200, 6)},
		Storm:        &Storm{N: 1000, RotatedSeconds: 10.4, WritesPerRotation: 2, RetiredSeconds: 8.9},
		Memory:       &Memory{ApiKeys: 5000, ForeignSecrets: 50000, ForeignBytes: 1024, ReadySeconds: 103.1, PeakRSSMiB: 95.4, RSSMiB: 80, GOGC: "50"},
	}
	for _, n := range []int{500, 1000, 2000, 5000} {
		k, b := float64(n)*0.016, float64(n)*0.008
		r.Sweep = append(r.Sweep, Issuance{N: n, Parallel: 4, KeysmithSeconds: k, BareSeconds: b, Ratio: k / b, WritesPerIssuance: 4, EventsPerIssuance: 1,
			Reconciles: n + n/5, ReconcileMeanMillis: 29, KeysmithReadySeconds: ramp(n, k), BareDoneSeconds: ramp(n, b)})
	}
	r.Issuance = Headline{Issuance: r.Sweep[1], IdleSeconds: 60}
	charts, err := writeCharts(r, filepath.Join(dir, "img"))
	if err != nil {
		t.Fatal(err)
	}
	page := filepath.Join(dir, "benchmarks.md")
	if err := writeReport(page, r, charts); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"](img/bench-issuance.png)", "](img/bench-revocation.png)", "| 5,000 | 80.00 s | 40.00 s | 2.00 |",
		"≤ 1.3: **not met**", "0: met", "Test CPU, 2 CPUs (with SHA-NI)", "edits are overwritten"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("page lacks %q", want)
		}
	}
}
