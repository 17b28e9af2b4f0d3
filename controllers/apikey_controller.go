// Package controllers holds keysmith's reconcilers.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/keys"
	"github.com/keysmith-dev/keysmith/internal/metrics"
	"github.com/keysmith-dev/keysmith/internal/rotation"
)

// ControllerName names the ApiKey controller in logs, metrics and events.
const ControllerName = "apikey"

// conflictRecheck is how often an ApiKey stalled on a foreign Secret looks again. Foreign Secrets are not
// watched (keysmith caches only its own), so this is the only way to notice the conflict going away.
const conflictRecheck = 5 * time.Minute

// staleRecheck is how soon a reconcile that read keysmith's own superseded version looks again.
const staleRecheck = 200 * time.Millisecond

// ApiKeyReconciler issues, rotates and revokes the keys of ApiKeys and writes them into Secrets.
// It is the only writer of ApiKey status and of keysmith's Secrets.
type ApiKeyReconciler struct {
	Client client.Client
	// APIReader reads from the API server directly. It confirms what the label-filtered Secret cache
	// cannot see (a foreign Secret) and re-reads a Secret before acting on a difference, since the cache
	// may not yet show keysmith's own last write.
	APIReader client.Reader
	Scheme    *runtime.Scheme
	Recorder  recorder.EventRecorder
	Clock     clock.PassiveClock
	// KeyPrefix starts every issued key (for example "ks").
	KeyPrefix string
	// RequirePolicy denies by default: an ApiKey gets no key unless an ApiKeyPolicy with allowedScopes
	// selects its namespace.
	RequirePolicy bool

	superseded superseded
	ownSecrets ownWrites
	// refusedAt remembers when the API server last refused an ApiKey's Secret, so that issuing is retried
	// every conflictRecheck rather than on every watch event (each attempt records a new key).
	refusedAt sync.Map // types.UID -> refusal
}

type refusal struct {
	at         time.Time
	generation int64
}

// refusalBackoff returns how long to wait before issuing again after the Secret was refused; a changed
// spec is tried at once.
func (r *ApiKeyReconciler) refusalBackoff(ak *v1alpha1.ApiKey, now time.Time) time.Duration {
	v, ok := r.refusedAt.Load(ak.UID)
	if !ok || v.(refusal).generation != ak.Generation {
		return 0
	}
	return conflictRecheck - now.Sub(v.(refusal).at)
}

// +kubebuilder:rbac:groups=keysmith.dev,resources=apikeys,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=keysmith.dev,resources=apikeys/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=keysmith.dev,resources=apikeys/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=keysmith.dev,resources=apikeypolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch

// Reconcile moves one ApiKey one step towards its declared state. It decides with rotation.Decide and
// writes in the order that keeps crashes safe (docs/design.md): status first, then the Secret, then status.
func (r *ApiKeyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	ak := &v1alpha1.ApiKey{}
	if err := r.Client.Get(ctx, req.NamespacedName, ak); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if r.superseded.stale(ak.UID, ak.ResourceVersion) {
		// Our own newer write is on its way through the watch; status-only updates do not trigger a
		// reconcile, so look again in a moment rather than wait for an event.
		return ctrl.Result{RequeueAfter: staleRecheck}, nil
	}
	res, err := r.reconcile(ctx, ak)
	if apierrors.IsConflict(err) {
		// Someone else changed the ApiKey or Secret since it was read. Not an error: look again shortly,
		// when the cache has the newer version.
		log.FromContext(ctx).V(1).Info("conflict, retrying against the newer version", "reason", err.Error())
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	return res, err
}

// reconcile is Reconcile for an ApiKey read from the cache.
func (r *ApiKeyReconciler) reconcile(ctx context.Context, ak *v1alpha1.ApiKey) (ctrl.Result, error) {
	if !ak.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.reconcileDelete(ctx, ak)
	}
	if !controllerutil.ContainsFinalizer(ak, v1alpha1.Finalizer) {
		// The finalizer comes before the first key, so that no key can outlive its ApiKey.
		if err := r.addFinalizer(ctx, ak); err != nil {
			return ctrl.Result{}, err
		}
	}
	now := r.Clock.Now()

	pol, err := r.evaluatePolicies(ctx, ak)
	if err != nil {
		return ctrl.Result{}, err
	}
	settings, err := validate(ak, pol)
	if err != nil {
		// Nothing is issued for a spec that cannot work, but revocations are recorded, and existing keys
		// keep what the policies grant of the spec's well-formed scopes (an ApiKey accepted by an earlier
		// release can fail a rule added since).
		st, requests := requested(ak, now)
		st.Keys = withGrant(st.Keys, pol.Grant(wellFormedScopes(ak.Spec.Scopes)))
		if err := r.stallWith(ctx, ak, st, now, v1alpha1.ReasonInvalidSpec, v1alpha1.EventInvalidSpec, err.Error()); err != nil {
			return ctrl.Result{}, err
		}
		return ctrl.Result{}, r.afterRequests(ctx, ak, requests)
	}
	if len(pol.Violations) > 0 {
		return ctrl.Result{}, r.enforce(ctx, ak, now, pol)
	}
	secret, state, err := r.observeSecret(ctx, ak)
	if err != nil {
		return ctrl.Result{}, err
	}
	if state == rotation.SecretForeign {
		return r.secretConflict(ctx, ak, now)
	}

	plan := rotation.Decide(rotation.Input{
		Now: now, Settings: settings.lifecycle, Keys: ak.Status.Keys, CurrentKeyID: ak.Status.CurrentKeyID,
		RotateRequest: ak.Annotations[v1alpha1.AnnotationRotate], HandledRotateRequest: ak.Status.HandledRotateRequest,
		RevokeRequest: ak.Annotations[v1alpha1.AnnotationRevoke], HandledRevokeRequest: ak.Status.HandledRevokeRequest,
		Disabled: ak.Spec.Disabled, Secret: state,
	})
	if wait := r.refusalBackoff(ak, now); wait > 0 && plan.Issue != rotation.TriggerNone {
		// No new key until the API server accepts the Secret again; revocations are recorded meanwhile.
		st, requests := requested(ak, now)
		if err := r.writeStatus(ctx, ak, *st); err != nil {
			return ctrl.Result{}, err
		}
		r.recordTransitions(ak, requests)
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	wasExpiring := meta.IsStatusConditionTrue(ak.Status.Conditions, v1alpha1.ConditionExpiringSoon)
	switch {
	case plan.Issue != rotation.TriggerNone:
		if refused, err := r.issue(ctx, ak, secret, settings, plan); errors.Is(err, errSecretForeign) {
			return r.secretConflict(ctx, ak, now)
		} else if err != nil {
			return ctrl.Result{}, err
		} else if refused != nil {
			r.refusedAt.Store(ak.UID, refusal{at: now, generation: ak.Generation})
			msg := fmt.Sprintf("The API server refused Secret %q (%s); no further key is issued until it accepts it. Check admission policies, quotas and secretTemplate.", ak.Spec.SecretName, refused)
			return ctrl.Result{RequeueAfter: conflictRecheck}, r.stall(ctx, ak, now, v1alpha1.ReasonSecretWriteFailed, v1alpha1.EventSecretWriteFailed, msg)
		}
	case state == rotation.SecretCurrent:
		if err := r.repairSecretMetadata(ctx, ak, secret); err != nil {
			return ctrl.Result{}, err
		}
	}
	if plan.Issue == rotation.TriggerNone {
		if err := r.writeStatus(ctx, ak, desiredStatus(ak, settings, plan, nil)); err != nil {
			return ctrl.Result{}, err
		}
	}
	// A key issued for less than the warning is expiring soon from the start.
	if c := meta.FindStatusCondition(ak.Status.Conditions, v1alpha1.ConditionExpiringSoon); plan.ExpiringSoon && !wasExpiring && c != nil {
		r.Recorder.Eventf(ak, nil, corev1.EventTypeWarning, v1alpha1.EventExpiringSoon, "Warn", "%s", c.Message)
	}
	if plan.Inactive == v1alpha1.ReasonDisabled && state != rotation.SecretMissing {
		// Revocation is recorded (the verifier refuses the keys); now take the key out of the Secret.
		if err := r.emptySecret(ctx, secret); err != nil {
			return ctrl.Result{}, err
		}
	}
	r.recordTransitions(ak, plan)
	return requeueAt(plan.NextWake, now), nil
}

// SetupWithManager registers the controller. Secrets are watched through the manager's label-selected
// cache (see cmd/keysmith), so foreign Secrets are never cached.
func (r *ApiKeyReconciler) SetupWithManager(mgr ctrl.Manager, opts controller.Options) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named(ControllerName).
		// Spec, labels, annotations and deletion matter; status writes (keysmith's own, the verifiers'
		// lastUsedAt) do not, and skipping them saves a reconcile per write.
		For(&v1alpha1.ApiKey{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{},
			predicate.LabelChangedPredicate{}, deletionStarted{}, ungranted{}))).
		Owns(&corev1.Secret{}, builder.WithPredicates(predicate.Funcs{
			CreateFunc: func(e event.CreateEvent) bool {
				return !r.ownSecrets.mine(client.ObjectKeyFromObject(e.Object), e.Object.GetResourceVersion())
			},
			UpdateFunc: func(e event.UpdateEvent) bool {
				return !r.ownSecrets.mine(client.ObjectKeyFromObject(e.ObjectNew), e.ObjectNew.GetResourceVersion())
			},
		})).
		// A policy or a namespace's labels changing re-evaluates the ApiKeys concerned; no periodic sweep.
		Watches(&v1alpha1.ApiKeyPolicy{}, handler.EnqueueRequestsFromMapFunc(r.apiKeysForPolicy)).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.apiKeysInNamespace),
			builder.OnlyMetadata, builder.WithPredicates(predicate.LabelChangedPredicate{})).
		WithOptions(opts).
		Complete(r)
}

// issue generates a key and records and delivers it. A rotation (or any key after the first) goes to
// status first, so that the key is Active before anyone can read it, then to the Secret. A first key goes
// to the Secret first, then to status with Ready in the same write: nothing can accept it before status
// lists it, so a crash in between leaves a Secret whose key the verifier refuses and that the next
// reconcile replaces (status still lists no key), and Ready never precedes the Secret. When the API server
// refuses the Secret for a reason a retry cannot fix, it returns that reason instead of an error.
func (r *ApiKeyReconciler) issue(ctx context.Context, ak *v1alpha1.ApiKey, secret *corev1.Secret, s effective, plan rotation.Plan) (refused error, err error) {
	key, err := keys.Generate(r.KeyPrefix, string(s.settings.Environment))
	if err != nil {
		return nil, fmt.Errorf("generating a key: %w", err)
	}
	plaintext := key.Plaintext()
	digest := keys.Sum(plaintext)
	issued := plan.WithNewKey(digest.ID(), digest.String())

	final := desiredStatus(ak, s, plan, issued)
	first := len(ak.Status.Keys) == 0
	if !first {
		recorded := final.DeepCopy()
		if !isReady(ak) {
			setIssuing(recorded, ak.Generation, plan.Now)
		}
		if err := r.writeStatus(ctx, ak, *recorded); err != nil {
			return nil, err
		}
	}
	if err := r.writeSecret(ctx, ak, secret, plaintext, issued[0]); err != nil {
		if first && secret.ResourceVersion == "" && apierrors.IsAlreadyExists(err) {
			return nil, r.secretTaken(ctx, ak)
		}
		if permanent(err) {
			return err, nil
		}
		return nil, err
	}
	if first {
		if err := r.writeStatus(ctx, ak, final); err != nil {
			return nil, err
		}
	}
	// The key is delivered (and, for a first key, recorded): say so now.
	r.recordIssue(ak, plan, issued[0].ID)
	log.FromContext(ctx).Info("issued key", "keyID", issued[0].ID, "trigger", plan.Issue)
	// Ready again, for a key issued while the ApiKey was not Ready; nothing to write otherwise, a first
	// key's status included (writeStatus skips an unchanged status).
	return nil, r.writeStatus(ctx, ak, final)
}

// errSecretForeign: the Secret's name is held by a Secret that keysmith did not create for this ApiKey.
var errSecretForeign = errors.New("the Secret exists and was not created by keysmith for this ApiKey")

// secretTaken explains a first key's create meeting a Secret the label-filtered cache did not show: a
// foreign Secret (errSecretForeign), or keysmith's own that the cache has not caught up with (a conflict,
// looked at again shortly).
func (r *ApiKeyReconciler) secretTaken(ctx context.Context, ak *v1alpha1.ApiKey) error {
	name := types.NamespacedName{Namespace: ak.Namespace, Name: ak.Spec.SecretName}
	state, err := r.classify(ctx, r.APIReader, name, &corev1.Secret{}, ak)
	switch {
	case err != nil:
		return err
	case state == rotation.SecretForeign:
		return errSecretForeign
	}
	return apierrors.NewConflict(corev1.Resource("secrets"), name.Name, errors.New("the Secret is not in the cache yet"))
}

// secretConflict reports a foreign Secret holding the name, and looks again later.
func (r *ApiKeyReconciler) secretConflict(ctx context.Context, ak *v1alpha1.ApiKey, now time.Time) (ctrl.Result, error) {
	msg := fmt.Sprintf("Secret %q exists and was not created by keysmith for this ApiKey; keysmith never adopts or overwrites it. Delete it or choose another spec.secretName.", ak.Spec.SecretName)
	st, requests := requested(ak, now)
	if err := r.stallWith(ctx, ak, st, now, v1alpha1.ReasonSecretConflict, v1alpha1.EventSecretConflict, msg); err != nil {
		return ctrl.Result{}, err
	}
	r.recordTransitions(ak, requests) // the foreign Secret is never touched
	return ctrl.Result{RequeueAfter: conflictRecheck}, nil
}

// requested returns ak's status with what spec.disabled and keysmith.dev/revoke ask for applied, for the
// paths that take no other lifecycle step (invalid spec, policy violation, foreign or refused Secret):
// a revocation is recorded whatever else is wrong, so it holds once the annotation is gone or disabled
// is set back.
func requested(ak *v1alpha1.ApiKey, now time.Time) (*v1alpha1.ApiKeyStatus, rotation.Plan) {
	plan := rotation.Requests(rotation.Input{
		Now: now, Keys: ak.Status.Keys, CurrentKeyID: ak.Status.CurrentKeyID,
		RotateRequest: ak.Annotations[v1alpha1.AnnotationRotate], HandledRotateRequest: ak.Status.HandledRotateRequest,
		RevokeRequest: ak.Annotations[v1alpha1.AnnotationRevoke], HandledRevokeRequest: ak.Status.HandledRevokeRequest,
		Disabled: ak.Spec.Disabled,
	})
	st := ak.Status.DeepCopy()
	st.Keys, st.HandledRotateRequest, st.HandledRevokeRequest = plan.Keys, plan.HandledRotateRequest, plan.HandledRevokeRequest
	return st, plan
}

// afterRequests follows a status write of requested: one event per revocation, and, when disabled, the
// key taken out of keysmith's Secret.
func (r *ApiKeyReconciler) afterRequests(ctx context.Context, ak *v1alpha1.ApiKey, requests rotation.Plan) error {
	r.recordTransitions(ak, requests)
	if requests.Inactive != v1alpha1.ReasonDisabled {
		return nil
	}
	return r.emptyOwnSecret(ctx, ak)
}

// emptyOwnSecret takes the key out of the ApiKey's Secret, when there is one and it is keysmith's.
func (r *ApiKeyReconciler) emptyOwnSecret(ctx context.Context, ak *v1alpha1.ApiKey) error {
	secret, state, err := r.observeSecret(ctx, ak)
	if err != nil || state == rotation.SecretMissing || state == rotation.SecretForeign {
		return err
	}
	return r.emptySecret(ctx, secret)
}

// permanent reports API errors that repeating the same write cannot fix.
func permanent(err error) bool {
	return apierrors.IsInvalid(err) || apierrors.IsForbidden(err) || apierrors.IsBadRequest(err) || apierrors.IsRequestEntityTooLargeError(err)
}

// reconcileDelete revokes every key, deletes the Secret and then releases the ApiKey. A deletion that
// orphans dependents (kubectl delete --cascade=orphan) keeps the Secret: the garbage collector removes its
// owner reference, and the verifiers refuse its keys because their ApiKey is gone.
func (r *ApiKeyReconciler) reconcileDelete(ctx context.Context, ak *v1alpha1.ApiKey) error {
	if !controllerutil.ContainsFinalizer(ak, v1alpha1.Finalizer) {
		return nil
	}
	now := r.Clock.Now()
	st, revoked := revokeAll(ak, now, v1alpha1.RevokedDeleted)
	setNotReady(&st, ak.Generation, now, v1alpha1.ReasonDeleting, "The ApiKey is being deleted; its keys are revoked")
	if err := r.writeStatus(ctx, ak, st); err != nil {
		return err
	}
	if len(revoked) > 0 {
		metrics.Revocations.WithLabelValues(v1alpha1.RevokedDeleted).Add(float64(len(revoked)))
		r.Recorder.Eventf(ak, nil, corev1.EventTypeNormal, v1alpha1.EventKeyRevoked, "Revoke",
			"Revoked %d key(s) because the ApiKey is being deleted: %v", len(revoked), revoked)
	}
	if !controllerutil.ContainsFinalizer(ak, metav1.FinalizerOrphanDependents) {
		if err := r.deleteSecret(ctx, ak); err != nil {
			return err
		}
	}
	return r.removeFinalizer(ctx, ak)
}

func requeueAt(wake, now time.Time) ctrl.Result {
	if wake.IsZero() {
		return ctrl.Result{}
	}
	return ctrl.Result{RequeueAfter: max(wake.Sub(now), time.Second)}
}

// stall records a user error: Ready=False, Stalled=True and one Warning event on the transition.
// It is not returned as an error, so there is no retry storm; a spec change wakes the ApiKey again.
func (r *ApiKeyReconciler) stall(ctx context.Context, ak *v1alpha1.ApiKey, now time.Time, reason, event, msg string) error {
	return r.stallWith(ctx, ak, ak.Status.DeepCopy(), now, reason, event, msg)
}

// stallWith is stall on top of st, a status with other changes (the grants of a policy Block).
func (r *ApiKeyReconciler) stallWith(ctx context.Context, ak *v1alpha1.ApiKey, st *v1alpha1.ApiKeyStatus, now time.Time, reason, event, msg string) error {
	wasStalled := conditionIs(ak, v1alpha1.ConditionStalled, reason)
	setStalled(st, ak.Generation, now, reason, msg)
	if err := r.writeStatus(ctx, ak, *st); err != nil {
		return err
	}
	if !wasStalled {
		r.Recorder.Eventf(ak, nil, corev1.EventTypeWarning, event, "Reconcile", "%s", msg)
	}
	return nil
}

// ungranted passes a status update that leaves a valid key without a grant while the spec lists scopes:
// a writer that does not know status.keys[].scopes (a replica of an earlier release during a rolling
// upgrade, its last-used flush) dropped it, and only a reconcile records it again. When the grant is
// empty on purpose (a policy forbids every scope), the reconcile writes nothing, so this cannot loop.
type ungranted struct{ predicate.Funcs }

func (ungranted) Update(e event.UpdateEvent) bool {
	ak, ok := e.ObjectNew.(*v1alpha1.ApiKey)
	if !ok || len(ak.Spec.Scopes) == 0 {
		return false
	}
	for _, k := range ak.Status.Keys {
		if rotation.Valid(k) && len(k.Scopes) == 0 {
			return true
		}
	}
	return false
}

// deletionStarted passes the update that sets deletionTimestamp.
type deletionStarted struct{ predicate.Funcs }

func (deletionStarted) Update(e event.UpdateEvent) bool {
	return e.ObjectOld != nil && e.ObjectNew != nil &&
		e.ObjectOld.GetDeletionTimestamp().IsZero() && !e.ObjectNew.GetDeletionTimestamp().IsZero()
}
