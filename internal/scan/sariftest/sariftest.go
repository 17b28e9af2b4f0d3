// Package sariftest checks a SARIF log against what SARIF 2.1.0 requires and what GitHub code scanning
// reads, for the tests of `kubectl apikey scan --format sarif`.
package sariftest

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Validate checks b: version 2.1.0, a $schema URI, runs, each run's tool.driver.name and rules (unique
// ids), and each result's ruleId (a rule of the driver, at ruleIndex), level, message.text and one
// physical location with a relative URI (or a file URI) and a region (startLine and startColumn from 1,
// endColumn past startColumn); a uriBaseId only on a relative URI, and named in the run's
// originalUriBaseIds by an absolute file URI ending in "/"; columnKind, where given, utf16CodeUnits or
// unicodeCodePoints; security-severity, where given, a number from 0 to 10 in a string, as GitHub reads
// it. It returns the results' rule ids in order.
func Validate(b []byte) (ruleIDs []string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	var log map[string]any
	if err := json.Unmarshal(b, &log); err != nil {
		return nil, fmt.Errorf("not JSON: %v", err)
	}
	if s := str(log, "version"); s != "2.1.0" {
		return nil, fmt.Errorf("version %q, want 2.1.0", s)
	}
	if s := str(log, "$schema"); !strings.HasPrefix(s, "https://") || !strings.Contains(s, "sarif") {
		return nil, fmt.Errorf("$schema %q", s)
	}
	runs := arr(log, "runs")
	if len(runs) == 0 {
		return nil, fmt.Errorf("no runs")
	}
	for ri, x := range runs {
		run := x.(map[string]any)
		driver := obj(obj(run, "tool"), "driver")
		if str(driver, "name") == "" {
			return nil, fmt.Errorf("run %d: tool.driver.name is empty", ri)
		}
		switch k := str(run, "columnKind"); k {
		case "", "utf16CodeUnits", "unicodeCodePoints":
		default:
			return nil, fmt.Errorf("run %d: columnKind %q", ri, k)
		}
		bases := map[string]bool{}
		if b, ok := run["originalUriBaseIds"]; ok {
			for id, v := range b.(map[string]any) {
				u := str(v.(map[string]any), "uri")
				if !strings.HasPrefix(u, "file:///") || !strings.HasSuffix(u, "/") {
					return nil, fmt.Errorf("run %d: originalUriBaseIds[%s] is %q, not an absolute file URI of a directory", ri, id, u)
				}
				bases[id] = true
			}
		}
		ids := map[string]int{}
		for i, r := range arr(driver, "rules") {
			rule := r.(map[string]any)
			id := str(rule, "id")
			if id == "" {
				return nil, fmt.Errorf("rule %d has no id", i)
			}
			if _, dup := ids[id]; dup {
				return nil, fmt.Errorf("rule %s twice", id)
			}
			ids[id] = i
			if str(obj(rule, "shortDescription"), "text") == "" {
				return nil, fmt.Errorf("rule %s has no shortDescription.text", id)
			}
			if p, ok := rule["properties"].(map[string]any); ok {
				if sev, ok := p["security-severity"]; ok {
					s, ok := sev.(string)
					if !ok {
						return nil, fmt.Errorf("rule %s: security-severity is not a string", id)
					}
					if v, err := strconv.ParseFloat(s, 64); err != nil || v < 0 || v > 10 {
						return nil, fmt.Errorf("rule %s: security-severity %q", id, s)
					}
				}
			}
		}
		for i, x := range arr(run, "results") {
			res := x.(map[string]any)
			id := str(res, "ruleId")
			idx, ok := ids[id]
			if !ok {
				return nil, fmt.Errorf("result %d: ruleId %q is no rule of the driver", i, id)
			}
			if v, ok := res["ruleIndex"]; ok {
				if f, ok := v.(float64); !ok || int(f) != idx {
					return nil, fmt.Errorf("result %d: ruleIndex %v, but rule %s is at %d", i, v, id, idx)
				}
			}
			switch l := str(res, "level"); l {
			case "", "none", "note", "warning", "error":
			default:
				return nil, fmt.Errorf("result %d: level %q", i, l)
			}
			if str(obj(res, "message"), "text") == "" {
				return nil, fmt.Errorf("result %d: no message.text", i)
			}
			locs := arr(res, "locations")
			if len(locs) != 1 {
				return nil, fmt.Errorf("result %d: %d locations, want 1", i, len(locs))
			}
			pl := obj(locs[0].(map[string]any), "physicalLocation")
			al := obj(pl, "artifactLocation")
			uri := str(al, "uri")
			if uri == "" || strings.Contains(uri, `\`) || strings.HasPrefix(uri, "./") || strings.HasPrefix(uri, "/") {
				return nil, fmt.Errorf("result %d: uri %q", i, uri)
			}
			if base := str(al, "uriBaseId"); base != "" {
				if strings.Contains(uri, ":") || !bases[base] {
					return nil, fmt.Errorf("result %d: uri %q with uriBaseId %q (bases %v)", i, uri, base, bases)
				}
			}
			region := obj(pl, "region")
			line, _ := region["startLine"].(float64)
			col, _ := region["startColumn"].(float64)
			end, _ := region["endColumn"].(float64)
			if line < 1 || col < 1 || (end != 0 && end <= col) {
				return nil, fmt.Errorf("result %d: region %v", i, region)
			}
			if fp, ok := res["partialFingerprints"].(map[string]any); ok {
				for k, v := range fp {
					if _, ok := v.(string); !ok {
						return nil, fmt.Errorf("result %d: partialFingerprints[%s] is not a string", i, k)
					}
				}
			}
			ruleIDs = append(ruleIDs, id)
		}
	}
	return ruleIDs, nil
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

func obj(m map[string]any, k string) map[string]any {
	o, ok := m[k].(map[string]any)
	if !ok {
		panic(fmt.Sprintf("%s is not an object", k))
	}
	return o
}

func arr(m map[string]any, k string) []any {
	a, ok := m[k].([]any)
	if !ok {
		panic(fmt.Sprintf("%s is not an array", k))
	}
	return a
}
