package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/keysmith-dev/keysmith/internal/keys"
)

// apiServer is a stand-in API server that records every request (its URL lands in a real API server's
// audit log) and answers 404.
type apiServer struct {
	mu   sync.Mutex
	seen []string
	srv  *httptest.Server
}

func newAPIServer(t *testing.T) (*apiServer, string) {
	t.Helper()
	a := &apiServer{}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.seen = append(a.seen, r.Method+" "+r.URL.String())
		a.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"not found"}`))
	}))
	t.Cleanup(a.srv.Close)
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "` + a.srv.URL + `"}}]
users: [{name: u, user: {token: not-a-real-token}}]
contexts: [{name: ctx, context: {cluster: c, user: u, namespace: payments}}]
current-context: ctx
`
	if err := os.WriteFile(kc, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return a, kc
}

func (a *apiServer) requests() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.seen...)
}

func (a *apiServer) reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seen = nil
}

// A key pasted as NAME (or as the namespace, the selector, or what is being completed) is refused before
// any request: it never reaches the API server, so never its audit log, and it is never printed.
func TestAKeyAsNameNeverReachesTheAPIServer(t *testing.T) {
	api, kc := newAPIServer(t)
	k, err := keys.Generate("ks", "live")
	if err != nil {
		t.Fatal(err)
	}
	key := k.Plaintext()
	run := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		root := newRoot(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
		if args[0] == "__complete" { // the last argument is what is being completed
			args = append([]string{args[0], args[1], "--kubeconfig", kc}, args[2:]...)
		} else {
			args = append(args, "--kubeconfig", kc)
		}
		root.SetArgs(args)
		err := root.Execute()
		msg := ""
		if err != nil {
			msg = redactKeys(err.Error()) // as main prints it
		}
		return out.String() + errOut.String() + msg, err
	}
	// The stand-in answers: a valid name does reach it (so the count below means something).
	if _, err := run("describe", "billing-api"); err == nil || len(api.requests()) == 0 {
		t.Fatalf("a valid name sent nothing (%v): the test would prove nothing", err)
	}
	api.reset()
	if _, err := run("__complete", "revoke", "billing-api", "--key", ""); err != nil || len(api.requests()) == 0 {
		t.Fatalf("completing a valid name's keys sent nothing (%v): the test would prove nothing", err)
	}

	for _, args := range [][]string{
		{"describe", key},
		{"rotate", key},
		{"revoke", key, "--all"},
		{"revoke", key, "--key", "0123456789ab"},
		{"disable", key},
		{"enable", key},
		{"rotate", "billing-api", "-n", key},
		{"describe", "billing-api", "-n", key},
		{"list", "-n", key},
		{"list", "-l", "app=" + key},
		{"dashboard", "--no-browser", "-n", key},
		{"__complete", "revoke", key, "--key", ""},
		{"__complete", "describe", key},
		{"__complete", "describe", "-n", key, ""},
		{"__complete", "revoke", "billing-api", "-n", key, "--key", ""},
	} {
		api.reset()
		out, _ := run(args...)
		shown := strings.ReplaceAll(strings.Join(args, " "), key, "KEY")
		if got := api.requests(); len(got) > 0 {
			t.Errorf("%s: %d requests reached the API server (the first: %s)", shown, len(got), strings.ReplaceAll(got[0], key, "KEY"))
		}
		if keys.ContainsKey(out) || strings.Contains(out, k.Body[:16]) {
			t.Errorf("%s: the output holds the key", shown)
		}
		if args[0] != "__complete" && !strings.Contains(out, "looks like an API key") {
			t.Errorf("%s: output %q does not say why", shown, strings.ReplaceAll(out, key, "KEY"))
		}
	}
}
