package actions

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/rotation"
)

// PollInterval is how often Wait reads the ApiKey.
var PollInterval = 250 * time.Millisecond

// Wait waits until keysmith confirms r in the ApiKey's status, reading it with c every PollInterval, for
// at most timeout. It returns a *TimeoutError when keysmith has not confirmed in time, and the API
// server's error when the ApiKey cannot be read (deleted, forbidden). A revoke or a disable is confirmed
// in two steps (WaitRevocation, WaitDisable): when keysmith has not recorded it in time but the API
// server holds it, the verifiers refuse the keys and Wait succeeds with Result.Warning set.
func Wait(ctx context.Context, c client.Client, r *Request, timeout time.Duration) (Result, error) {
	switch r.Kind {
	case KindRotate:
		return WaitRotated(ctx, c, r, timeout)
	case KindRevoke:
		return WaitRevocation(ctx, c, r, timeout, nil)
	case KindDisable:
		return WaitDisable(ctx, c, r, timeout, nil)
	case KindEnable:
		return WaitEnabled(ctx, c, r, timeout)
	}
	return Result{}, fmt.Errorf("unknown action %q", r.Kind)
}

// confirmed looks at one read of the ApiKey: a non-empty message means confirmed.
type confirmed func(ak *v1alpha1.ApiKey) (msg string)

func waitFor(ctx context.Context, c client.Client, r *Request, timeout time.Duration, check confirmed) (Result, error) {
	start := time.Now()
	key := types.NamespacedName{Namespace: r.Namespace, Name: r.Name}
	var last *v1alpha1.ApiKey
	var res Result
	err := wait.PollUntilContextTimeout(ctx, PollInterval, timeout, true, func(ctx context.Context) (bool, error) {
		ak := &v1alpha1.ApiKey{}
		if err := c.Get(ctx, key, ak); err != nil {
			if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
				return false, err
			}
			return false, nil // a transient error: try again until the timeout
		}
		last = ak
		if msg := check(ak); msg != "" {
			res = Result{Request: *r, CurrentKeyID: ak.Status.CurrentKeyID, Message: msg}
			return true, nil
		}
		return false, nil
	})
	res.Waited = time.Since(start).Round(time.Millisecond)
	if err != nil {
		if (wait.Interrupted(err) || errors.Is(err, context.DeadlineExceeded)) && ctx.Err() == nil {
			return res, &TimeoutError{Request: *r, Timeout: timeout, State: describeState(last), Enforced: last != nil && Enforced(last, r) != ""}
		}
		return res, err
	}
	return res, nil
}

// describeState sums up why an ApiKey is not where it should be: its Stalled condition, else Ready's.
func describeState(ak *v1alpha1.ApiKey) string {
	if ak == nil {
		return ""
	}
	if s := meta.FindStatusCondition(ak.Status.Conditions, v1alpha1.ConditionStalled); s != nil && s.Status == metav1.ConditionTrue {
		return fmt.Sprintf("Stalled (%s): %s", s.Reason, s.Message)
	}
	if s := meta.FindStatusCondition(ak.Status.Conditions, v1alpha1.ConditionReady); s != nil {
		return fmt.Sprintf("Ready=%s (%s): %s", s.Status, s.Reason, s.Message)
	}
	return "keysmith has written no status yet"
}

func current(ak *v1alpha1.ApiKey) *v1alpha1.IssuedKey {
	if k := findKey(ak.Status.Keys, ak.Status.CurrentKeyID); k != nil && k.State == v1alpha1.KeyActive {
		return k
	}
	return nil
}

// previousFate says what became of the key that was current before: retiring until, expired at once, revoked.
func previousFate(ak *v1alpha1.ApiKey, id string) string {
	k := findKey(ak.Status.Keys, id)
	if k == nil || id == "" {
		return ""
	}
	switch k.State {
	case v1alpha1.KeyRetiring:
		return fmt.Sprintf("; the previous key %s is retiring, accepted until %s", id, k.NotAfter.UTC().Format(time.RFC3339))
	case v1alpha1.KeyExpired:
		return fmt.Sprintf("; the previous key %s expired at once (no overlap)", id)
	case v1alpha1.KeyRevoked:
		return fmt.Sprintf("; the previous key %s is revoked (%s)", id, k.Reason)
	}
	return ""
}

// WaitRotated waits until keysmith has handled the rotate request (status.handledRotateRequest is the
// digest of its value) and a new key is current.
func WaitRotated(ctx context.Context, c client.Client, r *Request, timeout time.Duration) (Result, error) {
	return waitFor(ctx, c, r, timeout, func(ak *v1alpha1.ApiKey) string {
		if !rotation.RequestHandled(r.Value, ak.Status.HandledRotateRequest) {
			return ""
		}
		cur := current(ak)
		if cur == nil || cur.ID == r.PreviousKeyID {
			return ""
		}
		return fmt.Sprintf("rotated: the new key %s is current (for Secret %s), accepted until %s%s",
			cur.ID, ak.Spec.SecretName, cur.NotAfter.UTC().Format(time.RFC3339), previousFate(ak, r.PreviousKeyID))
	})
}

// WaitRevoked waits until every key of the request is recorded as revoked (or no longer valid) in
// status: keysmith's record only (WaitRevocation also reports when the API server holds the revocation,
// which is when the verifiers refuse the keys, and succeeds with a warning when only that happened).
func WaitRevoked(ctx context.Context, c client.Client, r *Request, timeout time.Duration) (Result, error) {
	return waitFor(ctx, c, r, timeout, revokedRecorded(r))
}

// revokedRecorded is keysmith's record of a revoke request: every key of it revoked (or no longer
// valid) in status, with the fresh key it issued when the current key was among them.
func revokedRecorded(r *Request) confirmed {
	return func(ak *v1alpha1.ApiKey) string {
		if len(r.KeyIDs) == 0 {
			return r.Message
		}
		var revoked []string
		for _, id := range r.KeyIDs {
			k := findKey(ak.Status.Keys, id)
			if k != nil && rotation.Valid(*k) {
				return ""
			}
			if k != nil {
				what := strings.ToLower(string(k.State))
				if k.Reason != "" {
					what += " (" + k.Reason + ")"
				}
				revoked = append(revoked, id+" "+what)
			} else {
				revoked = append(revoked, id+" gone from status")
			}
		}
		msg := "revoked: key " + strings.Join(revoked, ", key ")
		if slices.Contains(r.KeyIDs, r.PreviousKeyID) {
			if cur := current(ak); cur != nil && !slices.Contains(r.KeyIDs, cur.ID) {
				msg += fmt.Sprintf("; a fresh key %s is current (for Secret %s), with no overlap", cur.ID, ak.Spec.SecretName)
			} else {
				msg += "; no key is active yet (" + describeState(ak) + ")"
			}
		}
		return msg
	}
}

// WaitDisabled waits until keysmith has acted on spec.disabled: true (status of the new generation, Ready
// reason Disabled, no valid key): keysmith's record only (see WaitDisable).
func WaitDisabled(ctx context.Context, c client.Client, r *Request, timeout time.Duration) (Result, error) {
	return waitFor(ctx, c, r, timeout, disabledRecorded(r))
}

func disabledRecorded(r *Request) confirmed {
	return func(ak *v1alpha1.ApiKey) string {
		ready := meta.FindStatusCondition(ak.Status.Conditions, v1alpha1.ConditionReady)
		if ak.Status.ObservedGeneration < r.Generation || ready == nil || ready.Reason != v1alpha1.ReasonDisabled || ready.ObservedGeneration < r.Generation {
			return ""
		}
		n := 0
		for _, k := range ak.Status.Keys {
			if rotation.Valid(k) {
				return ""
			}
			if k.State == v1alpha1.KeyRevoked && k.Reason == v1alpha1.RevokedDisabled {
				n++
			}
		}
		return fmt.Sprintf("disabled: %d key%s revoked (Disabled); every verifier refuses %s, and keysmith empties the Secret %s", n, plural(n, "", "s"), plural(n, "it", "them"), ak.Spec.SecretName)
	}
}

// WaitEnabled waits until keysmith has acted on spec.disabled: false: Ready for the new generation with a
// fresh key, one that status did not list before.
func WaitEnabled(ctx context.Context, c client.Client, r *Request, timeout time.Duration) (Result, error) {
	return waitFor(ctx, c, r, timeout, func(ak *v1alpha1.ApiKey) string {
		ready := meta.FindStatusCondition(ak.Status.Conditions, v1alpha1.ConditionReady)
		if ak.Status.ObservedGeneration < r.Generation || ready == nil || ready.Status != metav1.ConditionTrue || ready.ObservedGeneration < r.Generation {
			return ""
		}
		cur := current(ak)
		if cur == nil || (!r.Unchanged && slices.Contains(r.PreviousKeys, cur.ID)) {
			return ""
		}
		if r.Unchanged {
			return fmt.Sprintf("enabled: key %s is current (for Secret %s)", cur.ID, ak.Spec.SecretName)
		}
		return fmt.Sprintf("enabled: a fresh key %s is current (for Secret %s), accepted until %s", cur.ID, ak.Spec.SecretName, cur.NotAfter.UTC().Format(time.RFC3339))
	})
}
