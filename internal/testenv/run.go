package testenv

import (
	"context"
	"sync"

	"github.com/keysmith-dev/keysmith/internal/operator"
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
