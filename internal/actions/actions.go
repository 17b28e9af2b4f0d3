// Package actions performs what a person does to an ApiKey (rotate it, revoke keys, disable and enable
// it) exactly as the annotation or field documented in docs/lifecycle.md does, each as one merge patch
// sent with the caller's client (and so with the caller's credentials and RBAC), and waits until keysmith
// confirms it in status. They are the semantics of the Argo CD actions in
// config/argocd/resource_customizations/keysmith.dev/ApiKey/actions.
//
// Nothing here reads a Secret or handles a key: requests and results carry key ids only.
package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/keys"
	"github.com/keysmith-dev/keysmith/internal/rotation"
)

// Kind is an action.
type Kind string

const (
	KindRotate  Kind = "rotate"
	KindRevoke  Kind = "revoke"
	KindDisable Kind = "disable"
	KindEnable  Kind = "enable"
)

// Now is the clock of rotate request values; tests replace it.
var Now = time.Now

// Request is what an action wrote (or found already done), and what Wait needs to recognise keysmith's
// confirmation.
type Request struct {
	Kind      Kind   `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Value is the annotation value written (rotate: a timestamp; revoke: key ids or "all"). It never
	// holds a key: revoke takes ids, and a key given instead is replaced by its id before anything is sent.
	Value string `json:"value,omitempty"`
	// KeyIDs are the keys a revoke asks for (with All, the keys valid when it was sent).
	KeyIDs []string `json:"keyIDs,omitempty"`
	All    bool     `json:"all,omitempty"`
	// PreviousKeyID is the current key when the request was sent; PreviousKeys every key status listed.
	PreviousKeyID string   `json:"previousKeyID,omitempty"`
	PreviousKeys  []string `json:"previousKeys,omitempty"`
	// Generation is metadata.generation after a disable or enable patch.
	Generation int64 `json:"generation,omitempty"`
	// Unchanged is true when nothing was patched: the ApiKey already is as asked (already disabled, the
	// keys already revoked, a revocation of every key pending); Message says which.
	Unchanged bool   `json:"unchanged,omitempty"`
	Message   string `json:"message"`
}

// Result is keysmith's confirmation of a Request.
type Result struct {
	Request Request `json:"request"`
	// CurrentKeyID is the current key once confirmed ("" when none, as after disable).
	CurrentKeyID string `json:"currentKeyID,omitempty"`
	// Message says what happened, in a sentence or two, with key ids only.
	Message string `json:"message"`
	// Waited is how long the confirmation took.
	Waited time.Duration `json:"waited"`

	// For a revoke or a disable (WaitRevocation, WaitDisable): Enforced is true when the API server, read
	// back, holds a revocation of every key of the request (or spec.disabled): every verifier refuses
	// them from its next request on, with or without keysmith. EnforcedAfter is when that was first
	// seen, EnforcedMessage says so. Recorded is true once keysmith recorded it in status (Message says
	// how); when it had not within the timeout while Enforced holds, Warning says so (NotRecordedWarning)
	// and Message is EnforcedMessage.
	Enforced        bool          `json:"enforced,omitempty"`
	EnforcedAfter   time.Duration `json:"enforcedAfter,omitempty"`
	EnforcedMessage string        `json:"enforcedMessage,omitempty"`
	Recorded        bool          `json:"recorded,omitempty"`
	Warning         string        `json:"warning,omitempty"`
}

// TimeoutError is returned by Wait when keysmith has not confirmed in time. State describes the ApiKey
// as last read (its Ready and Stalled conditions). Enforced (revoke, disable) is whether the API server
// held the revocation at the last read (see WaitRevocation).
type TimeoutError struct {
	Request  Request
	Timeout  time.Duration
	State    string
	Enforced bool
}

func (e *TimeoutError) Error() string {
	msg := fmt.Sprintf("keysmith has not confirmed the %s of ApiKey %s/%s within %s", e.Request.Kind, e.Request.Namespace, e.Request.Name, e.Timeout)
	what := map[Kind]string{KindRevoke: v1alpha1.AnnotationRevoke + " naming the keys", KindDisable: "spec.disabled: true"}[e.Request.Kind]
	switch {
	case what != "" && e.Enforced:
		msg += " (every verifier refuses the keys already: the API server holds " + what + ", which the verifiers read themselves; is keysmith's manager running?)"
	case what != "":
		msg += " (the API server does not hold " + what + " any more: was it changed since?)"
	}
	if e.State != "" {
		msg += "; " + e.State
	}
	return msg
}

// ErrRefused is wrapped by the errors of actions that keysmith would ignore or that make no sense in the
// ApiKey's state (rotating a disabled ApiKey, revoking a key it does not list).
var ErrRefused = errors.New("refused")

func refused(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrRefused}, a...)...)
}

var keyIDPattern = regexp.MustCompile(`^[0-9a-f]{12}$`)

// ParseKeyID returns the key id s names: a 12-hex-digit id, or a whole key (pasted instead of its id),
// which is reduced to its id here so that the key never leaves the machine. isKey reports the latter. The
// error never repeats s.
func ParseKeyID(s string) (id string, isKey bool, err error) {
	s = strings.TrimSpace(s)
	switch {
	case keyIDPattern.MatchString(s):
		return s, false, nil
	case keys.Valid(s):
		return keys.ID(s), true, nil
	default:
		return "", false, errors.New("a key id is 12 lowercase hex digits (kubectl apikey describe NAME lists them)")
	}
}

// ValidateName checks an ApiKey name and namespace before they are sent anywhere (a request's URL lands
// in the API server's audit log); the error never repeats a value that is not a valid name. A key given
// instead (keys.HasKeyShape) is refused as such.
func ValidateName(namespace, name string) error {
	if keys.HasKeyShape(name) || keys.HasKeyShape(namespace) {
		return errors.New("that looks like an API key, not a name: it was not sent anywhere (remove it from your shell history; kubectl apikey revoke NAME --key - reads keys from standard input)")
	}
	if len(validation.IsDNS1123Subdomain(name)) > 0 || len(name) > 63 {
		return errors.New("an ApiKey name is a DNS subdomain of at most 63 characters (lowercase letters, digits, '-' and '.')")
	}
	return ValidateNamespace(namespace)
}

// ValidateNamespace checks a namespace as ValidateName does.
func ValidateNamespace(namespace string) error {
	if keys.HasKeyShape(namespace) {
		return errors.New("that looks like an API key, not a namespace: it was not sent anywhere (remove it from your shell history)")
	}
	if len(validation.IsDNS1123Label(namespace)) > 0 {
		return errors.New("a namespace is a DNS label (at most 63 lowercase letters, digits and '-')")
	}
	return nil
}

func get(ctx context.Context, c client.Client, key types.NamespacedName) (*v1alpha1.ApiKey, error) {
	if err := ValidateName(key.Namespace, key.Name); err != nil {
		return nil, err
	}
	ak := &v1alpha1.ApiKey{}
	if err := c.Get(ctx, key, ak); err != nil {
		return nil, err
	}
	return ak, nil
}

func newRequest(kind Kind, ak *v1alpha1.ApiKey) *Request {
	r := &Request{Kind: kind, Namespace: ak.Namespace, Name: ak.Name, PreviousKeyID: ak.Status.CurrentKeyID}
	for _, k := range ak.Status.Keys {
		r.PreviousKeys = append(r.PreviousKeys, k.ID)
	}
	return r
}

// mergePatch sends a JSON merge patch of obj's metadata.annotations[name] = value (resourceVersion set:
// the patch fails with a conflict when the ApiKey changed since it was read).
func patchAnnotation(ctx context.Context, c client.Client, ak *v1alpha1.ApiKey, name, value string, lock bool) error {
	md := map[string]any{"annotations": map[string]string{name: value}}
	if lock {
		md["resourceVersion"] = ak.ResourceVersion
	}
	b, err := json.Marshal(map[string]any{"metadata": md})
	if err != nil {
		return err
	}
	return c.Patch(ctx, ak, client.RawPatch(types.MergePatchType, b))
}

func notDeleting(ak *v1alpha1.ApiKey) error {
	if ak.DeletionTimestamp != nil {
		return refused("ApiKey %s/%s is being deleted: its keys are being revoked", ak.Namespace, ak.Name)
	}
	return nil
}

// Rotate asks keysmith for a new key now, as `kubectl annotate apikey NAME keysmith.dev/rotate=<time>
// --overwrite` does: a fresh value (the current UTC time, made unique against the previous value), which
// keysmith acts on once; the previous key stays valid for the overlap.
func Rotate(ctx context.Context, c client.Client, key types.NamespacedName) (*Request, error) {
	ak, err := get(ctx, c, key)
	if err != nil {
		return nil, err
	}
	if err := notDeleting(ak); err != nil {
		return nil, err
	}
	if ak.Spec.Disabled {
		return nil, refused("ApiKey %s/%s is disabled: enable it to issue a fresh key", ak.Namespace, ak.Name)
	}
	previous := ak.Annotations[v1alpha1.AnnotationRotate]
	value := Now().UTC().Format(time.RFC3339)
	if value == previous {
		// A second request within the same second still needs a value keysmith has not handled last.
		value += "-2"
	}
	r := newRequest(KindRotate, ak)
	r.Value = value
	if err := patchAnnotation(ctx, c, ak, v1alpha1.AnnotationRotate, value, false); err != nil {
		return nil, err
	}
	r.Message = fmt.Sprintf("rotation requested (%s=%s)", v1alpha1.AnnotationRotate, value)
	return r, nil
}

// Revoke revokes keys at once, as `kubectl annotate apikey NAME keysmith.dev/revoke=<ids>` does: every
// verifier refuses them from its next request on, with or without keysmith running, and keysmith records
// them (reason Manual) and writes a fresh key to the Secret if the current key was among them.
//
// ids are key ids (ParseKeyID); all revokes every key. A value keysmith has not handled yet is kept and
// the new ids appended to it (while no operator runs, the verifiers follow the annotation's current
// value, so replacing it would let the keys it names back in); a handled or malformed one is replaced. A
// pending "all" already covers every key: nothing is appended to it (it would become a new request that
// revokes again every key issued since), and the Request says so. The patch carries the resourceVersion
// read, and is retried on a conflict.
func Revoke(ctx context.Context, c client.Client, key types.NamespacedName, ids []string, all bool) (*Request, error) {
	if all == (len(ids) > 0) {
		return nil, errors.New("revoke takes key ids or all, not both and not neither")
	}
	if len(ids) > rotation.MaxRevokeEntries {
		return nil, fmt.Errorf("at most %d key ids at once", rotation.MaxRevokeEntries)
	}
	for _, id := range ids {
		if !keyIDPattern.MatchString(id) {
			return nil, errors.New("a key id is 12 lowercase hex digits")
		}
	}
	var req *Request
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		ak, err := get(ctx, c, key)
		if err != nil {
			return err
		}
		req, err = revokeOnce(ctx, c, ak, ids, all)
		return err
	})
	if err != nil {
		return nil, err
	}
	return req, nil
}

func revokeOnce(ctx context.Context, c client.Client, ak *v1alpha1.ApiKey, ids []string, all bool) (*Request, error) {
	if err := notDeleting(ak); err != nil {
		return nil, err
	}
	if ak.Spec.Disabled {
		return nil, refused("ApiKey %s/%s is disabled: every key is already revoked", ak.Namespace, ak.Name)
	}
	now := Now()
	r := newRequest(KindRevoke, ak)
	r.All = all
	var wanted []string // ids still valid
	if all {
		for _, k := range ak.Status.Keys {
			if rotation.Valid(k) && now.Before(k.NotAfter.Time) {
				wanted = append(wanted, k.ID)
			}
		}
		r.KeyIDs = wanted
		if len(wanted) == 0 {
			r.Unchanged, r.Message = true, fmt.Sprintf("ApiKey %s/%s has no valid key: nothing to revoke", ak.Namespace, ak.Name)
			return r, nil
		}
	} else {
		var done []string
		for _, id := range ids {
			k := findKey(ak.Status.Keys, id)
			switch {
			case k == nil:
				return nil, refused("ApiKey %s/%s lists no key %s (its keys: %s)", ak.Namespace, ak.Name, id, listIDs(ak.Status.Keys))
			case rotation.Valid(*k) && now.Before(k.NotAfter.Time):
				if !slices.Contains(wanted, id) {
					wanted = append(wanted, id)
				}
			default:
				done = append(done, fmt.Sprintf("%s is already %s", id, strings.ToLower(string(k.State))))
			}
		}
		r.KeyIDs = wanted
		if len(wanted) == 0 {
			r.KeyIDs = ids
			r.Unchanged, r.Message = true, "nothing to revoke: key "+strings.Join(done, ", key ")
			return r, nil
		}
	}

	previous := ak.Annotations[v1alpha1.AnnotationRevoke]
	pending := !rotation.RequestHandled(previous, ak.Status.HandledRevokeRequest)
	pids, pall, problem := rotation.ParseRevokeRequest(previous)
	var value string
	switch {
	case pending && problem == "" && pall:
		r.Value, r.Unchanged = "all", true
		r.Message = fmt.Sprintf("a revocation of every key is already pending (%s names all): it covers %s", v1alpha1.AnnotationRevoke, strings.Join(wanted, ", "))
		return r, nil
	case pending && problem == "":
		// Keep what is pending and add what is not in it yet. The pending entries are written as key ids:
		// a key pasted into the value by hand is replaced by its id, which revokes the same key, so that
		// the value this writes (and prints) never holds a key.
		var merged []string
		for _, id := range pids {
			if !slices.Contains(merged, id) {
				merged = append(merged, id)
			}
		}
		missing := false
		for _, id := range wanted {
			if !all && !slices.Contains(merged, id) {
				merged, missing = append(merged, id), true
			}
		}
		if !missing && !all {
			r.Value, r.Unchanged = strings.Join(merged, ","), true
			r.Message = fmt.Sprintf("the revocation of %s is already pending (%s names %s)", strings.Join(wanted, ", "), v1alpha1.AnnotationRevoke, plural(len(wanted), "it", "them"))
			return r, nil
		}
		if all {
			merged = append(merged, "all")
		}
		value = strings.Join(merged, ",")
		if n := len(merged); n > rotation.MaxRevokeEntries {
			return nil, refused("%s would name %d entries, more than the %d keysmith accepts, while keysmith has not handled the pending ones: wait for it, then revoke again", v1alpha1.AnnotationRevoke, n, rotation.MaxRevokeEntries)
		}
	default:
		// Nothing pending (or a malformed value that revokes nothing): start a new value.
		value = strings.Join(wanted, ",")
		if all {
			value = "all"
		}
		if value == previous {
			// Handled already (the same ids, or "all" handled before keys were issued since): a new value
			// is needed for keysmith to act again. Naming the ids first keeps it a request for them.
			value = strings.Join(wanted, ",") + ",all"
			if !all {
				value = strings.Join(wanted, ",") + "," + wanted[0]
			}
		}
	}
	r.Value = value
	if err := patchAnnotation(ctx, c, ak, v1alpha1.AnnotationRevoke, value, true); err != nil {
		return nil, err
	}
	r.Message = fmt.Sprintf("revocation of key %s requested (%s=%s)", strings.Join(wanted, ", "), v1alpha1.AnnotationRevoke, value)
	return r, nil
}

// Disable sets spec.disabled: true, the kill switch (`kubectl patch apikey NAME --type merge -p
// '{"spec":{"disabled":true}}'`): every key is revoked (reason Disabled), every verifier refuses them as
// soon as it sees the spec, and the Secret's key is emptied.
func Disable(ctx context.Context, c client.Client, key types.NamespacedName) (*Request, error) {
	return setDisabled(ctx, c, key, true)
}

// Enable sets spec.disabled: false; keysmith issues a fresh key (revoked keys never come back).
func Enable(ctx context.Context, c client.Client, key types.NamespacedName) (*Request, error) {
	return setDisabled(ctx, c, key, false)
}

func setDisabled(ctx context.Context, c client.Client, key types.NamespacedName, disabled bool) (*Request, error) {
	ak, err := get(ctx, c, key)
	if err != nil {
		return nil, err
	}
	if err := notDeleting(ak); err != nil {
		return nil, err
	}
	kind := KindEnable
	if disabled {
		kind = KindDisable
	}
	r := newRequest(kind, ak)
	if ak.Spec.Disabled == disabled {
		r.Unchanged, r.Generation = true, ak.Generation
		r.Message = fmt.Sprintf("ApiKey %s/%s is already %sd (spec.disabled is %t)", ak.Namespace, ak.Name, kind, disabled)
		if !disabled {
			// Nothing to wait for: say at once whether keysmith has a current key, and if not, why.
			ready := meta.FindStatusCondition(ak.Status.Conditions, v1alpha1.ConditionReady)
			if cur := current(ak); cur != nil && ready != nil && ready.Status == metav1.ConditionTrue {
				r.Message += fmt.Sprintf("; key %s is current (for Secret %s)", cur.ID, ak.Spec.SecretName)
			} else {
				r.Message += "; it is not Ready: " + describeState(ak)
			}
		}
		return r, nil
	}
	b, _ := json.Marshal(map[string]any{"spec": map[string]bool{"disabled": disabled}})
	if err := c.Patch(ctx, ak, client.RawPatch(types.MergePatchType, b)); err != nil {
		return nil, err
	}
	r.Generation = ak.Generation
	if disabled {
		r.Message = "spec.disabled set to true"
	} else {
		r.Message = "spec.disabled set to false: keysmith issues a fresh key"
	}
	return r, nil
}

func findKey(ks []v1alpha1.IssuedKey, id string) *v1alpha1.IssuedKey {
	for i := range ks {
		if ks[i].ID == id {
			return &ks[i]
		}
	}
	return nil
}

func listIDs(ks []v1alpha1.IssuedKey) string {
	if len(ks) == 0 {
		return "none yet"
	}
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = k.ID + " " + string(k.State)
	}
	return strings.Join(out, ", ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// IsRefused reports whether err is an action refused before anything was sent.
func IsRefused(err error) bool { return errors.Is(err, ErrRefused) }

// IsAPIError reports whether err came from the API server (Forbidden, NotFound, ...), to be shown as
// kubectl shows them.
func IsAPIError(err error) bool {
	var s apierrors.APIStatus
	return errors.As(err, &s)
}
