package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/actions"
	"github.com/keysmith-dev/keysmith/internal/keys"
	"github.com/keysmith-dev/keysmith/internal/rotation"
	"github.com/keysmith-dev/keysmith/internal/scan"
	"github.com/keysmith-dev/keysmith/internal/scan/sariftest"
)

var scanKeyShape = regexp.MustCompile(`[a-z0-9]{2,8}_(live|test)_[0-9A-Za-z]{36}`)

// scanTestNoKey fails when text holds a valid key (without printing it).
func scanTestNoKey(t *testing.T, text string) {
	t.Helper()
	for _, m := range scanKeyShape.FindAllString(text, -1) {
		if keys.Valid(m) {
			t.Fatal("the output holds a key")
		}
	}
}

func scanTestKey(t *testing.T, env string) string {
	t.Helper()
	k, err := keys.Generate("ks", env)
	if err != nil {
		t.Fatal(err)
	}
	return k.Plaintext()
}

func scanTestBroken(t *testing.T, key string) string {
	b := []byte(key)
	if b[len(b)-1] == 'x' {
		b[len(b)-1] = 'y'
	} else {
		b[len(b)-1] = 'x'
	}
	if keys.Valid(string(b)) {
		t.Fatal("still valid")
	}
	return string(b)
}

// scanTestRun runs the plugin in process and returns its exit code and output.
func scanTestRun(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRoot(genericiooptions.IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut})
	root.SetArgs(args)
	err := root.Execute()
	code = 0
	if err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
			if ee.msg != "" {
				errOut.WriteString("error: " + ee.msg + "\n")
			}
		} else {
			code = 2
			errOut.WriteString("error: " + err.Error() + "\n")
		}
	}
	scanTestNoKey(t, out.String()+errOut.String())
	return code, out.String(), errOut.String()
}

func TestScanOfflineExitCodes(t *testing.T) {
	dir := t.TempDir()
	k := scanTestKey(t, keys.Live)
	clean := filepath.Join(dir, "clean.txt")
	leaked := filepath.Join(dir, "leaked.env")
	fake := filepath.Join(dir, "fixture.txt")
	for p, c := range map[string]string{clean: "nothing\n", leaked: "API_KEY=" + k + "\n", fake: scanTestBroken(t, k) + "\n"} {
		if err := os.WriteFile(p, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		code  int
	}{
		{"clean file", "", []string{"scan", "--offline", clean}, 0},
		{"bad checksum only", "", []string{"scan", "--offline", fake}, 0},
		{"a key: possibly live", "", []string{"scan", "--offline", clean, leaked}, 1},
		{"stdin", "log line " + k + "\n", []string{"scan", "--offline", "-"}, 1},
		{"missing path", "", []string{"scan", "--offline", filepath.Join(dir, "nope")}, 2},
		{"bad format", "", []string{"scan", "--offline", "--format", "xml", clean}, 2},
		{"revoke needs the cluster", "", []string{"scan", "--offline", "--revoke", clean}, 2},
		{"no path", "", []string{"scan", "--offline"}, 2},
		{"no cluster", "", []string{"scan", "--kubeconfig", filepath.Join(dir, "nope"), leaked}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := scanTestRun(t, tc.stdin, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %s", code, tc.code, stderr)
			}
		})
	}
}

func TestScanClassify(t *testing.T) {
	now := time.Now()
	active, retiring, revoked, expired := scanTestKey(t, keys.Live), scanTestKey(t, keys.Live), scanTestKey(t, keys.Live), scanTestKey(t, keys.Test)
	lapsed, pending, disabled, unknown := scanTestKey(t, keys.Live), scanTestKey(t, keys.Live), scanTestKey(t, keys.Live), scanTestKey(t, keys.Live)
	issued := func(k string, st v1alpha1.KeyState, notAfter time.Time) v1alpha1.IssuedKey {
		return v1alpha1.IssuedKey{ID: keys.ID(k), Hash: keys.Hash(k), State: st, NotAfter: metav1.NewTime(notAfter)}
	}
	later := now.Add(time.Hour)
	billing := v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: "payments", Name: "billing",
		Annotations: map[string]string{v1alpha1.AnnotationRevoke: keys.ID(revoked) + "," + keys.ID(pending)}}}
	billing.Status.HandledRevokeRequest = rotation.RequestDigest(keys.ID(revoked)) // the first value was handled, the new one is pending
	billing.Status.Keys = []v1alpha1.IssuedKey{
		issued(active, v1alpha1.KeyActive, later), issued(retiring, v1alpha1.KeyRetiring, later),
		issued(revoked, v1alpha1.KeyRevoked, later), issued(expired, v1alpha1.KeyExpired, now.Add(-time.Hour)),
		issued(lapsed, v1alpha1.KeyRetiring, now.Add(-time.Second)), issued(pending, v1alpha1.KeyRetiring, later),
	}
	billing.Status.Keys[2].Reason = "Manual"
	off := v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "off"}, Spec: v1alpha1.ApiKeySpec{Disabled: true}}
	off.Status.Keys = []v1alpha1.IssuedKey{issued(disabled, v1alpha1.KeyActive, later)}

	text := strings.Join([]string{active, retiring, revoked, expired, lapsed, pending, disabled, unknown, scanTestBroken(t, active)}, "\n")
	res := &scan.Result{Findings: scan.Find([]byte(text))}
	for i := range res.Findings {
		res.Findings[i].Path = "logs/leak.log"
	}
	r := newScanReport(res)
	idx := scanIndex{}
	for _, ak := range []*v1alpha1.ApiKey{&billing, &off} {
		idx.add(ak, r.wanted())
	}
	r.classify(idx, now)
	want := []struct{ state, apiKey string }{
		{"Active", "payments/billing"}, {"Retiring", "payments/billing"}, {"Revoked", "payments/billing"},
		{"Expired", "payments/billing"}, {"Expired", "payments/billing"}, {"Revoked", "payments/billing"},
		{"Revoked", "team-a/off"}, {scanStateUnknown, ""}, {scanStateNotAKey, ""},
	}
	if len(r.items) != len(want) {
		t.Fatalf("%d items", len(r.items))
	}
	for i, w := range want {
		it := r.items[i]
		ak := ""
		if it.apiKey != nil {
			ak = it.apiKey.String()
		}
		if it.state != w.state || ak != w.apiKey {
			t.Errorf("finding %d: %s %s (%s), want %s %s", i, it.state, ak, it.detail, w.state, w.apiKey)
		}
	}
	if r.live() != 2 {
		t.Errorf("live %d, want 2", r.live())
	}
	// Only the keys found are kept from the listing.
	other := v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "y"}}
	other.Status.Keys = []v1alpha1.IssuedKey{issued(scanTestKey(t, keys.Live), v1alpha1.KeyActive, later)}
	n := len(idx)
	idx.add(&other, r.wanted())
	if len(idx) != n {
		t.Error("a key that the scan did not find was kept")
	}

	// Every format shows the redacted keys only, and the SARIF log is well-formed.
	r.lookup = scanLookup{Mode: "all-namespaces", ApiKeys: 2}
	for _, format := range []string{scanFormatText, scanFormatJSON, scanFormatSARIF} {
		var b bytes.Buffer
		if err := r.write(&b, format); err != nil {
			t.Fatal(err)
		}
		scanTestNoKey(t, b.String())
		if format == scanFormatSARIF {
			rules, err := sariftest.Validate(b.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			wantRules := []string{"keysmith/live-key", "keysmith/retiring-key", "keysmith/revoked-key", "keysmith/expired-key",
				"keysmith/expired-key", "keysmith/revoked-key", "keysmith/revoked-key", "keysmith/unknown-key", "keysmith/not-a-key"}
			if strings.Join(rules, " ") != strings.Join(wantRules, " ") {
				t.Errorf("rules %v", rules)
			}
		}
	}
}

func TestSARIFURI(t *testing.T) {
	for in, want := range map[string]string{
		"a/b.go": "a/b.go", "./a b.txt": "a%20b.txt", "/abs/x#y": "file:///abs/x%23y", "-": "stdin", "é.txt": "%C3%A9.txt",
	} {
		if got := sarifURI(in); got != want {
			t.Errorf("sarifURI(%q) = %q, want %q", in, got, want)
		}
	}
}

// scanTestApiKey is team/leaky with key as its Active key, Ready, a Stalled condition saying why keysmith
// does not get on with it, and no keysmith running (nothing ever updates its status). patch, if not nil,
// replaces the patches the API server applies.
func scanTestApiKey(key string, patch func(ctx context.Context, c client.WithWatch, obj client.Object, p client.Patch, opts ...client.PatchOption) error) client.WithWatch {
	now := time.Now().Truncate(time.Second)
	ak := &v1alpha1.ApiKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "leaky", Generation: 1},
		Spec:       v1alpha1.ApiKeySpec{Scopes: []string{"users:read"}, SecretName: "leaky"},
		Status: v1alpha1.ApiKeyStatus{
			CurrentKeyID: keys.ID(key), ObservedGeneration: 1,
			Keys: []v1alpha1.IssuedKey{{ID: keys.ID(key), Hash: keys.Hash(key), State: v1alpha1.KeyActive,
				IssuedAt: metav1.NewTime(now.Add(-time.Hour)), NotAfter: metav1.NewTime(now.Add(90 * 24 * time.Hour))}},
			Conditions: []metav1.Condition{
				{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonKeyActive, Message: "active", ObservedGeneration: 1, LastTransitionTime: metav1.NewTime(now)},
				{Type: v1alpha1.ConditionStalled, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonSecretConflict, Message: "the Secret leaky is not keysmith's", ObservedGeneration: 1, LastTransitionTime: metav1.NewTime(now)},
			},
		},
	}
	b := fake.NewClientBuilder().WithScheme(scheme()).WithObjects(ak).WithStatusSubresource(ak)
	if patch != nil {
		b = b.WithInterceptorFuncs(interceptor.Funcs{Patch: patch})
	}
	return b.Build()
}

// scanTestWith runs scan in dir against the fake cluster c.
func scanTestWith(t *testing.T, c client.WithWatch, dir string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	old, oldPoll := testClient, actions.PollInterval
	testClient, actions.PollInterval = c, 10*time.Millisecond
	defer func() { testClient, actions.PollInterval = old, oldPoll }()
	t.Chdir(dir)
	return scanTestRun(t, "", args...)
}

// With no operator running, --revoke succeeds once the API server holds the annotation naming the key
// (every verifier refuses it from then on), and keysmith's missing record is a warning, not an error.
func TestScanRevokeWithoutOperator(t *testing.T) {
	k := scanTestKey(t, keys.Live)
	id := keys.ID(k)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "chat.log"), []byte("try "+k+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := scanTestApiKey(k, nil)
	code, out, errOut := scanTestWith(t, c, dir, "scan", "--revoke", "--timeout", "300ms", "chat.log")
	if code != 1 {
		t.Fatalf("exit %d, want 1 (a live key was found)\n%s%s", code, out, errOut)
	}
	if !regexp.MustCompile(`chat.log:1:5 +\S+ +` + id + ` +Active +team/leaky +revoked by this scan\n`).MatchString(out) {
		t.Errorf("the finding does not say it was revoked:\n%s", out)
	}
	refused := "ApiKey team/leaky: every verifier refuses key " + id + " from its next request on (the API server holds keysmith.dev/revoke naming it)"
	if !strings.Contains(out, refused+" (read back from the API server after ") ||
		!strings.Contains(out, "ApiKey team/leaky: warning: "+actions.NotRecordedWarning) {
		t.Errorf("stdout:\n%s", out)
	}
	if !strings.Contains(errOut, "revoking key "+id+" of ApiKey team/leaky: revocation of key "+id+" requested (keysmith.dev/revoke="+id+")\n") ||
		!strings.Contains(errOut, refused) ||
		!strings.Contains(errOut, "warning: ApiKey team/leaky: "+actions.NotRecordedWarning+" (status does not list key "+id+" as revoked within 300ms; Stalled (SecretConflict): the Secret leaky is not keysmith's)") {
		t.Errorf("stderr:\n%s", errOut)
	}
	ak := &v1alpha1.ApiKey{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "team", Name: "leaky"}, ak); err != nil || ak.Annotations[v1alpha1.AnnotationRevoke] != id {
		t.Fatalf("the API server holds %v (%v)", ak.Annotations, err)
	}

	// JSON and SARIF say the same.
	code, out, _ = scanTestWith(t, scanTestApiKey(k, nil), dir, "scan", "--revoke", "--timeout", "200ms", "--format", "json", "chat.log")
	var rep scanJSON
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 1 || len(rep.Revoked) != 1 {
		t.Fatalf("exit %d, %v:\n%s", code, err, out)
	}
	if rev := rep.Revoked[0]; !rev.Refused || rev.Recorded || rev.Error != "" || !strings.HasPrefix(rev.Warning, actions.NotRecordedWarning) ||
		!strings.HasPrefix(rev.RefusedMessage, "every verifier refuses key "+id) || !rep.Findings[0].Revoked {
		t.Errorf("revocation %+v, finding %+v", rev, rep.Findings[0])
	}
	code, out, _ = scanTestWith(t, scanTestApiKey(k, nil), dir, "scan", "--revoke", "--timeout", "200ms", "--format", "sarif", "chat.log")
	var log struct {
		Runs []struct {
			Results []struct {
				RuleID  string         `json:"ruleId"`
				Message sarifText      `json:"message"`
				Props   map[string]any `json:"properties"`
			} `json:"results"`
		} `json:"runs"`
	}
	if _, err := sariftest.Validate([]byte(out)); err != nil || code != 1 {
		t.Fatalf("exit %d, %v", code, err)
	}
	if err := json.Unmarshal([]byte(out), &log); err != nil {
		t.Fatal(err)
	}
	res := log.Runs[0].Results[0]
	if res.RuleID != "keysmith/live-key" || res.Props["revokedByThisScan"] != true || !strings.Contains(res.Message.Text, "this scan revoked it: every verifier refuses it") {
		t.Errorf("SARIF result %+v", res)
	}
}

// A revocation that the API server does not hold within --timeout (here the patch is accepted but
// dropped, as by a mutating webhook) fails with keysmith's TimeoutError and the ApiKey's state, not with
// the lookup's "context deadline exceeded".
func TestScanRevokeTimeoutSaysWhy(t *testing.T) {
	k := scanTestKey(t, keys.Live)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "chat.log"), []byte("try "+k+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dropped := func(context.Context, client.WithWatch, client.Object, client.Patch, ...client.PatchOption) error {
		return nil
	}
	code, out, errOut := scanTestWith(t, scanTestApiKey(k, dropped), dir, "scan", "--revoke", "--timeout", "300ms", "chat.log")
	if code != 2 {
		t.Fatalf("exit %d, want 2\n%s%s", code, out, errOut)
	}
	if strings.Contains(errOut, "deadline exceeded") ||
		!strings.Contains(errOut, "error: --revoke: team/leaky: keysmith has not confirmed the revoke of ApiKey team/leaky within 300ms") ||
		!strings.Contains(errOut, "Stalled (SecretConflict): the Secret leaky is not keysmith's") {
		t.Errorf("stderr:\n%s", errOut)
	}
	if !strings.Contains(out, "NOT REVOKED: ApiKey team/leaky, key "+keys.ID(k)+": keysmith has not confirmed") || strings.Contains(out, "revoked by this scan") {
		t.Errorf("stdout:\n%s", out)
	}
}

// After "--" every argument is a path: "-" is a file named "-", not standard input, and "--x" a file.
func TestScanDoubleDash(t *testing.T) {
	dir := t.TempDir()
	k1, k2, k3 := scanTestKey(t, keys.Live), scanTestKey(t, keys.Live), scanTestKey(t, keys.Live)
	for name, key := range map[string]string{"-": k1, "--x": k2} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("KEY="+key+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(dir)
	code, out, errOut := scanTestRun(t, "stdin "+k3+"\n", "scan", "--offline", "--format", "json", "--", "-", "--x")
	var rep scanJSON
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 1 {
		t.Fatalf("exit %d, %v\n%s%s", code, err, out, errOut)
	}
	var got []string
	for _, f := range rep.Findings {
		got = append(got, f.Path+" "+f.ID)
	}
	if want := []string{"--x " + keys.ID(k2), "./- " + keys.ID(k1)}; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("found %q, want %q", got, want)
	}
	// Before "--", "-" is standard input.
	code, out, _ = scanTestRun(t, "stdin "+k3+"\n", "scan", "--offline", "--format", "json", "-", "--", "-")
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 1 || len(rep.Findings) != 2 || rep.Findings[0].Path != "-" || rep.Findings[0].ID != keys.ID(k3) {
		t.Errorf("exit %d: %+v", code, rep.Findings)
	}
}

// Findings past the limits are counted in every format, and a key among them counts as possibly live.
func TestScanTruncatedInEveryFormat(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	for i := 0; i < scan.DefaultMaxFindingsPerFile+20; i++ {
		b.WriteString(scanTestKey(t, keys.Live) + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "dump.txt"), []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	k := scanTestKey(t, keys.Live)
	for i := 0; i < scan.DefaultMaxFindingsPerFile+5; i++ {
		b.WriteString(scanTestBroken(t, k) + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "fixtures.txt"), []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)

	code, out, errOut := scanTestRun(t, "", "scan", "--offline", "dump.txt")
	if code != 1 || !strings.Contains(out, "1000 keys not looked up (--offline), possibly live, 20 more not reported (truncated); 1 file") ||
		!strings.Contains(errOut, "warning: 20 more findings not reported (at most 1000 are kept per file and 100000 in all), 20 of them with a valid checksum: not looked up, possibly live") {
		t.Errorf("text: exit %d\n%s%s", code, out[strings.LastIndex(out[:len(out)-1], "\n")+1:], errOut)
	}
	code, out, _ = scanTestRun(t, "", "scan", "--offline", "--format", "json", "dump.txt")
	var rep scanJSON
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 1 || rep.Summary.Truncated != 20 || rep.Summary.TruncatedKeys != 20 || len(rep.Findings) != 1000 || len(rep.Warnings) != 1 {
		t.Errorf("json: exit %d, %v, summary %+v, warnings %q", code, err, rep.Summary, rep.Warnings)
	}
	code, out, _ = scanTestRun(t, "", "scan", "--offline", "--format", "sarif", "dump.txt")
	var log struct {
		Runs []struct {
			Properties  map[string]any `json:"properties"`
			Invocations []struct {
				Notes []sarifNotification `json:"toolExecutionNotifications"`
			} `json:"invocations"`
		} `json:"runs"`
	}
	if _, err := sariftest.Validate([]byte(out)); err != nil || code != 1 {
		t.Fatalf("sarif: exit %d, %v", code, err)
	}
	if err := json.Unmarshal([]byte(out), &log); err != nil || log.Runs[0].Properties["truncated"] != float64(20) ||
		len(log.Runs[0].Invocations[0].Notes) != 1 || !strings.Contains(log.Runs[0].Invocations[0].Notes[0].Message.Text, "20 more findings not reported") {
		t.Errorf("sarif: %v %+v", err, log.Runs)
	}
	// Strings with a bad checksum only, past the limit: nothing live.
	code, out, _ = scanTestRun(t, "", "scan", "--offline", "fixtures.txt")
	if code != 0 || !strings.Contains(out, "1000 not a key (bad checksum), 5 more not reported (truncated)") {
		t.Errorf("fixtures: exit %d\n%s", code, out[strings.LastIndex(out[:len(out)-1], "\n")+1:])
	}
}

// SARIF locates a finding from the top of its git work tree (%SRCROOT%), wherever the scan runs, and
// counts columns in UTF-16 code units, as it says.
func TestScanSARIFLocations(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	k := scanTestKey(t, keys.Live)
	repo := t.TempDir()
	if out, err := exec.Command("git", "-C", repo, "init", "-q").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	top, err := filepath.EvalSymlinks(repo)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(repo, "deploy", "prod"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, "deploy", "prod", "café.env"), []byte("# clé 😀\nclé=😀"+k+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "x.log"), []byte(k+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(filepath.Join(repo, "deploy"))
	code, out, _ := scanTestRun(t, "", "scan", "--offline", "--format", "sarif", "prod", filepath.Join(outside, "x.log"))
	if _, err := sariftest.Validate([]byte(out)); err != nil || code != 1 {
		t.Fatalf("exit %d, %v", code, err)
	}
	var log struct {
		Runs []struct {
			Bases      map[string]sarifArtifactLocation `json:"originalUriBaseIds"`
			ColumnKind string                           `json:"columnKind"`
			Results    []sarifResult                    `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal([]byte(out), &log); err != nil {
		t.Fatal(err)
	}
	run := log.Runs[0]
	if run.ColumnKind != "utf16CodeUnits" || len(run.Bases) != 1 || run.Bases["%SRCROOT%"].URI != "file://"+filepath.ToSlash(top)+"/" || len(run.Results) != 2 {
		t.Fatalf("run %+v", run)
	}
	out2, in := run.Results[0].Locations[0].PhysicalLocation, run.Results[1].Locations[0].PhysicalLocation // by path
	if in.ArtifactLocation != (sarifArtifactLocation{URI: "deploy/prod/caf%C3%A9.env", URIBaseID: "%SRCROOT%"}) ||
		in.Region != (sarifRegion{StartLine: 2, StartColumn: 7, EndColumn: 7 + len(k)}) {
		t.Errorf("in the work tree: %+v", in)
	}
	if out2.ArtifactLocation.URIBaseID != "" || !strings.HasPrefix(out2.ArtifactLocation.URI, "file:///") || out2.Region.StartColumn != 1 {
		t.Errorf("outside: %+v", out2)
	}
}
