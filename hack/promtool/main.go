// Command promtool prepares keysmith's Prometheus assets for Prometheus' own promtool (hack/promtool.sh
// test, make prometheus-test):
//
//   - OUT/rules.yaml: the spec of the PrometheusRule in -rules, the plain rules file that `promtool check
//     rules` and `promtool test rules` read;
//   - OUT/dashboard-rules.yaml: one recording rule per query of the Grafana dashboard in -dashboard (its
//     panels' targets and its query variables), Grafana's variables substituted, one group per panel, so
//     that `promtool check rules` parses every query and names the panel of one that does not parse;
//   - and it fails unless every metric that the rules (expressions and annotation templates) and the
//     dashboard read is one that keysmith exports (internal/metrics and internal/verify's registrations).
//
// Usage: go run ./hack/promtool -rules config/prometheus/rules.yaml -dashboard config/prometheus/grafana-dashboard.json -out DIR
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"sigs.k8s.io/yaml"
)

type ruleFile struct {
	Groups []ruleGroup `json:"groups"`
}

type ruleGroup struct {
	Name  string `json:"name"`
	Rules []rule `json:"rules"`
}

type rule struct {
	Record      string            `json:"record,omitempty"`
	Alert       string            `json:"alert,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// query is one PromQL query read by the rules or the dashboard, and where it is.
type query struct {
	where string
	expr  string
	// text is template text (annotations) whose keysmith_ words are metric names.
	text string
}

func main() {
	rulesPath := flag.String("rules", "config/prometheus/rules.yaml", "the PrometheusRule")
	dashboardPath := flag.String("dashboard", "config/prometheus/grafana-dashboard.json", "the Grafana dashboard")
	out := flag.String("out", "", "directory for rules.yaml and dashboard-rules.yaml")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "-out is required")
		os.Exit(2)
	}
	if err := run(*rulesPath, *dashboardPath, *out); err != nil {
		fmt.Fprintln(os.Stderr, "hack/promtool:", err)
		os.Exit(1)
	}
}

func run(rulesPath, dashboardPath, out string) error {
	var queries []query
	spec, rules, err := extractRules(rulesPath)
	if err != nil {
		return err
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			where := fmt.Sprintf("%s: group %s, %s%s", rulesPath, g.Name, r.Alert, r.Record)
			queries = append(queries, query{where: where, expr: r.Expr})
			for _, k := range sortedKeys(r.Annotations) {
				queries = append(queries, query{where: where + ", annotation " + k, text: r.Annotations[k]})
			}
		}
	}
	if err := writeYAML(filepath.Join(out, "rules.yaml"), spec); err != nil {
		return err
	}
	dash, dq, err := dashboardRules(dashboardPath)
	if err != nil {
		return err
	}
	queries = append(queries, dq...)
	if err := writeYAML(filepath.Join(out, "dashboard-rules.yaml"), dash); err != nil {
		return err
	}
	n := 0
	for _, g := range dash.Groups {
		n += len(g.Rules)
	}
	fmt.Fprintf(os.Stderr, ">> %s: %d groups; %s: %d queries in %d panels and variables\n", rulesPath, len(rules.Groups), dashboardPath, n, len(dash.Groups))
	return checkNames(queries)
}

// extractRules returns the spec of the PrometheusRule at path, as is (promtool, not this program,
// judges every field of it), and its rules.
func extractRules(path string) (map[string]any, *ruleFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var raw map[string]any
	if err := yaml.Unmarshal(b, &raw); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if raw["apiVersion"] != "monitoring.coreos.com/v1" || raw["kind"] != "PrometheusRule" {
		return nil, nil, fmt.Errorf("%s: not a monitoring.coreos.com/v1 PrometheusRule (%v %v)", path, raw["apiVersion"], raw["kind"])
	}
	spec, ok := raw["spec"].(map[string]any)
	if !ok {
		return nil, nil, fmt.Errorf("%s: no spec", path)
	}
	var pr struct {
		Spec ruleFile `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &pr); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(pr.Spec.Groups) == 0 {
		return nil, nil, fmt.Errorf("%s: no rule groups", path)
	}
	return spec, &pr.Spec, nil
}

var nonName = regexp.MustCompile(`[^A-Za-z0-9_]`)

// dashboardRules returns a rules file with one recording rule per query of the dashboard.
func dashboardRules(path string) (*ruleFile, []query, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var d struct {
		Panels     []panel `json:"panels"`
		Rows       []panel `json:"rows"` // schema < 16
		Templating struct {
			List []struct {
				Name       string          `json:"name"`
				Type       string          `json:"type"`
				Query      json.RawMessage `json:"query"`
				Definition string          `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	rf := &ruleFile{}
	var queries []query
	groups := map[string]bool{}
	add := func(group, record, expr string) error {
		if groups[group] {
			return fmt.Errorf("%s: two panels named %q", path, group)
		}
		if strings.TrimSpace(expr) == "" {
			return fmt.Errorf("%s: %s has an empty query", path, group)
		}
		e := substituteGrafana(expr)
		if len(rf.Groups) == 0 || rf.Groups[len(rf.Groups)-1].Name != group {
			rf.Groups = append(rf.Groups, ruleGroup{Name: group})
		}
		g := &rf.Groups[len(rf.Groups)-1]
		g.Rules = append(g.Rules, rule{Record: record, Expr: e})
		queries = append(queries, query{where: path + ": " + group + " " + record, expr: e})
		return nil
	}
	var walk func(ps []panel) error
	walk = func(ps []panel) error {
		for _, p := range ps {
			group := fmt.Sprintf("panel %d: %s", p.ID, p.Title)
			for _, t := range p.Targets {
				if t.Expr == "" && t.Datasource != nil && !strings.Contains(string(t.Datasource), "prometheus") && !strings.Contains(string(t.Datasource), "datasource") {
					continue // another data source's target
				}
				if err := add(group, fmt.Sprintf("dashboard:panel_%d:%s", p.ID, nonName.ReplaceAllString(t.RefID, "_")), t.Expr); err != nil {
					return err
				}
			}
			groups[group] = len(p.Targets) > 0
			if err := walk(p.Panels); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(append(d.Panels, d.Rows...)); err != nil {
		return nil, nil, err
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q := v.Definition
		var s string
		if json.Unmarshal(v.Query, &s) == nil {
			q = s
		} else {
			var o struct {
				Query string `json:"query"`
			}
			if json.Unmarshal(v.Query, &o) == nil && o.Query != "" {
				q = o.Query
			}
		}
		expr, err := variableQuery(q)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: variable %s: %w", path, v.Name, err)
		}
		if expr == "" {
			continue
		}
		if err := add("variable "+v.Name, "dashboard:variable:"+nonName.ReplaceAllString(v.Name, "_"), expr); err != nil {
			return nil, nil, err
		}
	}
	if len(queries) == 0 {
		return nil, nil, fmt.Errorf("%s: no queries", path)
	}
	return rf, queries, nil
}

type panel struct {
	ID      int    `json:"id"`
	Title   string `json:"title"`
	Targets []struct {
		RefID      string          `json:"refId"`
		Expr       string          `json:"expr"`
		Datasource json.RawMessage `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

var (
	labelValues = regexp.MustCompile(`^\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$`)
	queryResult = regexp.MustCompile(`^\s*query_result\((.*)\)\s*$`)
	metricsFn   = regexp.MustCompile(`^\s*(label_names|metrics)\(.*\)\s*$`)
)

// variableQuery returns the PromQL inside a query variable of Grafana's Prometheus data source:
// label_values(selector, label), query_result(expr); "" for label_values(label), label_names() and
// metrics(regex), which hold none.
func variableQuery(q string) (string, error) {
	switch {
	case strings.TrimSpace(q) == "", metricsFn.MatchString(q):
		return "", nil
	case labelValues.MatchString(q):
		return labelValues.FindStringSubmatch(q)[1], nil
	case queryResult.MatchString(q):
		return queryResult.FindStringSubmatch(q)[1], nil
	case strings.HasPrefix(strings.TrimSpace(q), "label_values("):
		return "", nil // label_values(label): no selector
	}
	return "", fmt.Errorf("unrecognized variable query %q", q)
}

var keysmithWord = regexp.MustCompile(`\bkeysmith_[A-Za-z0-9_:]*`)

// checkNames fails unless every metric the queries read is exported by keysmith.
func checkNames(queries []query) error {
	exp, err := exported()
	if err != nil {
		return err
	}
	known := series(exp)
	used := map[string]bool{}
	var problems []string
	for _, q := range queries {
		var names []string
		if q.expr != "" {
			ns, err := metricNames(q.expr)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", q.where, err))
				continue
			}
			if len(ns) == 0 && !strings.Contains(q.expr, "vector(") && !strings.Contains(q.expr, "time()") {
				problems = append(problems, fmt.Sprintf("%s: reads no metric: %s", q.where, q.expr))
			}
			names = ns
		}
		names = append(names, keysmithWord.FindAllString(q.text, -1)...)
		for _, n := range names {
			base, ok := known[n]
			if !ok {
				problems = append(problems, fmt.Sprintf("%s: %s is not a metric keysmith exports", q.where, n))
				continue
			}
			used[base] = true
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	var unused []string
	for _, n := range sortedKeys(exp) {
		if !used[n] {
			unused = append(unused, n)
		}
	}
	fmt.Fprintf(os.Stderr, ">> the rules and the dashboard read %d of the %d metrics keysmith exports, all of them exported (not read: %s)\n",
		len(used), len(exp), strings.Join(unused, ", "))
	return nil
}

func writeYAML(path string, v any) error {
	b, err := yaml.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
