package main

import (
	"context"
	"regexp"
	"sort"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keysmith-dev/keysmith/internal/metrics"
	"github.com/keysmith-dev/keysmith/internal/verify"
)

// recorder is a Registerer that remembers the descriptors of every collector registered with it.
type recorder struct {
	*prometheus.Registry
	descs []*prometheus.Desc
}

func (r *recorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		r.descs = append(r.descs, d)
	}
	return r.Registry.Register(c)
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// noApiKeys is a cache with no ApiKeys in it.
type noApiKeys struct{}

func (noApiKeys) Get(context.Context, client.ObjectKey, client.Object, ...client.GetOption) error {
	return nil
}

func (noApiKeys) List(context.Context, client.ObjectList, ...client.ListOption) error { return nil }

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// exported returns the metric names keysmith registers, the way the manager and the verifier do
// (internal/metrics.Register, verify.NewMetrics), mapped to their type where a scrape shows it
// (dto.MetricType; -1 when a family has no sample without ApiKeys or without an event: the per-ApiKey
// gauges, the rotation and revocation counters). A histogram's name also stands for its _bucket, _sum
// and _count series.
func exported() (map[string]dto.MetricType, error) {
	r := &recorder{Registry: prometheus.NewRegistry()}
	if err := metrics.Register(r, noApiKeys{}, logr.Discard()); err != nil {
		return nil, err
	}
	verify.NewMetrics(r, func() float64 { return 0 })
	names := map[string]dto.MetricType{}
	for _, d := range r.descs {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			names[m[1]] = -1
		}
	}
	families, err := r.Gather()
	if err != nil {
		return nil, err
	}
	for _, f := range families {
		names[f.GetName()] = f.GetType()
	}
	return names, nil
}

// series returns every series name the exported metrics give a query: a histogram's or a summary's
// _bucket, _sum and _count as well as the metrics' own names.
func series(exp map[string]dto.MetricType) map[string]string {
	out := map[string]string{}
	for name, typ := range exp {
		out[name] = name
		switch typ {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				out[name+s] = name
			}
		case dto.MetricType_SUMMARY:
			for _, s := range []string{"_sum", "_count"} {
				out[name+s] = name
			}
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
