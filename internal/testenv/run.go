package testenv

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/client-go/rest"

	"github.com/keysmith-dev/keysmith/internal/operator"
	"github.com/keysmith-dev/keysmith/internal/verify"
)

// Run starts m in the background, as the suites run the manager and the standalone verifier in their
// own process, and returns a function that stops it, waits until Start has returned and returns its
// error. The function may be called more than once (a spec that stops the manager early, and the cleanup
// after it); later calls return the first result.
func Run(m *operator.Manager) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Start(ctx) }()
	var once sync.Once
	var err error
	return func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
}

// StartManager builds keysmith's manager as the suites run it in process (no metrics or probe endpoint,
// the verifier's HTTP API on a free loopback port, no gRPC, the audit trail in auditSink), lets adjust
// change those options, starts it and waits until the verifier's index has synced. The returned function
// stops it, as Run's does.
func StartManager(cfg *rest.Config, auditSink string, adjust func(*operator.Options)) (*operator.Manager, func() error, error) {
	o := operator.Options{
		MetricsBindAddress: "0", HealthProbeBindAddress: "0",
		Verify: verify.Options{HTTPAddress: "127.0.0.1:0", GRPCAddress: "0", AuditSink: auditSink},
	}
	if adjust != nil {
		adjust(&o)
	}
	m, err := operator.NewManager(cfg, o)
	if err != nil {
		return nil, nil, err
	}
	stop := Run(m)
	deadline := time.Now().Add(30 * time.Second)
	for m.Verifier.Index.Ready() != nil {
		if time.Now().After(deadline) {
			_ = stop()
			return nil, nil, fmt.Errorf("the verifier's index did not sync within 30s: %w", m.Verifier.Index.Ready())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return m, stop, nil
}
