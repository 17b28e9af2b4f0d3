package main

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/testenv"
)

type verdict = testenv.Verdict

const (
	accepted    = testenv.Accepted
	refused     = testenv.Refused
	unavailable = testenv.Unavailable
)

func check(cl *http.Client, addr, key string) verdict {
	return testenv.VerifyKey(cl, "http://"+addr, key)
}

// seenKey is a plaintext key the observer read from a Secret. The plaintext stays in this process's
// memory; it is never printed.
type seenKey struct {
	plaintext string
	apiKey    types.NamespacedName
	uid       types.UID
	// badSince is when the key was first seen in a state where it must be refused (zero: not yet).
	badSince time.Time
	// badWhy says why it must be refused (never the key).
	badWhy string
	// refusedSince is when the verifier first refused it while it was in its Secret and valid by status.
	refusedSince time.Time
}

// violation is one broken invariant, with the time it was found.
type violation struct {
	At        time.Time
	Invariant string
	Detail    string // names and key ids only
}

// observer checks the invariants continuously while scenarios run, from outside: it lists ApiKeys and
// Secrets from the API server and asks the standalone verifier.
type observer struct {
	c        client.Client
	verifier string // address of the standalone verifier's HTTP API
	manager  func() time.Duration
	ns       []string
	http     *http.Client

	// grace is how long the verifier may take to learn a change from its watch.
	grace time.Duration

	mu          sync.Mutex
	keys        map[string]*seenKey // by key id
	all         []string            // every plaintext seen, for the leak scan
	violations  []violation
	rounds      int
	checks      int
	maxKeys     int // longest status.keys seen
	maxLag      time.Duration
	missingFrom map[string]time.Time // "ns/name/keyID" -> when an Active key was first seen without its Secret
	paused      bool
}

func newObserver(c client.Client, verifier string, manager func() time.Duration, ns ...string) *observer {
	return &observer{c: c, verifier: verifier, manager: manager, ns: ns, http: &http.Client{Timeout: 2 * time.Second},
		grace: 2 * time.Second, keys: map[string]*seenKey{}, missingFrom: map[string]time.Time{}}
}

func (o *observer) violate(invariant, format string, args ...any) {
	o.violations = append(o.violations, violation{At: time.Now(), Invariant: invariant, Detail: fmt.Sprintf(format, args...)})
}

// pause stops the checks (while the API server is down on purpose); resume starts them again.
func (o *observer) pause(p bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.paused = p
	if !p {
		// Refusal clocks restart: the verifier was allowed to be unavailable meanwhile.
		for _, k := range o.keys {
			k.refusedSince = time.Time{}
		}
		o.missingFrom = map[string]time.Time{}
	}
}

// run checks every interval until ctx ends.
func (o *observer) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			o.round(ctx)
		}
	}
}

func (o *observer) round(ctx context.Context) {
	o.mu.Lock()
	paused := o.paused
	o.mu.Unlock()
	if paused {
		return
	}
	live := map[types.NamespacedName]*v1alpha1.ApiKey{}
	secrets := map[types.NamespacedName]*corev1.Secret{}
	for _, ns := range o.ns {
		aks := &v1alpha1.ApiKeyList{}
		ss := &corev1.SecretList{}
		if o.c.List(ctx, aks, client.InNamespace(ns)) != nil ||
			o.c.List(ctx, ss, client.InNamespace(ns), client.MatchingLabels{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue}) != nil {
			return // the API server is away; nothing to compare against
		}
		for i := range aks.Items {
			live[client.ObjectKeyFromObject(&aks.Items[i])] = &aks.Items[i]
		}
		for i := range ss.Items {
			secrets[client.ObjectKeyFromObject(&ss.Items[i])] = &ss.Items[i]
		}
	}
	now := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	o.rounds++
	inSecret := map[string]types.NamespacedName{}
	for _, s := range secrets {
		id := string(s.Data[v1alpha1.SecretKeyKeyID])
		plain := string(s.Data[v1alpha1.SecretKeyAPIKey])
		if id == "" || plain == "" {
			continue
		}
		owner := ownerOf(s)
		if owner == nil {
			continue
		}
		ak := live[types.NamespacedName{Namespace: s.Namespace, Name: owner.Name}]
		if ak == nil || ak.UID != owner.UID {
			continue
		}
		inSecret[id] = client.ObjectKeyFromObject(ak)
		if _, ok := o.keys[id]; !ok {
			o.keys[id] = &seenKey{plaintext: plain, apiKey: client.ObjectKeyFromObject(ak), uid: ak.UID}
			o.all = append(o.all, plain)
		}
	}
	for _, ak := range live {
		if len(ak.Status.Keys) > o.maxKeys {
			o.maxKeys = len(ak.Status.Keys)
		}
		if len(ak.Status.Keys) > v1alpha1.MaxKeysInStatus {
			o.violate("status bounded", "%s/%s lists %d keys", ak.Namespace, ak.Name, len(ak.Status.Keys))
		}
	}
	// Every key seen: must it be accepted or refused now?
	for id, k := range o.keys {
		ak := live[k.apiKey]
		state, why := "", ""
		var notAfter time.Time
		switch {
		case ak == nil || ak.UID != k.uid:
			why = "ApiKey deleted"
		case !ak.DeletionTimestamp.IsZero():
			why = "ApiKey being deleted"
		default:
			for _, ik := range ak.Status.Keys {
				if ik.ID == id {
					state, notAfter = string(ik.State), ik.NotAfter.Time
				}
			}
			switch {
			case state == "":
				why = "no longer listed in status"
			case state != string(v1alpha1.KeyActive) && state != string(v1alpha1.KeyRetiring):
				why = "state " + state
			case now.After(notAfter):
				why = "past notAfter"
			}
		}
		if why == "" {
			k.badSince, k.badWhy = time.Time{}, ""
		} else if k.badSince.IsZero() {
			k.badSince, k.badWhy = now, why
			if why == "past notAfter" {
				k.badSince = notAfter
			}
		}
		holder, held := inSecret[id]
		mustRefuse := !k.badSince.IsZero() && now.Sub(k.badSince) > o.grace
		// A key in its Secret, or a previous key during its overlap, must be accepted.
		mustAccept := k.badSince.IsZero() && ((held && holder == k.apiKey) || state == string(v1alpha1.KeyRetiring)) &&
			now.Add(time.Second).Before(notAfter)
		if !mustRefuse && !mustAccept {
			if !k.badSince.IsZero() && now.Sub(k.badSince) > time.Hour {
				delete(o.keys, id) // refused for long enough; stop asking
			}
			continue
		}
		o.checks++
		v := check(o.http, o.verifier, k.plaintext)
		switch {
		case mustRefuse && v == accepted:
			o.violate("no key accepted past notAfter or revocation", "%s/%s key %s accepted %.1fs after it became invalid (%s)",
				k.apiKey.Namespace, k.apiKey.Name, id, now.Sub(k.badSince).Seconds(), k.badWhy)
		case mustAccept && v == accepted:
			if !k.refusedSince.IsZero() && now.Sub(k.refusedSince) > o.maxLag {
				o.maxLag = now.Sub(k.refusedSince)
			}
			k.refusedSince = time.Time{}
		case mustAccept && v == refused:
			if k.refusedSince.IsZero() {
				k.refusedSince = now
			} else if now.Sub(k.refusedSince) > o.grace {
				o.violate("key in every Secret accepted", "%s/%s key %s in the Secret refused for %.1fs",
					k.apiKey.Namespace, k.apiKey.Name, id, now.Sub(k.refusedSince).Seconds())
				k.refusedSince = now // report again only after another grace period
			}
		}
	}
	// No Active key lacks its Secret for long while a manager is running.
	seen := map[string]bool{}
	for name, ak := range live {
		if !ak.DeletionTimestamp.IsZero() || ak.Status.CurrentKeyID == "" {
			continue
		}
		for _, ik := range ak.Status.Keys {
			if ik.State != v1alpha1.KeyActive {
				continue
			}
			if held, ok := inSecret[ik.ID]; ok && held == name {
				continue
			}
			id := name.String() + "/" + ik.ID
			seen[id] = true
			first, ok := o.missingFrom[id]
			if !ok {
				o.missingFrom[id] = now
				continue
			}
			// Counted from when the manager came up, if it was down meanwhile.
			from := first
			if up := now.Add(-o.manager()); up.After(from) {
				from = up
			}
			if o.manager() > 0 && now.Sub(from) > 10*time.Second {
				o.violate("no Active key lacks a Secret", "%s key %s Active for %.0fs of manager uptime without being in the Secret", name, ik.ID, now.Sub(from).Seconds())
				o.missingFrom[id] = now
			}
		}
	}
	for id := range o.missingFrom {
		if !seen[id] {
			delete(o.missingFrom, id)
		}
	}
}

func ownerOf(s *corev1.Secret) *struct {
	Name string
	UID  types.UID
} {
	for _, r := range s.OwnerReferences {
		if r.Controller != nil && *r.Controller && r.Kind == "ApiKey" {
			return &struct {
				Name string
				UID  types.UID
			}{r.Name, r.UID}
		}
	}
	return nil
}

// snapshot returns the violations so far, sorted by time.
func (o *observer) snapshot() (v []violation, rounds, checks, keys, maxKeys int, maxLag time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	v = append(v, o.violations...)
	sort.Slice(v, func(i, j int) bool { return v[i].At.Before(v[j].At) })
	return v, o.rounds, o.checks, len(o.keys), o.maxKeys, o.maxLag
}

// plaintexts returns every key seen, for the scan of logs and events (never printed).
func (o *observer) plaintexts() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.all...)
}

func (o *observer) httpClient() *http.Client { return o.http }
