package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
)

// apiServerProfiler takes CPU profiles of the API server through its /debug/pprof endpoint (enabled by
// default), so that a phase's cost can be attributed to what the API server does for it.
type apiServerProfiler struct {
	cfg     *rest.Config
	dir     string
	seconds int
}

// start profiles the API server for p.seconds from now into <dir>/<name>.pprof, in the background.
// The returned function waits for the profile; without -apiserver-profile both do nothing.
func (p *apiServerProfiler) start(name string) (wait func()) {
	if p == nil || p.dir == "" {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := p.fetch(name); err != nil {
			fmt.Fprintf(os.Stderr, "bench: API server profile %s: %v\n", name, err)
		}
	}()
	return func() { <-done }
}

func (p *apiServerProfiler) fetch(name string) error {
	dc, err := discovery.NewDiscoveryClientForConfig(p.cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(p.seconds+30)*time.Second)
	defer cancel()
	data, err := dc.RESTClient().Get().AbsPath("/debug/pprof/profile").Param("seconds", strconv.Itoa(p.seconds)).DoRaw(ctx)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(p.dir, name+".pprof"), data, 0o644)
}
