package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// dashboardKubeconfig is a kubeconfig for an API server that does not answer: the dashboard must still
// start, serve its page and report the failing list on it.
func dashboardKubeconfig(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubeconfig")
	kc := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: not-a-real-token}}]
contexts: [{name: ctx, context: {cluster: c, user: u, namespace: team-a}}]
current-context: ctx
`
	if err := os.WriteFile(p, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

type dashboardSyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *dashboardSyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *dashboardSyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestDashboardRefusesNonLoopbackAddresses(t *testing.T) {
	kc := dashboardKubeconfig(t)
	for _, args := range [][]string{{"--address", "0.0.0.0"}, {"--address", "192.168.1.2"}, {"--port", "70000"}} {
		var out, errOut bytes.Buffer
		root := newRoot(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
		root.SetArgs(append([]string{"dashboard", "--kubeconfig", kc, "--no-browser"}, args...))
		err := root.Execute()
		if err == nil || (!strings.Contains(err.Error(), "loopback") && !strings.Contains(err.Error(), "port")) {
			t.Errorf("%v: %v", args, err)
		}
		if strings.Contains(out.String(), "http://") {
			t.Errorf("%v printed a URL: %s", args, out.String())
		}
	}
}

// The command prints the URL with its token, serves the page to it and stops when its context ends.
func TestDashboardCommandServesTheURLItPrints(t *testing.T) {
	out := &dashboardSyncBuffer{}
	root := newRoot(genericiooptions.IOStreams{In: strings.NewReader(""), Out: out, ErrOut: io.Discard})
	root.SetArgs([]string{"dashboard", "--kubeconfig", dashboardKubeconfig(t), "--no-browser"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	url := regexp.MustCompile(`http://127\.0\.0\.1:[0-9]+/\?token=[A-Za-z0-9_-]{43}`)
	deadline := time.Now().Add(10 * time.Second)
	for url.FindString(out.String()) == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no URL printed: %q", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "context ctx of your kubeconfig") {
		t.Errorf("output does not say whose credentials: %q", out.String())
	}
	u := url.FindString(out.String())
	res, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !bytes.Contains(body, []byte(`src="/assets/app.js"`)) {
		t.Fatalf("%d %s", res.StatusCode, body)
	}
	res, err = http.Get(strings.Split(u, "?")[0])
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without the token: %d", res.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the dashboard did not stop with its context")
	}
}
