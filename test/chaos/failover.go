package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
)

// currentKeys reads the key in every Secret of ns.
func (s *suite) currentKeys(ctx context.Context, ns string) map[string]string {
	ss := &corev1.SecretList{}
	if s.c.List(ctx, ss, client.InNamespace(ns), client.MatchingLabels{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue}) != nil {
		return nil
	}
	out := map[string]string{}
	for _, sec := range ss.Items {
		if k := string(sec.Data[v1alpha1.SecretKeyAPIKey]); k != "" && len(sec.Data[v1alpha1.SecretKeyKeyID]) > 0 {
			out[sec.Name] = k
		}
	}
	return out
}

// prober verifies the keys currently in the Secrets against verifiers every 50 ms and counts every answer
// that is not "valid". Keys of ApiKeys past their notAfter are left out (exp-*).
type prober struct {
	checks, failures atomic.Int64
	mu               sync.Mutex
	failed           []string
}

func (s *suite) probe(ctx context.Context, addrs func() []string) *prober {
	p := &prober{}
	go func() {
		var keys map[string]string
		refreshed := time.Time{}
		for ctx.Err() == nil {
			if time.Since(refreshed) > 500*time.Millisecond {
				if k := s.currentKeys(ctx, nsChaos); k != nil {
					keys = k
					for name := range keys {
						if name[:3] != "rot" {
							delete(keys, name)
						}
					}
				}
				refreshed = time.Now()
			}
			for _, addr := range addrs() {
				for name, k := range keys {
					p.checks.Add(1)
					if v := check(s.obs.httpClient(), addr, k); v != accepted {
						// A rotation may have replaced the key since the refresh, but the overlap keeps
						// the previous key valid for 20 s, so any refusal is a failure.
						p.failures.Add(1)
						p.mu.Lock()
						if len(p.failed) < 5 {
							p.failed = append(p.failed, fmt.Sprintf("%s at %s (verdict %d)", name, addr, v))
						}
						p.mu.Unlock()
					}
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return p
}

// requestRotation sets the keysmith.dev/rotate annotation of an ApiKey to value.
func (s *suite) requestRotation(ctx context.Context, ns, name, value string) error {
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, v1alpha1.AnnotationRotate, value)
	return s.c.Patch(ctx, &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}, client.RawPatch(types.MergePatchType, []byte(patch)))
}

// rotateAndWait asks for a manual rotation of name and returns how long until its Secret holds a new key.
func (s *suite) rotateAndWait(ctx context.Context, ns, name, value string, timeout time.Duration) (time.Duration, error) {
	key := types.NamespacedName{Namespace: ns, Name: name}
	sec := &corev1.Secret{}
	if err := s.c.Get(ctx, key, sec); err != nil {
		return 0, err
	}
	old := string(sec.Data[v1alpha1.SecretKeyKeyID])
	start := time.Now()
	for s.requestRotation(ctx, ns, name, value) != nil {
		if time.Since(start) > timeout {
			return 0, fmt.Errorf("could not annotate %s", name)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for time.Since(start) < timeout {
		if s.c.Get(ctx, key, sec) == nil && string(sec.Data[v1alpha1.SecretKeyKeyID]) != old {
			return time.Since(start), nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start), fmt.Errorf("%s not rotated after %s", name, timeout)
}

// failover runs two manager replicas with leader election, kills the leader with SIGKILL (its Lease is
// not released) and measures how long until a rotation requested right after the kill reaches the
// Secret, while verification of the keys in the Secrets is probed on the surviving replica and on the
// standalone verifier.
func (s *suite) failover(ctx context.Context) (result, error) {
	s.managers[0].stop()
	a := newProc(s.dir, "replica-a", s.mgrKC, "manager", "--leader-elect=true", "--leader-election-namespace="+nsSystem, "--verify-max-staleness="+s.o.staleness.String())
	b := newProc(s.dir, "replica-b", s.mgrKC, "manager", "--leader-elect=true", "--leader-election-namespace="+nsSystem, "--verify-max-staleness="+s.o.staleness.String())
	for _, r := range []*proc{a, b} {
		if err := r.run(); err != nil {
			return result{}, err
		}
	}
	s.managers = append(s.managers, a, b)
	var resume, elected []time.Duration
	var probes, failures int64
	for i := 0; i < s.o.failovers; i++ {
		leader, follower, err := s.leaderOf(ctx, a, b, 60*time.Second)
		if err != nil {
			return result{}, err
		}
		if err := follower.waitReady(ctx, 30*time.Second); err != nil {
			return result{}, err
		}
		if _, err := s.converge(ctx, nsChaos, 60*time.Second); err != nil {
			s.violate("no ApiKey stuck", "before failover %d: %v", i+1, err)
		}
		pctx, stopProbe := context.WithCancel(ctx)
		p := s.probe(pctx, func() []string { return []string{follower.verifyAddr, s.verifier.verifyAddr} })
		time.Sleep(time.Second)
		killed := time.Now()
		leader.kill()
		target := fmt.Sprintf("rot-%02d", i%s.o.rotating)
		d, err := s.rotateAndWait(ctx, nsChaos, target, fmt.Sprintf("failover-%d", i), 60*time.Second)
		if err != nil {
			s.violate("rotations resume within 20 s of a leader failure", "%v", err)
		}
		resume = append(resume, d)
		if d > 20*time.Second {
			s.violate("rotations resume within 20 s of a leader failure", "failover %d: %.1f s", i+1, d.Seconds())
		}
		for !follower.leader() && !leader.leader() && time.Since(killed) < 60*time.Second {
			time.Sleep(100 * time.Millisecond)
		}
		elected = append(elected, time.Since(killed))
		time.Sleep(2 * time.Second)
		stopProbe()
		probes += p.checks.Load()
		failures += p.failures.Load()
		if n := p.failures.Load(); n > 0 {
			s.violate("verification of valid keys never fails during failover", "%d of %d checks failed: %v", n, p.checks.Load(), p.failed)
		}
		fmt.Printf("   failover %d: rotation resumed after %.1f s, %d probes, %d failed\n", i+1, d.Seconds(), p.checks.Load(), p.failures.Load())
	}
	return result{Trials: s.o.failovers, Figures: fmt.Sprintf("rotation requested at the kill reached its Secret after p50 %.1f s, max %.1f s (the defaults: Lease 10 s, renew deadline 7 s, retry 1 s); "+
		"%d verifications on the surviving replica and the standalone verifier, %d failed",
		pct(resume, 0.5).Seconds(), pct(resume, 1).Seconds(), probes, failures)}, nil
}

// leaderOf waits until one of the replicas holds the Lease.
func (s *suite) leaderOf(ctx context.Context, a, b *proc, timeout time.Duration) (leader, follower *proc, err error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		switch {
		case a.leader():
			return a, b, nil
		case b.leader():
			return b, a, nil
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil, nil, fmt.Errorf("no leader after %s", timeout)
}

// apiServerRestart stops kube-apiserver (etcd keeps running) for longer than the verifiers' staleness
// bound, then starts it again. While it is down, the verifiers keep answering from their index until the
// bound, then fail closed (503); after the restart they accept again and the manager rotates again.
func (s *suite) apiServerRestart(ctx context.Context) (result, error) {
	keys := s.currentKeys(ctx, nsChaos)
	probe, ok := keys["rot-01"]
	if !ok {
		return result{}, fmt.Errorf("no key in Secret rot-01")
	}
	verifiers := []*proc{s.verifier}
	for _, m := range s.managers[1:] {
		if m.up() > 0 {
			verifiers = append(verifiers, m)
		}
	}
	s.obs.pause(true)
	api := s.env.ControlPlane.GetAPIServer()
	stopped := time.Now()
	// SIGTERM; envtest falls back to SIGKILL (and says so) when the API server takes longer than its stop
	// timeout to drain. The verifiers are probed meanwhile.
	stopErr := make(chan error, 1)
	go func() { stopErr <- api.Stop() }()
	var stopTook time.Duration
	down := s.o.staleness + 5*time.Second
	lastValid := map[string]time.Duration{}
	firstClosed := map[string]time.Duration{}
	for stopTook == 0 || time.Since(stopped) < stopTook+down {
		select {
		case err := <-stopErr:
			if err != nil && !strings.Contains(err.Error(), "timeout waiting") {
				return result{}, err
			}
			stopTook = time.Since(stopped)
		default:
		}
		for _, v := range verifiers {
			switch check(s.obs.httpClient(), v.verifyAddr, probe) {
			case accepted:
				lastValid[v.name] = time.Since(stopped)
			case refused:
				s.violate("verifier fails closed with 503, never refuses a valid key", "%s refused a valid key %.1f s after the API server stopped", v.name, time.Since(stopped).Seconds())
			case unavailable:
				if _, ok := firstClosed[v.name]; !ok && v.up() > 0 {
					firstClosed[v.name] = time.Since(stopped)
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second) // the port is free again
	for _, v := range verifiers {
		if lastValid[v.name]-stopTook > s.o.staleness+3*time.Second {
			s.violate("verifier fails closed beyond its staleness bound", "%s still accepted %.1f s after the API server was gone (bound %s)", v.name, (lastValid[v.name] - stopTook).Seconds(), s.o.staleness)
		}
		if _, ok := firstClosed[v.name]; !ok && v == s.verifier {
			s.violate("verifier fails closed beyond its staleness bound", "%s never answered 503 during %s without the API server", v.name, down)
		}
	}
	restarted := time.Now()
	if err := api.Start(); err != nil {
		return result{}, fmt.Errorf("restarting kube-apiserver: %w", err)
	}
	startTook := time.Since(restarted)
	var back time.Duration
	for {
		if check(s.obs.httpClient(), s.verifier.verifyAddr, probe) == accepted {
			back = time.Since(restarted)
			break
		}
		if time.Since(restarted) > 120*time.Second {
			s.violate("verifier accepts again after resync", "not after 120 s")
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.obs.pause(false)
	rot, err := s.rotateAndWait(ctx, nsChaos, "rot-02", "after-restart", 120*time.Second)
	if err != nil {
		s.violate("manager recovers after an API server restart", "%v", err)
	}
	if _, err := s.converge(ctx, nsChaos, 90*time.Second); err != nil {
		s.violate("no ApiKey stuck", "after the API server restart: %v", err)
	}
	var closed []string
	for _, v := range verifiers {
		closed = append(closed, fmt.Sprintf("%s last valid answer at %.1f s, 503 from %.1f s", v.name, lastValid[v.name].Seconds(), firstClosed[v.name].Seconds()))
	}
	return result{Trials: 1, Figures: fmt.Sprintf("API server down %.0f s (stop took %.1f s, start %.1f s), staleness bound %s: %s; "+
		"the standalone verifier accepted again %.1f s after the restart began; a rotation requested then reached its Secret after %.1f s",
		down.Seconds(), stopTook.Seconds(), startTook.Seconds(), s.o.staleness, joinProblems(closed), back.Seconds(), rot.Seconds())}, nil
}
