// Package testenv starts keysmith's test control plane (the local cluster of internal/localcluster: the
// kube-apiserver, etcd and kube-controller-manager that `make controlplane` builds) and provides the instruments the suites share: a counter of API writes
// and a capture of everything logged, so that tests can check write budgets and scan for key material.
package testenv

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/keysmith-dev/keysmith/internal/keys"
	"github.com/keysmith-dev/keysmith/internal/localcluster"
	"github.com/keysmith-dev/keysmith/internal/operator"
)

// Start starts etcd, kube-apiserver with keysmith's CRDs installed, and kube-controller-manager with the
// garbage collector and the namespace controller (internal/localcluster).
func Start() (*localcluster.Cluster, *rest.Config, error) { return StartWith(nil) }

// StartWith is Start with a hook that adjusts the environment first (API server flags, a fixed
// certificate directory so that the API server can be restarted with the same serving certificate).
func StartWith(configure func(*envtest.Environment)) (*localcluster.Cluster, *rest.Config, error) {
	return StartOptions(localcluster.Options{Configure: configure})
}

// StartOptions is Start with every option of the local cluster; Assets and CRDs are filled in.
func StartOptions(o localcluster.Options) (*localcluster.Cluster, *rest.Config, error) {
	crds, err := operator.CRDs()
	if err != nil {
		return nil, nil, err
	}
	if o.Assets, err = Assets(); err != nil {
		return nil, nil, err
	}
	o.CRDs = crds
	c, err := localcluster.Start(o)
	if err != nil {
		return nil, nil, err
	}
	return c, c.Config, nil
}

// Assets returns the directory with kube-apiserver and etcd: KUBEBUILDER_ASSETS, else bin/ at the
// module root.
func Assets() (string, error) {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "hack", "controlplane.sh")); err == nil {
				return filepath.Join(dir, "bin"), nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no KUBEBUILDER_ASSETS and no module root found; run 'make controlplane'")
		}
		dir = parent
	}
}

// Write is one mutating request seen by a WriteCounter.
type Write struct {
	Verb      string
	Namespace string
	// Resource is the resource and subresource, for example "apikeys/status".
	Resource string
	// Code is the HTTP status of the response (0 when the request failed without one).
	Code int
	// Start is when the request was sent; Latency how long until the response headers arrived.
	Start   time.Time
	Latency time.Duration
}

func (w Write) String() string {
	if w.Code >= 300 || w.Code == 0 {
		return fmt.Sprintf("%s %s (%d)", w.Verb, w.Resource, w.Code)
	}
	return w.Verb + " " + w.Resource
}

// WriteCounter records the mutating requests a client sends. Install it with Wrap.
type WriteCounter struct {
	mu     sync.Mutex
	writes []Write
}

// Wrap installs the counter on cfg's transport.
func (c *WriteCounter) Wrap(cfg *rest.Config) {
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(req *http.Request) (*http.Response, error) {
			start := time.Now()
			resp, err := rt.RoundTrip(req)
			if req.Method != http.MethodGet && req.Method != http.MethodHead && req.Method != http.MethodOptions {
				code := 0
				if resp != nil {
					code = resp.StatusCode
				}
				c.record(req, code, start)
			}
			return resp, err
		})
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (c *WriteCounter) record(req *http.Request, code int, start time.Time) {
	w := Write{Verb: req.Method, Code: code, Start: start, Latency: time.Since(start)}
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	for i := 0; i < len(parts); i++ {
		if parts[i] == "namespaces" && i+2 < len(parts) {
			w.Namespace = parts[i+1]
			rest := parts[i+2:]
			// resource[/name[/subresource]]
			w.Resource = rest[0]
			if len(rest) > 2 {
				w.Resource += "/" + rest[2]
			}
			break
		}
	}
	if w.Resource == "" && len(parts) > 0 {
		w.Resource = parts[len(parts)-1]
	}
	c.mu.Lock()
	c.writes = append(c.writes, w)
	c.mu.Unlock()
}

// In returns the writes to namespace ns that the API server carried out (2xx), other than events, in order.
// Requests it refused, such as a patch that lost an optimistic-lock race (409), changed nothing and are
// listed by Attempts.
func (c *WriteCounter) In(ns string) []Write {
	return c.filter(ns, true, false)
}

// All returns every mutating request to namespace ns, events and refused ones included, in order.
func (c *WriteCounter) All(ns string) []Write {
	return c.filter(ns, false, true)
}

// Attempts returns every mutating request to namespace ns other than events, refused ones included.
func (c *WriteCounter) Attempts(ns string) []Write {
	return c.filter(ns, false, false)
}

func (c *WriteCounter) filter(ns string, succeededOnly, events bool) []Write {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Write
	for _, w := range c.writes {
		if w.Namespace == ns && (events || w.Resource != "events") && (!succeededOnly || (w.Code >= 200 && w.Code < 300)) {
			out = append(out, w)
		}
	}
	return out
}

// Buffer is a goroutine-safe log sink that keeps everything written to it.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// FindKeys counts the substrings of text that are well-formed keys with a valid checksum. It never
// returns them, so that a failing assertion cannot print a key.
func FindKeys(text string) int { return keys.CountKeys(text) }

// Events returns how many event writes went to namespace ns.
func (c *WriteCounter) Events(ns string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, w := range c.writes {
		if w.Namespace == ns && w.Resource == "events" {
			n++
		}
	}
	return n
}
