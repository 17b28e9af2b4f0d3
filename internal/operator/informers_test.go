package operator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
)

// failingLW fails its first len(errs) calls with those errors, then succeeds.
type failingLW struct {
	errs  []error
	calls int
}

func (f *failingLW) next() error {
	f.calls++
	if f.calls <= len(f.errs) {
		return f.errs[f.calls-1]
	}
	return nil
}

func (f *failingLW) ListWithContext(context.Context, metav1.ListOptions) (runtime.Object, error) {
	if err := f.next(); err != nil {
		return nil, err
	}
	return &v1alpha1.ApiKeyList{}, nil
}

func (f *failingLW) WatchWithContext(context.Context, metav1.ListOptions) (watch.Interface, error) {
	if err := f.next(); err != nil {
		return nil, err
	}
	return watch.NewFake(), nil
}

func refused() error {
	return &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
}

func TestPatientListerWatcher(t *testing.T) {
	gr := schema.GroupResource{Group: "keysmith.dev", Resource: "apikeys"}
	for _, tc := range []struct {
		name      string
		errs      []error
		wantCalls int
		wantErr   bool
	}{
		{"answers at once", nil, 1, false},
		{"waits out refused connections", []error{refused(), refused(), refused()}, 4, false},
		{"waits out a shutting-down API server", []error{apierrors.NewServiceUnavailable("shutting down"), apierrors.NewTooManyRequests("busy", 1)}, 3, false},
		{"waits out a reset connection", []error{&net.OpError{Op: "read", Net: "tcp", Err: &os.SyscallError{Syscall: "read", Err: syscall.ECONNRESET}}}, 2, false},
		{"passes a refusal of the request on", []error{apierrors.NewForbidden(gr, "", errors.New("RBAC"))}, 1, true},
		{"passes an expired resourceVersion on, for the reflector to relist", []error{apierrors.NewResourceExpired("too old")}, 1, true},
		{"passes other errors on", []error{fmt.Errorf("decoding: %w", errors.New("bad"))}, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, call := range []string{"list", "watch"} {
				f := &failingLW{errs: tc.errs}
				p := &patientListerWatcher{lw: f, retry: time.Millisecond}
				var err error
				if call == "list" {
					_, err = p.ListWithContext(context.Background(), metav1.ListOptions{})
				} else {
					_, err = p.WatchWithContext(context.Background(), metav1.ListOptions{})
				}
				if (err != nil) != tc.wantErr {
					t.Errorf("%s: error %v, want an error: %v", call, err, tc.wantErr)
				}
				if f.calls != tc.wantCalls {
					t.Errorf("%s: %d calls, want %d", call, f.calls, tc.wantCalls)
				}
			}
		})
	}
}

func TestPatientListerWatcherStops(t *testing.T) {
	f := &failingLW{errs: make([]error, 1000)}
	for i := range f.errs {
		f.errs[i] = refused()
	}
	p := &patientListerWatcher{lw: f, retry: 5 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := p.WatchWithContext(ctx, metav1.ListOptions{}); err == nil {
		t.Fatal("a watch still waiting when its informer stops returned no error")
	}
	if f.calls < 2 || f.calls > 20 {
		t.Errorf("%d attempts in 30 ms at one per 5 ms", f.calls)
	}
}
