package main

import (
	"fmt"
	"regexp"
	"strings"
)

// PromQL words that are not metric names: keywords, aggregation operators (which may be followed by a
// by/without clause instead of a parenthesis) and the literals inf and nan.
var (
	keywords = set("and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end")
	// Followed by a parenthesized list of label names.
	labelListKeywords = set("by", "without", "on", "ignoring", "group_left", "group_right")
	aggregations      = set("sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
		"bottomk", "topk", "quantile", "limitk", "limit_ratio")
	nameMatcher = regexp.MustCompile(`__name__\s*=\s*"([^"]*)"`)
)

func set(words ...string) map[string]bool {
	m := map[string]bool{}
	for _, w := range words {
		m[w] = true
	}
	return m
}

// metricNames returns the metric names that a PromQL expression selects: the identifiers that are not
// keywords, aggregation operators, function names (an identifier followed by "("), label names (inside
// braces or a by/without/on/ignoring/group_left/group_right list) or inside strings, durations and
// ranges. It does not validate the expression (promtool does); it only needs to find every selector of a
// valid one.
func metricNames(expr string) ([]string, error) {
	var names []string
	s := expr
	i := 0
	skipSpace := func() {
		for i < len(s) && strings.ContainsRune(" \t\r\n", rune(s[i])) {
			i++
		}
	}
	// skipString skips the string literal starting at s[i].
	skipString := func() error {
		q := s[i]
		for j := i + 1; j < len(s); j++ {
			switch {
			case s[j] == '\\' && q != '`':
				j++
			case s[j] == q:
				i = j + 1
				return nil
			}
		}
		return fmt.Errorf("unterminated string at %d in %q", i, expr)
	}
	// skipGroup skips from the opening bracket at s[i] to its closing one, strings included, and returns
	// what was inside.
	skipGroup := func(open, closing byte) (string, error) {
		start := i
		depth := 0
		for i < len(s) {
			switch c := s[i]; {
			case c == '"' || c == '\'' || c == '`':
				if err := skipString(); err != nil {
					return "", err
				}
				continue
			case c == open:
				depth++
			case c == closing:
				depth--
				if depth == 0 {
					i++
					return s[start+1 : i-1], nil
				}
			}
			i++
		}
		return "", fmt.Errorf("unbalanced %c at %d in %q", open, start, expr)
	}
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			i++
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			if err := skipString(); err != nil {
				return nil, err
			}
		case c == '{':
			inside, err := skipGroup('{', '}')
			if err != nil {
				return nil, err
			}
			for _, m := range nameMatcher.FindAllStringSubmatch(inside, -1) {
				names = append(names, m[1])
			}
		case c == '[':
			if _, err := skipGroup('[', ']'); err != nil {
				return nil, err
			}
		case c >= '0' && c <= '9' || c == '.':
			// Numbers and durations (1e-6, 0x1f, 5m, 1h30m).
			for i < len(s) && (isIdent(s[i]) || s[i] == '.') {
				i++
			}
		case isIdentStart(c):
			start := i
			for i < len(s) && isIdent(s[i]) {
				i++
			}
			word := s[start:i]
			skipSpace()
			next := byte(0)
			if i < len(s) {
				next = s[i]
			}
			switch {
			case labelListKeywords[strings.ToLower(word)]:
				if next == '(' {
					if _, err := skipGroup('(', ')'); err != nil {
						return nil, err
					}
				}
			case keywords[strings.ToLower(word)], aggregations[strings.ToLower(word)]:
			case next == '(':
				// A function call.
			default:
				names = append(names, word)
			}
		default:
			i++
		}
	}
	return names, nil
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdent(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

var grafanaVariable = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)(?::[^}]*)?\}|\$([A-Za-z0-9_]+)|\[\[([A-Za-z0-9_]+)(?::[^\]]*)?\]\]`)

// grafanaBuiltins are the values that stand in for Grafana's built-in variables when a query is checked.
var grafanaBuiltins = map[string]string{
	"__rate_interval": "5m", "__interval": "1m", "__range": "1h",
	"__interval_ms": "60000", "__range_s": "3600", "__range_ms": "3600000",
}

// substituteGrafana replaces Grafana's variables in a dashboard query: the built-in intervals by
// durations, any other variable (a dashboard's $namespace, say, used in a label matcher) by ".*".
func substituteGrafana(q string) string {
	return grafanaVariable.ReplaceAllStringFunc(q, func(m string) string {
		sub := grafanaVariable.FindStringSubmatch(m)
		name := sub[1] + sub[2] + sub[3]
		if v, ok := grafanaBuiltins[name]; ok {
			return v
		}
		return ".*"
	})
}
