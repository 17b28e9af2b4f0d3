package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/keysmith-dev/keysmith/internal/keys"
	"github.com/keysmith-dev/keysmith/internal/scan"
)

// The states a finding can have: a key's state in status, or one of these.
const (
	scanStateUnknown   = "unknown"   // no ApiKey the user can list has it
	scanStateUnchecked = "unchecked" // --offline: not looked up
	scanStateNotAKey   = "not-a-key" // the checksum does not hold
)

// scanLiveState reports whether a finding in this state may open an API: Active or Retiring, or not
// looked up (--offline).
func scanLiveState(s string) bool {
	return s == "Active" || s == "Retiring" || s == scanStateUnchecked
}

type scanAPIKeyRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

func (a scanAPIKeyRef) String() string { return a.Namespace + "/" + a.Name }

// scanItem is one finding with what the lookup said of it.
type scanItem struct {
	f       *scan.Finding
	state   string
	apiKey  *scanAPIKeyRef
	detail  string
	revoked bool
}

type scanReport struct {
	res         *scan.Result
	items       []scanItem
	lookup      scanLookup
	revocations []*scanRevocation
}

func newScanReport(res *scan.Result) *scanReport {
	r := &scanReport{res: res}
	for i := range res.Findings {
		it := scanItem{f: &res.Findings[i]}
		if !it.f.Valid {
			it.state, it.detail = scanStateNotAKey, "well-formed, but its checksum does not hold"
		}
		r.items = append(r.items, it)
	}
	return r
}

// keys counts the findings whose checksum holds.
func (r *scanReport) keys() int {
	n := 0
	for _, it := range r.items {
		if it.f.Valid {
			n++
		}
	}
	return n
}

// wanted is the set of digests to look up.
func (r *scanReport) wanted() map[keys.Digest]bool {
	w := map[keys.Digest]bool{}
	for _, it := range r.items {
		if it.f.Valid {
			w[it.f.Digest()] = true
		}
	}
	return w
}

func (r *scanReport) classifyOffline() {
	for i := range r.items {
		if r.items[i].f.Valid {
			r.items[i].state = scanStateUnchecked
		}
	}
}

// live counts the findings that may open an API.
func (r *scanReport) live() int {
	n := 0
	for _, it := range r.items {
		if scanLiveState(it.state) {
			n++
		}
	}
	return n
}

func (r *scanReport) write(w io.Writer, format string) error {
	switch format {
	case scanFormatJSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(r.json())
	case scanFormatSARIF:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(r.sarif())
	}
	return r.text(w)
}

// --- text

func (r *scanReport) text(w io.Writer) error {
	if len(r.items) > 0 {
		var table bytes.Buffer
		tw := tabwriter.NewWriter(&table, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "LOCATION\tKEY\tID\tSTATE\tAPIKEY\tDETAIL")
		for _, it := range r.items {
			id, ak, state := it.f.ID(), "", it.state
			if id == "" {
				id = "-"
			}
			if it.apiKey != nil {
				ak = it.apiKey.String()
			}
			if state == scanStateNotAKey {
				state = "not a key"
			}
			detail := it.detail
			if it.revoked {
				detail = "revoked by this scan"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", it.f.Location(), it.f.Redacted, id, state, ak, detail)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, line := range strings.SplitAfter(table.String(), "\n") {
			if line != "" {
				fmt.Fprintln(w, strings.TrimRight(line, " \n"))
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, r.summaryLine())
	if len(r.revocations) > 0 {
		fmt.Fprintln(w)
		for _, rev := range r.revocations {
			if !rev.Refused {
				fmt.Fprintf(w, "NOT REVOKED: ApiKey %s, key %s: %s\n", rev.ApiKey, strings.Join(rev.KeyIDs, ", "), rev.Error)
				continue
			}
			fmt.Fprintf(w, "ApiKey %s: %s (read back from the API server after %.1f s)\n", rev.ApiKey, rev.RefusedMessage, rev.RefusedSeconds)
			switch {
			case rev.Recorded:
				fmt.Fprintf(w, "ApiKey %s: keysmith recorded it after %.1f s: %s\n", rev.ApiKey, rev.Seconds, rev.Message)
			case rev.Warning != "":
				fmt.Fprintf(w, "ApiKey %s: warning: %s\n", rev.ApiKey, rev.Warning)
			case rev.Error != "":
				fmt.Fprintf(w, "ApiKey %s: error: %s\n", rev.ApiKey, rev.Error)
			}
		}
	}
	return nil
}

// truncatedNote says how many findings were not kept, and that the keys among them may be live.
func (r *scanReport) truncatedNote() string {
	res := r.res
	msg := fmt.Sprintf("%d more finding%s not reported (at most %d are kept per file and %d in all)",
		res.Truncated, scanPlural(res.Truncated), scan.DefaultMaxFindingsPerFile, scan.DefaultMaxFindings)
	if res.TruncatedKeys > 0 {
		msg += fmt.Sprintf(", %d of them with a valid checksum: not looked up, possibly live", res.TruncatedKeys)
	}
	return msg
}

// counts returns the findings by state, in a fixed order.
func (r *scanReport) counts() (order []string, by map[string]int) {
	by = map[string]int{}
	for _, it := range r.items {
		by[it.state]++
	}
	for _, s := range []string{"Active", "Retiring", scanStateUnchecked, "Revoked", "Expired", scanStateUnknown, scanStateNotAKey} {
		if by[s] > 0 {
			order = append(order, s)
		}
	}
	return order, by
}

func (r *scanReport) summaryLine() string {
	var parts []string
	order, by := r.counts()
	if live := r.live(); live > 0 {
		var kinds []string
		for _, s := range order {
			if scanLiveState(s) {
				kinds = append(kinds, fmt.Sprintf("%d %s", by[s], s))
			}
		}
		switch r.lookup.Mode {
		case "offline", "failed":
			why := "--offline"
			if r.lookup.Mode == "failed" {
				why = "the lookup failed"
			}
			parts = append(parts, fmt.Sprintf("%d key%s not looked up (%s), possibly live", live, scanPlural(live), why))
		default:
			parts = append(parts, fmt.Sprintf("%d live key%s (%s)", live, scanPlural(live), strings.Join(kinds, ", ")))
		}
	}
	for _, s := range order {
		if scanLiveState(s) {
			continue
		}
		name := strings.ToLower(s)
		if s == scanStateNotAKey {
			name = "not a key (bad checksum)"
		}
		parts = append(parts, fmt.Sprintf("%d %s", by[s], name))
	}
	if r.res.Truncated > 0 {
		parts = append(parts, fmt.Sprintf("%d more not reported (truncated)", r.res.Truncated))
	}
	found := "no keys found"
	if len(parts) > 0 {
		found = strings.Join(parts, ", ")
	}
	res := r.res
	read := fmt.Sprintf("%d file%s (%s)", res.Files, scanPlural(res.Files), scanBytes(res.Bytes))
	if res.Blobs > 0 {
		read += fmt.Sprintf(" and %d blob%s of git history (%s)", res.Blobs, scanPlural(res.Blobs), scanBytes(res.BlobBytes))
	}
	read += fmt.Sprintf(" scanned in %.2f s", res.Elapsed.Seconds())
	if res.Binary > 0 {
		read += fmt.Sprintf(", %d binary skipped", res.Binary)
	}
	switch r.lookup.Mode {
	case "all-namespaces":
		read += fmt.Sprintf("; looked up in %d ApiKey%s of every namespace", r.lookup.ApiKeys, scanPlural(r.lookup.ApiKeys))
	case "namespace":
		read += fmt.Sprintf("; looked up in %d ApiKey%s of namespace %s", r.lookup.ApiKeys, scanPlural(r.lookup.ApiKeys), r.lookup.Namespace)
	}
	return found + "; " + read
}

func scanBytes(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d bytes", n)
}

// --- JSON

type scanJSONFinding struct {
	Path        string         `json:"path"`
	Commit      string         `json:"commit,omitempty"`
	Blob        string         `json:"blob,omitempty"`
	Line        int            `json:"line"`
	Column      int            `json:"column"`
	Key         string         `json:"key"`
	ID          string         `json:"id,omitempty"`
	Prefix      string         `json:"prefix"`
	Environment string         `json:"environment"`
	Checksum    string         `json:"checksum"`
	State       string         `json:"state"`
	ApiKey      *scanAPIKeyRef `json:"apiKey,omitempty"`
	Detail      string         `json:"detail,omitempty"`
	Revoked     bool           `json:"revokedByThisScan,omitempty"`
}

type scanJSONSummary struct {
	Files         int            `json:"files"`
	Bytes         int64          `json:"bytes"`
	Blobs         int            `json:"blobs,omitempty"`
	BlobBytes     int64          `json:"blobBytes,omitempty"`
	BinarySkipped int            `json:"binarySkipped"`
	Seconds       float64        `json:"seconds"`
	Findings      int            `json:"findings"`
	Live          int            `json:"live"`
	ByState       map[string]int `json:"byState"`
	// Truncated counts the findings not reported (past the limits on findings kept), TruncatedKeys those
	// of them whose checksum holds (not looked up: possibly live).
	Truncated     int `json:"truncated"`
	TruncatedKeys int `json:"truncatedKeys,omitempty"`
}

type scanJSON struct {
	Findings []scanJSONFinding `json:"findings"`
	Lookup   scanLookup        `json:"lookup"`
	Summary  scanJSONSummary   `json:"summary"`
	Revoked  []*scanRevocation `json:"revocations,omitempty"`
	Problems []string          `json:"problems,omitempty"`
	Warnings []string          `json:"warnings,omitempty"`
}

func (r *scanReport) json() scanJSON {
	out := scanJSON{Findings: []scanJSONFinding{}, Lookup: r.lookup, Revoked: r.revocations}
	for _, it := range r.items {
		f := it.f
		c := "valid"
		if !f.Valid {
			c = "bad"
		}
		out.Findings = append(out.Findings, scanJSONFinding{
			Path: f.Path, Commit: f.Commit, Blob: f.Blob, Line: f.Line, Column: f.Column, Key: f.Redacted, ID: f.ID(),
			Prefix: f.Prefix, Environment: f.Environment, Checksum: c, State: it.state, ApiKey: it.apiKey,
			Detail: it.detail, Revoked: it.revoked,
		})
	}
	_, by := r.counts()
	res := r.res
	out.Summary = scanJSONSummary{Files: res.Files, Bytes: res.Bytes, Blobs: res.Blobs, BlobBytes: res.BlobBytes,
		BinarySkipped: res.Binary, Seconds: res.Elapsed.Seconds(), Findings: len(r.items), Live: r.live(), ByState: by,
		Truncated: res.Truncated, TruncatedKeys: res.TruncatedKeys}
	for _, p := range res.Problems {
		out.Problems = append(out.Problems, p.Error())
	}
	out.Warnings = res.Warnings
	if res.Truncated > 0 {
		out.Warnings = append(slices.Clone(out.Warnings), r.truncatedNote())
	}
	return out
}

// --- SARIF 2.1.0 (https://docs.oasis-open.org/sarif/sarif/v2.1.0/sarif-v2.1.0.html), as GitHub code
// scanning takes it: one result per finding, one rule per state.

const (
	sarifVersion = "2.1.0"
	sarifSchema  = "https://json.schemastore.org/sarif-2.1.0.json"
)

type sarifLog struct {
	Schema  string     `json:"$schema"`
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool sarifTool `json:"tool"`
	// OriginalURIBaseIDs maps each uriBaseId (%SRCROOT% for the repository the scan ran in) to the top
	// of its git work tree, as a file URI.
	OriginalURIBaseIDs map[string]sarifArtifactLocation `json:"originalUriBaseIds,omitempty"`
	// ColumnKind says how columns count: UTF-16 code units, SARIF's default, said explicitly.
	ColumnKind  string            `json:"columnKind"`
	Results     []sarifResult     `json:"results"`
	Invocations []sarifInvocation `json:"invocations,omitempty"`
	Properties  map[string]any    `json:"properties,omitempty"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	FullName       string      `json:"fullName,omitempty"`
	InformationURI string      `json:"informationUri,omitempty"`
	Rules          []sarifRule `json:"rules"`
}

type sarifText struct {
	Text     string `json:"text"`
	Markdown string `json:"markdown,omitempty"`
}

type sarifRule struct {
	ID                   string          `json:"id"`
	Name                 string          `json:"name"`
	ShortDescription     sarifText       `json:"shortDescription"`
	FullDescription      sarifText       `json:"fullDescription"`
	Help                 sarifText       `json:"help"`
	DefaultConfiguration sarifRuleConfig `json:"defaultConfiguration"`
	Properties           map[string]any  `json:"properties,omitempty"`
	state                string          // the finding state the rule is for
}

type sarifRuleConfig struct {
	Level string `json:"level"`
}

type sarifResult struct {
	RuleID              string            `json:"ruleId"`
	RuleIndex           int               `json:"ruleIndex"`
	Level               string            `json:"level"`
	Message             sarifText         `json:"message"`
	Locations           []sarifLocation   `json:"locations"`
	PartialFingerprints map[string]string `json:"partialFingerprints,omitempty"`
	Properties          map[string]any    `json:"properties,omitempty"`
}

type sarifLocation struct {
	PhysicalLocation sarifPhysicalLocation `json:"physicalLocation"`
}

type sarifPhysicalLocation struct {
	ArtifactLocation sarifArtifactLocation `json:"artifactLocation"`
	Region           sarifRegion           `json:"region"`
}

type sarifArtifactLocation struct {
	URI       string `json:"uri"`
	URIBaseID string `json:"uriBaseId,omitempty"`
}

type sarifRegion struct {
	StartLine   int `json:"startLine"`
	StartColumn int `json:"startColumn"`
	EndColumn   int `json:"endColumn"`
}

type sarifInvocation struct {
	ExecutionSuccessful        bool                `json:"executionSuccessful"`
	ToolExecutionNotifications []sarifNotification `json:"toolExecutionNotifications,omitempty"`
}

type sarifNotification struct {
	Level   string    `json:"level"`
	Message sarifText `json:"message"`
}

const scanRunbook = "Revoke it at once by its id (`kubectl apikey scan --revoke PATH`, or `kubectl -n NAMESPACE annotate apikey NAME keysmith.dev/revoke=<id>`: docs/lifecycle.md, Emergency revocation), then remove it from the file and from git history."

// scanRules are the SARIF rules, one per state; security-severity is GitHub's severity (critical >= 9).
var scanRules = []sarifRule{
	{ID: "keysmith/live-key", Name: "LiveKey", state: "Active",
		ShortDescription:     sarifText{Text: "Live keysmith API key (Active)"},
		FullDescription:      sarifText{Text: "A keysmith API key that its ApiKey lists as Active: it opens the APIs it was granted until it is revoked."},
		Help:                 sarifText{Text: scanRunbook, Markdown: scanRunbook},
		DefaultConfiguration: sarifRuleConfig{Level: "error"}, Properties: map[string]any{"tags": []string{"security", "secret"}, "security-severity": "9.5", "precision": "very-high"}},
	{ID: "keysmith/retiring-key", Name: "RetiringKey", state: "Retiring",
		ShortDescription:     sarifText{Text: "Live keysmith API key (Retiring)"},
		FullDescription:      sarifText{Text: "A keysmith API key replaced by a rotation that is still accepted until the end of its overlap."},
		Help:                 sarifText{Text: scanRunbook, Markdown: scanRunbook},
		DefaultConfiguration: sarifRuleConfig{Level: "error"}, Properties: map[string]any{"tags": []string{"security", "secret"}, "security-severity": "9.0", "precision": "very-high"}},
	{ID: "keysmith/unchecked-key", Name: "UncheckedKey", state: scanStateUnchecked,
		ShortDescription:     sarifText{Text: "keysmith API key (not looked up)"},
		FullDescription:      sarifText{Text: "A well-formed keysmith API key with a valid checksum, found by an offline scan: it may be live."},
		Help:                 sarifText{Text: "Run `kubectl apikey scan` with cluster access to learn its state, or revoke it by its id. " + scanRunbook},
		DefaultConfiguration: sarifRuleConfig{Level: "error"}, Properties: map[string]any{"tags": []string{"security", "secret"}, "security-severity": "8.0", "precision": "very-high"}},
	{ID: "keysmith/unknown-key", Name: "UnknownKey", state: scanStateUnknown,
		ShortDescription:     sarifText{Text: "keysmith API key of no ApiKey you can list"},
		FullDescription:      sarifText{Text: "A keysmith API key with a valid checksum that no ApiKey the scan could list has: another cluster's, another namespace's, or one whose ApiKey is gone."},
		Help:                 sarifText{Text: "Ask whoever can list every ApiKey to scan it, then remove it from the file and from git history."},
		DefaultConfiguration: sarifRuleConfig{Level: "warning"}, Properties: map[string]any{"tags": []string{"security", "secret"}, "security-severity": "7.0", "precision": "high"}},
	{ID: "keysmith/revoked-key", Name: "RevokedKey", state: "Revoked",
		ShortDescription:     sarifText{Text: "Revoked keysmith API key"},
		FullDescription:      sarifText{Text: "A keysmith API key that is revoked: every verifier refuses it."},
		Help:                 sarifText{Text: "Nothing accepts it any more; remove it from the file so that scans stay quiet."},
		DefaultConfiguration: sarifRuleConfig{Level: "note"}, Properties: map[string]any{"tags": []string{"security", "secret"}, "security-severity": "2.0", "precision": "very-high"}},
	{ID: "keysmith/expired-key", Name: "ExpiredKey", state: "Expired",
		ShortDescription:     sarifText{Text: "Expired keysmith API key"},
		FullDescription:      sarifText{Text: "A keysmith API key past its notAfter: every verifier refuses it."},
		Help:                 sarifText{Text: "Nothing accepts it any more; remove it from the file so that scans stay quiet."},
		DefaultConfiguration: sarifRuleConfig{Level: "note"}, Properties: map[string]any{"tags": []string{"security", "secret"}, "security-severity": "2.0", "precision": "very-high"}},
	{ID: "keysmith/not-a-key", Name: "NotAKey", state: scanStateNotAKey,
		ShortDescription:     sarifText{Text: "String shaped like a keysmith API key, with a bad checksum"},
		FullDescription:      sarifText{Text: "A string that matches the key pattern but whose checksum does not hold: not a key keysmith issued (a test fixture, a truncated or altered key)."},
		Help:                 sarifText{Text: "No action needed unless it is a key altered on purpose."},
		DefaultConfiguration: sarifRuleConfig{Level: "note"}, Properties: map[string]any{"tags": []string{"secret"}, "precision": "high"}},
}

func scanRuleIndex(state string) int {
	for i, r := range scanRules {
		if r.state == state {
			return i
		}
	}
	return -1
}

// sarifURI is a finding's path as a URI reference: relative paths with forward slashes (relative to
// where the scan ran, which code scanning takes as the repository root), absolute ones as file URIs.
func sarifURI(p string) string {
	if p == "-" {
		return "stdin"
	}
	p = filepath.ToSlash(p)
	if strings.HasPrefix(p, "/") {
		return "file://" + scanEscapePath(p)
	}
	return scanEscapePath(strings.TrimPrefix(p, "./"))
}

func scanEscapePath(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '/' || c == '-' || c == '.' || c == '_' || c == '~' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// sarifBases names the work trees the findings are in: %SRCROOT% for the one the working directory is
// in (else the first), %SRCROOT2%, %SRCROOT3%... for the others.
func sarifBases(items []scanItem) map[string]string {
	var roots []string
	for _, it := range items {
		if it.f.RepoRoot != "" && !slices.Contains(roots, it.f.RepoRoot) {
			roots = append(roots, it.f.RepoRoot)
		}
	}
	sort.Strings(roots)
	if wd, err := os.Getwd(); err == nil {
		if real, err := filepath.EvalSymlinks(wd); err == nil {
			wd = real
		}
		best := -1
		for i, root := range roots {
			if rel, err := filepath.Rel(root, wd); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
				if best < 0 || len(root) > len(roots[best]) {
					best = i
				}
			}
		}
		if best > 0 {
			roots[0], roots[best] = roots[best], roots[0]
		}
	}
	bases := map[string]string{}
	for i, root := range roots {
		id := "%SRCROOT%"
		if i > 0 {
			id = fmt.Sprintf("%%SRCROOT%d%%", i+1)
		}
		bases[root] = id
	}
	return bases
}

// sarifDirURI is directory dir (absolute) as a file URI ending in "/".
func sarifDirURI(dir string) string {
	u := "file://" + scanEscapePath(filepath.ToSlash(dir))
	if !strings.HasSuffix(u, "/") {
		u += "/"
	}
	if !strings.HasPrefix(u, "file:///") { // a Windows drive: file:///C:/...
		u = "file:///" + strings.TrimPrefix(u, "file://")
	}
	return u
}

func (r *scanReport) sarif() sarifLog {
	notes := []sarifNotification{}
	for _, w := range r.res.Warnings {
		notes = append(notes, sarifNotification{Level: "warning", Message: sarifText{Text: w}})
	}
	for _, p := range r.res.Problems {
		notes = append(notes, sarifNotification{Level: "error", Message: sarifText{Text: "not scanned: " + p.Error()}})
	}
	if r.res.Truncated > 0 {
		notes = append(notes, sarifNotification{Level: "warning", Message: sarifText{Text: r.truncatedNote()}})
	}
	run := sarifRun{
		Tool: sarifTool{Driver: sarifDriver{Name: "keysmith", FullName: "kubectl apikey scan (keysmith)",
			InformationURI: "https://github.com/keysmith-dev/keysmith", Rules: scanRules}},
		ColumnKind:  "utf16CodeUnits",
		Results:     []sarifResult{},
		Invocations: []sarifInvocation{{ExecutionSuccessful: len(r.res.Problems) == 0, ToolExecutionNotifications: notes}},
		Properties:  map[string]any{"truncated": r.res.Truncated},
	}
	if r.res.TruncatedKeys > 0 {
		run.Properties["truncatedKeys"] = r.res.TruncatedKeys
	}
	bases := sarifBases(r.items)
	for root, id := range bases {
		if run.OriginalURIBaseIDs == nil {
			run.OriginalURIBaseIDs = map[string]sarifArtifactLocation{}
		}
		run.OriginalURIBaseIDs[id] = sarifArtifactLocation{URI: sarifDirURI(root)}
	}
	for _, it := range r.items {
		f := it.f
		i := scanRuleIndex(it.state)
		if i < 0 {
			continue
		}
		rule := scanRules[i]
		var msg string
		switch {
		case !f.Valid:
			msg = fmt.Sprintf("%s is shaped like a keysmith key but its checksum does not hold: not a key.", f.Redacted)
		case it.revoked:
			msg = fmt.Sprintf("keysmith key %s (id %s) of ApiKey %s was %s when found, and this scan revoked it: every verifier refuses it. It is still in the file.",
				f.Redacted, f.ID(), it.apiKey, it.state)
		case it.apiKey != nil:
			msg = fmt.Sprintf("keysmith key %s (id %s) of ApiKey %s is %s", f.Redacted, f.ID(), it.apiKey, it.state)
			if it.detail != "" {
				msg += " (" + it.detail + ")"
			}
			msg += "."
		case it.state == scanStateUnchecked:
			msg = fmt.Sprintf("keysmith key %s (id %s), not looked up (offline scan): it may be live.", f.Redacted, f.ID())
		default:
			msg = fmt.Sprintf("keysmith key %s (id %s) belongs to no ApiKey this scan could list.", f.Redacted, f.ID())
		}
		if f.Commit != "" {
			msg += " Found in git history, added by commit " + f.Commit + "."
		}
		props := map[string]any{"state": it.state, "prefix": f.Prefix, "environment": f.Environment}
		if id := f.ID(); id != "" {
			props["keyId"] = id
		}
		if it.apiKey != nil {
			props["apiKey"] = it.apiKey.String()
		}
		if f.Commit != "" {
			props["commit"] = f.Commit
		}
		if it.revoked {
			props["revokedByThisScan"] = true
		}
		loc := sarifArtifactLocation{URI: sarifURI(f.Path)}
		if id, ok := bases[f.RepoRoot]; ok && f.RepoRoot != "" && f.RepoPath != "" {
			loc = sarifArtifactLocation{URI: scanEscapePath(f.RepoPath), URIBaseID: id}
		}
		fp := f.ID()
		if fp == "" {
			fp = f.Redacted
		}
		col := f.ColumnUTF16
		if col < 1 {
			col = f.Column
		}
		run.Results = append(run.Results, sarifResult{
			RuleID: rule.ID, RuleIndex: i, Level: rule.DefaultConfiguration.Level, Message: sarifText{Text: msg},
			Locations: []sarifLocation{{PhysicalLocation: sarifPhysicalLocation{
				ArtifactLocation: loc,
				Region:           sarifRegion{StartLine: f.Line, StartColumn: col, EndColumn: col + len(f.Prefix) + 6 + keys.BodyLength},
			}}},
			PartialFingerprints: map[string]string{"keysmithFinding/v1": fp + ":" + loc.URI},
			Properties:          props,
		})
	}
	return sarifLog{Schema: sarifSchema, Version: sarifVersion, Runs: []sarifRun{run}}
}
