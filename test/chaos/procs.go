package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one keysmith process (manager or verifier) run from bin/keysmith, restarted by its supervisor
// whenever it exits, like a kubelet restarting a container. kill -9 is the only way it is stopped
// during a scenario.
type proc struct {
	name       string
	args       []string
	env        []string
	log        string // stdout and stderr, appended across restarts (scanned for key material at the end)
	verifyAddr string // host:port of its verification HTTP API
	healthAddr string
	metricsAdr string

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{}
	upSince  time.Time // zero while not running
	starts   int
	exits    int // exits the harness did not cause
	stopping bool
	done     chan struct{}
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func newProc(dir, name, kubeconfig string, sub string, extra ...string) *proc {
	p := &proc{name: name, log: filepath.Join(dir, name+".log"), verifyAddr: freePort(), healthAddr: freePort(), metricsAdr: freePort()}
	p.args = append([]string{sub,
		// samples reads /metrics over plain HTTP without a token: the local setting.
		"--metrics-bind-address=" + p.metricsAdr, "--metrics-secure=false", "--health-probe-bind-address=" + p.healthAddr,
		"--verify-http-address=" + p.verifyAddr, "--verify-grpc-address=0",
		"--verify-audit-sink=" + filepath.Join(dir, name+"-audit.log"),
	}, extra...)
	p.env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	return p
}

// run starts the process and keeps it running (restarting it 200 ms after an exit) until stop.
func (p *proc) run() error {
	if err := p.start(); err != nil {
		return err
	}
	p.done = make(chan struct{})
	go func() {
		defer close(p.done)
		for {
			p.mu.Lock()
			exited := p.exited
			p.mu.Unlock()
			<-exited
			p.mu.Lock()
			stopping := p.stopping
			p.mu.Unlock()
			if stopping {
				return
			}
			time.Sleep(200 * time.Millisecond)
			if err := p.start(); err != nil {
				fmt.Fprintf(os.Stderr, "chaos: restarting %s: %v\n", p.name, err)
				return
			}
		}
	}()
	return nil
}

func (p *proc) start() error {
	bin, err := filepath.Abs("bin/keysmith")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, p.args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("starting %s (make build first): %w", bin, err)
	}
	exited := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.exited, p.upSince = cmd, exited, time.Now()
	p.starts++
	p.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		f.Close()
		p.mu.Lock()
		p.upSince = time.Time{}
		if !p.stopping && cmd.ProcessState != nil && !killedBySignal(cmd.ProcessState) {
			p.exits++
		}
		p.mu.Unlock()
		close(exited)
	}()
	return nil
}

func killedBySignal(ps *os.ProcessState) bool {
	ws, ok := ps.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// kill sends SIGKILL and waits for the exit (the supervisor then restarts the process).
func (p *proc) kill() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = cmd.Process.Kill()
		<-exited
	}
}

// stop kills the process for good.
func (p *proc) stop() {
	p.mu.Lock()
	p.stopping = true
	p.mu.Unlock()
	p.kill()
	if p.done != nil {
		<-p.done
	}
}

// up reports how long the current process instance has been running (0 when it is not).
func (p *proc) up() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.upSince.IsZero() {
		return 0
	}
	return time.Since(p.upSince)
}

// waitReady polls /readyz until it answers 200.
func (p *proc) waitReady(ctx context.Context, timeout time.Duration) error {
	ready := func() bool {
		resp, err := http.Get("http://" + p.healthAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	if !poll(ctx, timeout, ready) {
		return fmt.Errorf("%s not ready after %s (log: %s)", p.name, timeout, p.log)
	}
	return ctx.Err()
}

// waitIdle waits until the manager's controllers have no work queued or in progress (every
// workqueue_depth and controller_runtime_active_workers sample 0 on two reads in a row), as after the
// reconciles that follow a restart.
func (p *proc) waitIdle(ctx context.Context, timeout time.Duration) error {
	zeros := 0
	idle := func() bool {
		busy := p.samples("workqueue_depth{", "controller_runtime_active_workers{")
		if len(busy) == 0 || slices.ContainsFunc(busy, func(v float64) bool { return v != 0 }) {
			zeros = 0
			return false
		}
		zeros++
		return zeros == 2
	}
	if !poll(ctx, timeout, idle) {
		return fmt.Errorf("%s still reconciling after %s (log: %s)", p.name, timeout, p.log)
	}
	return ctx.Err()
}

// poll calls done every 100 ms until it returns true (poll returns true), the timeout passes or ctx ends.
func poll(ctx context.Context, timeout time.Duration, done func() bool) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if done() {
			return true
		}
		select {
		case <-ctx.Done():
			return true
		case <-time.After(100 * time.Millisecond):
		}
	}
	return false
}

// samples returns the values of the gauge and counter samples on /metrics whose lines start with one of
// prefixes, in order.
func (p *proc) samples(prefixes ...string) []float64 {
	resp, err := http.Get("http://" + p.metricsAdr + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var out []float64
	for sc.Scan() {
		line := sc.Text()
		for _, prefix := range prefixes {
			if strings.HasPrefix(line, prefix) {
				var v float64
				if _, err := fmt.Sscanf(line[strings.LastIndexByte(line, ' ')+1:], "%g", &v); err == nil {
					out = append(out, v)
				}
				break
			}
		}
	}
	return out
}

// leader reports whether this manager holds the leader Lease (controller-runtime's leader election gauge).
func (p *proc) leader() bool {
	v := p.samples("leader_election_master_status{")
	return len(v) > 0 && v[0] == 1
}
