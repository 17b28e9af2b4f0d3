package main

import (
	"slices"
	"testing"
)

func TestMetricNames(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string
	}{
		{`keysmith_apikey_ready`, []string{"keysmith_apikey_ready"}},
		{`max by (namespace, name, reason) (keysmith_apikey_ready{reason!="Disabled"}) == 0`, []string{"keysmith_apikey_ready"}},
		{`sum(rate(a_total[5m])) by (code) / ignoring(code) group_left sum(rate(b_total{x=~"y|z"}[5m] offset 1h))`, []string{"a_total", "b_total"}},
		{"histogram_quantile(0.99, sum by (le) (rate(h_bucket[$__rate_interval])))", []string{"h_bucket"}},
		{`count(x == 0) or vector(0)`, []string{"x"}},
		{`(time() - max by (namespace, name) (last)) > 30 * 24 * 3600 unless on (namespace, name) other and bool 1e-6`, []string{"last", "other"}},
		{`label_replace(up, "dst", "$1", "src", "(.*)") # a comment naming not_a_metric`, []string{"up"}},
		{`{__name__="by_name", job="j"}`, []string{"by_name"}},
		{`topk(3, sum without (pod) (rate(c_total[1h:5m])))`, []string{"c_total"}},
		{`a:recorded:rate5m * on (ns) group_right (team) info`, []string{"a:recorded:rate5m", "info"}},
	} {
		got, err := metricNames(substituteGrafana(c.expr))
		if err != nil {
			t.Errorf("%s: %v", c.expr, err)
			continue
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: got %q, want %q", c.expr, got, c.want)
		}
	}
	if _, err := metricNames(`x{a="b}`); err == nil {
		t.Error("an unterminated string is an error")
	}
}

func TestSubstituteGrafana(t *testing.T) {
	for in, want := range map[string]string{
		`rate(x{namespace=~"$namespace"}[$__rate_interval])`:    `rate(x{namespace=~".*"}[5m])`,
		`increase(x{pod="${pod:regex}"}[$__range])`:             `increase(x{pod=".*"}[1h])`,
		`sum(x{a="[[a]]"}) / $__range_s`:                        `sum(x{a=".*"}) / 3600`,
		`max_over_time(x[$__interval]) * 1000 / $__interval_ms`: `max_over_time(x[1m]) * 1000 / 60000`,
	} {
		if got := substituteGrafana(in); got != want {
			t.Errorf("%s: got %s, want %s", in, got, want)
		}
	}
}

func TestVariableQuery(t *testing.T) {
	for in, want := range map[string]string{
		`label_values(keysmith_apikey_ready, namespace)`:                    `keysmith_apikey_ready`,
		`label_values(keysmith_apikey_ready{namespace=~"$ns"}, name)`:       `keysmith_apikey_ready{namespace=~"$ns"}`,
		`label_values(namespace)`:                                           ``,
		`query_result(topk(5, sum by (namespace) (keysmith_apikey_ready)))`: `topk(5, sum by (namespace) (keysmith_apikey_ready))`,
		`metrics(keysmith_.*)`:                                              ``,
	} {
		got, err := variableQuery(in)
		if err != nil || got != want {
			t.Errorf("%s: got %q, %v, want %q", in, got, err, want)
		}
	}
}

// The registrations hack/promtool compares against include every family of internal/metrics and
// internal/verify, with the histogram's series.
func TestExported(t *testing.T) {
	exp, err := exported()
	if err != nil {
		t.Fatal(err)
	}
	s := series(exp)
	for _, n := range []string{
		"keysmith_apikey_ready", "keysmith_apikey_expiration_timestamp_seconds", "keysmith_apikey_rotations_total",
		"keysmith_verifications_total", "keysmith_verification_duration_seconds_bucket", "keysmith_verify_index_keys",
	} {
		if _, ok := s[n]; !ok {
			t.Errorf("%s not among %v", n, sortedKeys(s))
		}
	}
	if _, ok := s["keysmith_verifications_total_bucket"]; ok {
		t.Error("a counter has no _bucket series")
	}
}
