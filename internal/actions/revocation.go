package actions

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/rotation"
)

// A revocation (revoke, disable) is confirmed in two steps, because the verifiers do not wait for
// keysmith (docs/security.md): every verifier refuses a key from its next request on once the API server
// holds a keysmith.dev/revoke value that names it (or "all") and that status does not record as handled
// yet, or spec.disabled, or a deletion, or status listing the key as no longer valid
// (internal/verify's entriesOf). So:
//
//	(a) enforced: the ApiKey read back from the API server holds such a revocation of every key of the
//	    request: every verifier refuses them from its next request on, with or without keysmith;
//	(b) recorded: keysmith recorded it in status (the keys Revoked, a fresh key if the current one was
//	    among them; for disable, the new generation with Ready reason Disabled).
//
// When (b) has not happened within the timeout but (a) holds, the revocation is in force: the wait
// succeeds, with Recorded false and a Warning that keysmith has not recorded it (is the operator running?).

// NotRecordedWarning starts Result.Warning when the API server holds the revocation but keysmith has not
// recorded it within the timeout.
const NotRecordedWarning = "keysmith has not recorded it yet: is the operator running?"

// WaitRevocation waits for the two steps of a revoke request r (from Revoke): (a) the API server holds a
// revocation covering every key of r, then (b) keysmith records them in status. It reads the ApiKey with
// c every PollInterval for at most timeout. onEnforced, if not nil, is called once, as soon as (a) is
// seen, with a Result whose Message says so.
//
// It returns with Recorded true once (b) holds; with Recorded false, a nil error and Warning set when the
// timeout passed while (a) holds (the keys are refused, keysmith has not recorded it); a *TimeoutError
// when (a) does not hold at the timeout (the annotation was changed, or the ApiKey never read); and the
// API server's error when the ApiKey cannot be read (deleted, forbidden).
func WaitRevocation(ctx context.Context, c client.Client, r *Request, timeout time.Duration, onEnforced func(Result)) (Result, error) {
	return waitTwoSteps(ctx, c, r, timeout, onEnforced, func(ak *v1alpha1.ApiKey) string {
		return revocationEnforced(ak, r.KeyIDs)
	}, revokedRecorded(r))
}

// WaitDisable is WaitRevocation for a disable request r (from Disable): (a) the API server holds
// spec.disabled: true (every verifier refuses every key of the ApiKey), (b) keysmith has acted on it
// (WaitDisabled's confirmation).
func WaitDisable(ctx context.Context, c client.Client, r *Request, timeout time.Duration, onEnforced func(Result)) (Result, error) {
	return waitTwoSteps(ctx, c, r, timeout, onEnforced, disableEnforced, disabledRecorded(r))
}

// Enforced reports whether every verifier refuses every key of r given what the API server holds in ak
// (step (a) of a revocation): the message says why, "" when some key is still accepted. For a rotate or
// enable request it is always "".
func Enforced(ak *v1alpha1.ApiKey, r *Request) string {
	switch r.Kind {
	case KindRevoke:
		return revocationEnforced(ak, r.KeyIDs)
	case KindDisable:
		return disableEnforced(ak)
	}
	return ""
}

// revocationEnforced says why every verifier refuses every key of ids, given ak as the API server holds
// it, or "" when one of them is still accepted.
func revocationEnforced(ak *v1alpha1.ApiKey, ids []string) string {
	if ak == nil || len(ids) == 0 {
		return ""
	}
	if ak.Spec.Disabled {
		return fmt.Sprintf("every verifier refuses key %s from its next request on (the API server holds spec.disabled: true)", strings.Join(ids, ", "))
	}
	if ak.DeletionTimestamp != nil {
		return fmt.Sprintf("every verifier refuses key %s from its next request on (the ApiKey is being deleted)", strings.Join(ids, ", "))
	}
	var pendingIDs []string
	pendingAll := false
	if v := ak.Annotations[v1alpha1.AnnotationRevoke]; !rotation.RequestHandled(v, ak.Status.HandledRevokeRequest) {
		if pids, all, problem := rotation.ParseRevokeRequest(v); problem == "" {
			pendingIDs, pendingAll = pids, all
		}
	}
	now := Now()
	var byAnnotation, byStatus []string
	for _, id := range ids {
		k := findKey(ak.Status.Keys, id)
		valid := k != nil && rotation.Valid(*k) && now.Before(k.NotAfter.Time)
		switch {
		case valid && (pendingAll || slices.Contains(pendingIDs, id)):
			byAnnotation = append(byAnnotation, id)
		case valid:
			return "" // still accepted: nothing the API server holds refuses it
		default:
			byStatus = append(byStatus, id) // revoked or past its notAfter in status, or not listed: refused
		}
	}
	var why []string
	if len(byAnnotation) > 0 {
		if pendingAll {
			why = append(why, v1alpha1.AnnotationRevoke+"=all")
		} else {
			why = append(why, v1alpha1.AnnotationRevoke+" naming "+plural(len(byAnnotation), "it", "them"))
		}
	}
	if len(byStatus) > 0 {
		what := "status listing " + plural(len(byStatus), "it", "them") + " as no longer valid"
		if len(byAnnotation) > 0 {
			what = "status listing key " + strings.Join(byStatus, ", ") + " as no longer valid"
		}
		why = append(why, what)
	}
	return fmt.Sprintf("every verifier refuses key %s from its next request on (the API server holds %s)", strings.Join(ids, ", "), strings.Join(why, " and "))
}

func disableEnforced(ak *v1alpha1.ApiKey) string {
	switch {
	case ak == nil:
		return ""
	case ak.Spec.Disabled:
		return "every verifier refuses every key of this ApiKey from its next request on (the API server holds spec.disabled: true)"
	case ak.DeletionTimestamp != nil:
		return "every verifier refuses every key of this ApiKey from its next request on (the ApiKey is being deleted)"
	}
	return ""
}

// waitTwoSteps polls the ApiKey of r until recorded confirms, noting when enforced first holds.
func waitTwoSteps(ctx context.Context, c client.Client, r *Request, timeout time.Duration, onEnforced func(Result),
	enforced func(*v1alpha1.ApiKey) string, recorded confirmed) (Result, error) {
	start := time.Now()
	key := types.NamespacedName{Namespace: r.Namespace, Name: r.Name}
	res := Result{Request: *r}
	var last *v1alpha1.ApiKey
	told := false
	err := wait.PollUntilContextTimeout(ctx, PollInterval, timeout, true, func(ctx context.Context) (bool, error) {
		ak := &v1alpha1.ApiKey{}
		if err := c.Get(ctx, key, ak); err != nil {
			if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
				return false, err
			}
			return false, nil // a transient error: try again until the timeout
		}
		last = ak
		res.CurrentKeyID = ak.Status.CurrentKeyID
		if msg := enforced(ak); msg != "" {
			res.Enforced, res.EnforcedMessage = true, msg
			if !told {
				told = true
				res.EnforcedAfter = time.Since(start).Round(time.Millisecond)
				if onEnforced != nil {
					step := res
					step.Message, step.Waited = msg, res.EnforcedAfter
					onEnforced(step)
				}
			}
		} else {
			res.Enforced, res.EnforcedMessage = false, ""
		}
		if msg := recorded(ak); msg != "" {
			res.Recorded, res.Message = true, msg
			return true, nil
		}
		return false, nil
	})
	res.Waited = time.Since(start).Round(time.Millisecond)
	if err == nil {
		return res, nil
	}
	if (wait.Interrupted(err) || errors.Is(err, context.DeadlineExceeded)) && ctx.Err() == nil {
		if res.Enforced {
			res.Message = res.EnforcedMessage
			res.Warning = fmt.Sprintf("%s (%s within %s; %s)", NotRecordedWarning, notRecordedWhat(r), timeout, describeState(last))
			return res, nil
		}
		return res, &TimeoutError{Request: *r, Timeout: timeout, State: describeState(last)}
	}
	return res, err
}

func notRecordedWhat(r *Request) string {
	if r.Kind == KindDisable {
		return "status does not show the ApiKey disabled"
	}
	return "status does not list key " + strings.Join(r.KeyIDs, ", ") + " as revoked"
}
