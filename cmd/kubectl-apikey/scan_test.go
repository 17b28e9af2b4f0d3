package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
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
