package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/actions"
	"github.com/keysmith-dev/keysmith/internal/keys"
)

// fakeApiKey is payments/billing-api with an Active key issued an hour ago, Ready, and no keysmith
// running (nothing ever updates its status).
func fakeApiKey(mut ...func(*v1alpha1.ApiKey)) client.WithWatch {
	now := time.Now().Truncate(time.Second)
	ak := &v1alpha1.ApiKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: "payments", Name: "billing-api", Generation: 1},
		Spec:       v1alpha1.ApiKeySpec{Scopes: []string{"users:read"}, SecretName: "billing-api-key"},
		Status: v1alpha1.ApiKeyStatus{
			CurrentKeyID: "aaaaaaaaaaaa", ObservedGeneration: 1,
			Keys: []v1alpha1.IssuedKey{{ID: "aaaaaaaaaaaa", State: v1alpha1.KeyActive, IssuedAt: metav1.NewTime(now.Add(-time.Hour)), NotAfter: metav1.NewTime(now.Add(90 * 24 * time.Hour))}},
			Conditions: []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonKeyActive,
				Message: "Key aaaaaaaaaaaa is active", ObservedGeneration: 1, LastTransitionTime: metav1.NewTime(now)}},
		},
	}
	for _, m := range mut {
		m(ak)
	}
	return fake.NewClientBuilder().WithScheme(scheme()).WithObjects(ak).WithStatusSubresource(ak).Build()
}

// runWith runs the plugin with args against c; stdin is what it reads.
func runWith(t *testing.T, c client.WithWatch, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	old := testClient
	testClient = c
	defer func() { testClient = old }()
	oldPoll := actions.PollInterval
	actions.PollInterval = 10 * time.Millisecond
	defer func() { actions.PollInterval = oldPoll }()
	var out, errOut bytes.Buffer
	root := newRoot(genericiooptions.IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut})
	root.SetArgs(args)
	err = root.Execute()
	return out.String(), errOut.String(), err
}

// With no operator running, revoke and disable are in force once the API server holds them: the plugin
// says so from the read-back, warns that keysmith has not recorded it, and exits 0.
func TestRevokeAndDisableWithoutOperator(t *testing.T) {
	out, errOut, err := runWith(t, fakeApiKey(), "", "revoke", "billing-api", "-n", "payments", "--key", "aaaaaaaaaaaa", "--timeout", "300ms")
	if err != nil {
		t.Fatalf("revoke: %v\n%s%s", err, out, errOut)
	}
	want := "apikey.keysmith.dev/billing-api revocation of key aaaaaaaaaaaa requested (keysmith.dev/revoke=aaaaaaaaaaaa)\n" +
		"apikey.keysmith.dev/billing-api every verifier refuses key aaaaaaaaaaaa from its next request on (the API server holds keysmith.dev/revoke naming it) (read back from the API server "
	if !strings.HasPrefix(out, want) || strings.Count(out, "\n") != 2 {
		t.Errorf("stdout:\n%s\nwant a prefix of:\n%s", out, want)
	}
	if !strings.HasPrefix(errOut, "Warning: keysmith has not recorded it yet: is the operator running? (status does not list key aaaaaaaaaaaa as revoked within 300ms; Ready=True (KeyActive)") {
		t.Errorf("stderr: %q", errOut)
	}

	out, errOut, err = runWith(t, fakeApiKey(), "", "disable", "billing-api", "-n", "payments", "--timeout", "300ms")
	if err != nil {
		t.Fatalf("disable: %v\n%s%s", err, out, errOut)
	}
	if !strings.Contains(out, "apikey.keysmith.dev/billing-api spec.disabled set to true\napikey.keysmith.dev/billing-api every verifier refuses every key of this ApiKey from its next request on (the API server holds spec.disabled: true) (read back") ||
		!strings.HasPrefix(errOut, "Warning: "+actions.NotRecordedWarning) {
		t.Errorf("disable:\n%s%s", out, errOut)
	}
}

// enable on an ApiKey that is enabled but not Ready returns at once with why, instead of waiting for the
// whole timeout and failing.
func TestEnableEnabledNotReadyReturnsAtOnce(t *testing.T) {
	c := fakeApiKey(func(a *v1alpha1.ApiKey) {
		a.Status.CurrentKeyID, a.Status.Keys = "", nil
		a.Status.Conditions = []metav1.Condition{
			{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonSecretConflict, Message: "conflict", LastTransitionTime: metav1.Now()},
			{Type: v1alpha1.ConditionStalled, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonSecretConflict, Message: `Secret "billing-api-key" exists and was not created by keysmith`, LastTransitionTime: metav1.Now()},
		}
	})
	start := time.Now()
	out, errOut, err := runWith(t, c, "", "enable", "billing-api", "-n", "payments", "--timeout", "5s")
	if err != nil || time.Since(start) > 2*time.Second {
		t.Fatalf("enable: %v after %s\n%s%s", err, time.Since(start), out, errOut)
	}
	if out != "apikey.keysmith.dev/billing-api unchanged: ApiKey payments/billing-api is already enabled (spec.disabled is false); it is not Ready: Stalled (SecretConflict): Secret \"billing-api-key\" exists and was not created by keysmith\n" {
		t.Errorf("stdout %q", out)
	}
}

// --key - reads ids or keys from standard input, one per line: a leaked key is never on the command line
// (nor in /proc/PID/cmdline for the whole wait), never sent, never printed.
func TestRevokeKeysFromStdin(t *testing.T) {
	k, err := keys.Generate("ks", "live")
	if err != nil {
		t.Fatal(err)
	}
	id := keys.ID(k.Plaintext())
	c := fakeApiKey(func(a *v1alpha1.ApiKey) {
		a.Status.Keys = append(a.Status.Keys, v1alpha1.IssuedKey{ID: id, State: v1alpha1.KeyRetiring,
			IssuedAt: a.Status.Keys[0].IssuedAt, NotAfter: metav1.NewTime(time.Now().Add(time.Hour))})
	})
	stdin := "# leaked, from the incident report\n\n  " + k.Plaintext() + "  \naaaaaaaaaaaa\n" + k.Plaintext() + "\n"
	out, errOut, err := runWith(t, c, stdin, "revoke", "billing-api", "-n", "payments", "--key", "-", "--timeout", "100ms")
	if err != nil {
		t.Fatalf("%v\n%s%s", err, out, errOut)
	}
	if keys.HasKeyShape(out + errOut) {
		t.Fatal("the output holds the key")
	}
	if !strings.HasPrefix(out, "apikey.keysmith.dev/billing-api revocation of key "+id+", aaaaaaaaaaaa requested (keysmith.dev/revoke="+id+",aaaaaaaaaaaa)\n") {
		t.Errorf("stdout %q", out)
	}
	if strings.Contains(errOut, "shell history") {
		t.Errorf("a key read from standard input is not in the shell history: %q", errOut)
	}
	ak := &v1alpha1.ApiKey{}
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: "payments", Name: "billing-api"}, ak); err != nil || ak.Annotations[v1alpha1.AnnotationRevoke] != id+",aaaaaaaaaaaa" {
		t.Fatalf("annotation %q (%v)", ak.Annotations[v1alpha1.AnnotationRevoke], err)
	}

	// Ids on the command line still work, and mixed with -.
	out, _, err = runWith(t, fakeApiKey(), "", "revoke", "billing-api", "-n", "payments", "--key", "aaaaaaaaaaaa", "--wait=false")
	if err != nil || !strings.HasPrefix(out, "apikey.keysmith.dev/billing-api revocation of key aaaaaaaaaaaa requested") {
		t.Errorf("an id on the command line: %v %q", err, out)
	}
	// What standard input cannot give: errors name the line, never its content.
	for in, want := range map[string]string{
		"":                   "--key -: no key id or key on standard input",
		"# only a comment\n": "--key -: no key id or key on standard input",
		"aaaaaaaaaaaa\n" + k.Plaintext()[:30] + "\n": "--key -: standard input line 2: a key id is 12 lowercase hex digits (kubectl apikey describe NAME lists them)",
		strings.Repeat("x", 5000) + "\n":             "--key -: reading standard input: token too long",
	} {
		_, _, err := runWith(t, fakeApiKey(), in, "revoke", "billing-api", "-n", "payments", "--key", "-")
		if err == nil || err.Error() != want {
			t.Errorf("stdin %.20q: %v, want %q", in, err, want)
		}
	}
	if _, _, err := runWith(t, fakeApiKey(), "aaaaaaaaaaaa\n", "revoke", "billing-api", "-n", "payments", "--key", "-,-"); err == nil || err.Error() != "--key - is given twice" {
		t.Errorf("--key -,-: %v", err)
	}
}
