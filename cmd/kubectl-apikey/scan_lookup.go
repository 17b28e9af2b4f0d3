package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/actions"
	"github.com/keysmith-dev/keysmith/internal/keys"
	"github.com/keysmith-dev/keysmith/internal/rotation"
)

// scanListPage is the page size of the one ApiKey listing a scan makes.
const scanListPage = 500

// scanLookup says where keys were looked up.
type scanLookup struct {
	// Mode is "all-namespaces", "namespace" (Namespace only) or "offline".
	Mode      string `json:"mode"`
	Namespace string `json:"namespace,omitempty"`
	// ApiKeys is how many ApiKeys the listing returned.
	ApiKeys int `json:"apiKeys"`
	// Note says why the lookup was narrower than asked, if it was.
	Note string `json:"note,omitempty"`
}

// scanKeyEntry is what status says of one key that the scan found.
type scanKeyEntry struct {
	namespace, name string
	id              string
	state           v1alpha1.KeyState
	notAfter        time.Time
	reason          string
	// refused says why every verifier refuses a key that status still lists as valid: a revocation
	// keysmith has not recorded yet, a disabled or deleted ApiKey.
	refused string
}

// scanIndex maps the digests of the keys found to what the listing says of them. Only the found keys
// are kept: the listing's other keys are dropped page by page.
type scanIndex map[keys.Digest]scanKeyEntry

// listKeyIndex lists the ApiKeys the user may list, in pages of scanListPage: in namespace explicit
// when -n was given, else in every namespace, else (forbidden) in the kubeconfig's namespace, saying so.
func listKeyIndex(ctx context.Context, c client.Client, explicit string, current func() (string, error), wanted map[keys.Digest]bool) (scanIndex, scanLookup, error) {
	if explicit != "" {
		idx, n, err := listApiKeys(ctx, c, explicit, wanted)
		if err != nil {
			return nil, scanLookup{}, fmt.Errorf("listing ApiKeys in namespace %s: %w", explicit, err)
		}
		return idx, scanLookup{Mode: "namespace", Namespace: explicit, ApiKeys: n}, nil
	}
	idx, n, err := listApiKeys(ctx, c, "", wanted)
	if err == nil {
		return idx, scanLookup{Mode: "all-namespaces", ApiKeys: n}, nil
	}
	if !apierrors.IsForbidden(err) {
		return nil, scanLookup{}, fmt.Errorf("listing ApiKeys: %w", err)
	}
	ns, nerr := current()
	if nerr != nil {
		return nil, scanLookup{}, nerr
	}
	idx, n, err = listApiKeys(ctx, c, ns, wanted)
	if err != nil {
		return nil, scanLookup{}, fmt.Errorf("you may list ApiKeys neither in every namespace nor in namespace %s: %w", ns, err)
	}
	return idx, scanLookup{Mode: "namespace", Namespace: ns, ApiKeys: n,
		Note: fmt.Sprintf("you may not list ApiKeys in every namespace: keys were looked up in namespace %s only, and a key of an ApiKey elsewhere shows as unknown", ns)}, nil
}

func listApiKeys(ctx context.Context, c client.Client, ns string, wanted map[keys.Digest]bool) (scanIndex, int, error) {
	idx, n, cont, restarted := scanIndex{}, 0, "", false
	for {
		list := &v1alpha1.ApiKeyList{}
		opts := []client.ListOption{client.Limit(scanListPage)}
		if ns != "" {
			opts = append(opts, client.InNamespace(ns))
		}
		if cont != "" {
			opts = append(opts, client.Continue(cont))
		}
		if err := c.List(ctx, list, opts...); err != nil {
			if apierrors.IsResourceExpired(err) && !restarted { // the continue token expired: list again, once
				idx, n, cont, restarted = scanIndex{}, 0, "", true
				continue
			}
			if meta.IsNoMatchError(err) {
				return nil, 0, fmt.Errorf("the cluster has no ApiKey kind (is keysmith installed?): %w", err)
			}
			return nil, 0, err
		}
		for i := range list.Items {
			n++
			idx.add(&list.Items[i], wanted)
		}
		if cont = list.Continue; cont == "" {
			return idx, n, nil
		}
	}
}

func (idx scanIndex) add(ak *v1alpha1.ApiKey, wanted map[keys.Digest]bool) {
	for _, k := range ak.Status.Keys {
		d, err := keys.ParseHash(k.Hash)
		if err != nil || !wanted[d] {
			continue
		}
		e := scanKeyEntry{namespace: ak.Namespace, name: ak.Name, id: k.ID, state: k.State, notAfter: k.NotAfter.Time, reason: k.Reason}
		if rotation.Valid(k) {
			switch {
			case ak.DeletionTimestamp != nil:
				e.refused = "its ApiKey is being deleted"
			case ak.Spec.Disabled:
				e.refused = "its ApiKey is disabled"
			case revokePending(ak, k.ID):
				e.refused = "keysmith.dev/revoke names it and every verifier refuses it; keysmith has not recorded it yet"
			}
		}
		idx[d] = e
	}
}

// revokePending reports whether the ApiKey's keysmith.dev/revoke value names id (or all) and keysmith
// has not handled it yet: the verifiers refuse the key already.
func revokePending(ak *v1alpha1.ApiKey, id string) bool {
	v := ak.Annotations[v1alpha1.AnnotationRevoke]
	if rotation.RequestHandled(v, ak.Status.HandledRevokeRequest) {
		return false
	}
	ids, all, problem := rotation.ParseRevokeRequest(v)
	return problem == "" && (all || slices.Contains(ids, id))
}

// classify gives each key found its ApiKey and state from the index.
func (r *scanReport) classify(idx scanIndex, now time.Time) {
	for i := range r.items {
		it := &r.items[i]
		if !it.f.Valid {
			continue
		}
		e, ok := idx[it.f.Digest()]
		if !ok {
			it.state = scanStateUnknown
			continue
		}
		it.apiKey = &scanAPIKeyRef{Namespace: e.namespace, Name: e.name}
		it.state = string(e.state)
		live := e.state == v1alpha1.KeyActive || e.state == v1alpha1.KeyRetiring
		switch {
		case live && !now.Before(e.notAfter):
			it.state, it.detail = string(v1alpha1.KeyExpired), "its notAfter has passed; keysmith has not recorded it yet"
		case live && e.refused != "":
			it.state, it.detail = string(v1alpha1.KeyRevoked), e.refused
		case e.state == v1alpha1.KeyRetiring:
			it.detail = "accepted until " + e.notAfter.UTC().Format(time.RFC3339)
		case e.state == v1alpha1.KeyRevoked && e.reason != "":
			it.detail = "reason " + e.reason
		}
	}
}

// scanRevocation is what --revoke did to one ApiKey.
type scanRevocation struct {
	ApiKey scanAPIKeyRef `json:"apiKey"`
	KeyIDs []string      `json:"keyIDs"`
	// Refused is whether the API server, read back, holds the revocation of every key: every verifier
	// refuses them from its next request on, with or without keysmith's operator (docs/security.md).
	// RefusedMessage says why, RefusedSeconds when it was first read back.
	Refused        bool    `json:"refused"`
	RefusedMessage string  `json:"refusedMessage,omitempty"`
	RefusedSeconds float64 `json:"refusedSeconds,omitempty"`
	// Recorded is whether keysmith recorded the revocation in status within --timeout; Message says
	// what it recorded (or, when it did not, what the API server holds), Seconds how long the wait took.
	Recorded bool    `json:"recorded"`
	Message  string  `json:"message,omitempty"`
	Seconds  float64 `json:"seconds"`
	// Warning says that keysmith has not recorded it (the keys are refused all the same); Error that the
	// revocation failed: the keys may still be accepted.
	Warning string `json:"warning,omitempty"`
	Error   string `json:"error,omitempty"`
}

// revokeLive revokes every live key found, one request per ApiKey (internal/actions: the
// keysmith.dev/revoke annotation with the key ids, appended to a pending value), then, for every ApiKey
// at once, reads the ApiKey back until the API server holds the revocation (every verifier refuses the
// keys from then on) and waits, for at most timeout, until keysmith records it in status
// (actions.WaitRevocation). ctx carries no deadline of its own: the timeout is the wait's, so that a wait
// that runs out says why (the ApiKey's state), and a revocation keysmith does not record in time is a
// warning, not an error. Progress goes to progress (standard error).
func (r *scanReport) revokeLive(ctx context.Context, c client.Client, timeout time.Duration, progress io.Writer) error {
	byKey := map[types.NamespacedName][]string{}
	for _, it := range r.items {
		if it.apiKey == nil || !scanLiveState(it.state) {
			continue
		}
		k := types.NamespacedName{Namespace: it.apiKey.Namespace, Name: it.apiKey.Name}
		if id := it.f.ID(); !slices.Contains(byKey[k], id) {
			byKey[k] = append(byKey[k], id)
		}
	}
	targets := make([]types.NamespacedName, 0, len(byKey))
	for k := range byKey {
		targets = append(targets, k)
	}
	sort.Slice(targets, func(i, j int) bool { return targets[i].String() < targets[j].String() })
	var mu sync.Mutex // progress and failed, written by the waits
	var failed []string
	type sent struct {
		rev *scanRevocation
		req *actions.Request
	}
	var pending []sent
	for _, k := range targets {
		rev := &scanRevocation{ApiKey: scanAPIKeyRef{Namespace: k.Namespace, Name: k.Name}, KeyIDs: byKey[k]}
		r.revocations = append(r.revocations, rev)
		req, err := actions.Revoke(ctx, c, k, byKey[k], false)
		if err != nil {
			rev.Error = err.Error()
			failed = append(failed, fmt.Sprintf("%s: %v", k, err))
			continue
		}
		fmt.Fprintf(progress, "revoking key %s of ApiKey %s: %s\n", strings.Join(byKey[k], ", "), k, req.Message)
		pending = append(pending, sent{rev: rev, req: req})
	}
	var wg sync.WaitGroup
	for _, p := range pending {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ref := p.rev.ApiKey.String()
			rev := p.rev
			res, err := actions.WaitRevocation(ctx, c, p.req, timeout, func(step actions.Result) {
				mu.Lock()
				defer mu.Unlock()
				// What the API server held when the revocation was first read back (later reads may show
				// keysmith's record instead).
				rev.RefusedMessage, rev.RefusedSeconds = step.Message, step.Waited.Seconds()
				fmt.Fprintf(progress, "ApiKey %s: %s (read back from the API server after %.2f s)\n", ref, step.Message, step.Waited.Seconds())
			})
			mu.Lock()
			defer mu.Unlock()
			rev.Seconds = res.Waited.Seconds()
			rev.Refused = res.Enforced
			if rev.RefusedMessage == "" {
				rev.RefusedMessage, rev.RefusedSeconds = res.EnforcedMessage, res.EnforcedAfter.Seconds()
			}
			if err != nil {
				rev.Error = err.Error()
				failed = append(failed, fmt.Sprintf("%s: %v", ref, err))
				return
			}
			rev.Recorded, rev.Message, rev.Warning = res.Recorded, res.Message, res.Warning
			if rev.Warning != "" {
				fmt.Fprintf(progress, "warning: ApiKey %s: %s\n", ref, rev.Warning)
			}
		}()
	}
	wg.Wait()
	for _, rev := range r.revocations {
		if !rev.Refused {
			continue
		}
		for i := range r.items {
			it := &r.items[i]
			if it.apiKey != nil && *it.apiKey == rev.ApiKey && slices.Contains(rev.KeyIDs, it.f.ID()) {
				it.revoked = true
			}
		}
	}
	if len(failed) > 0 {
		sort.Strings(failed)
		return fmt.Errorf("--revoke: %s", strings.Join(failed, "; "))
	}
	return nil
}
