package actions

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/rotation"
)

// fastPoll polls every 5 ms and sets the clock to t0, the time of fixture's keys.
func fastPoll(t *testing.T) {
	t.Helper()
	old := PollInterval
	PollInterval = 5 * time.Millisecond
	Now = func() time.Time { return t0 }
	t.Cleanup(func() { PollInterval, Now = old, time.Now })
}

// record plays keysmith: it records the pending keysmith.dev/revoke value (the keys it names Revoked,
// reason Manual) or spec.disabled (every key Revoked, reason Disabled, Ready reason Disabled for the
// generation), as the operator does.
func record(t *testing.T, c client.Client) {
	t.Helper()
	ak := &v1alpha1.ApiKey{}
	if err := c.Get(ctx, name, ak); err != nil {
		t.Error(err)
		return
	}
	now := Now()
	if ak.Spec.Disabled {
		rotation.RevokeAll(ak.Status.Keys, now, v1alpha1.RevokedDisabled)
		ak.Status.ObservedGeneration = ak.Generation
		ak.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonDisabled,
			Message: "disabled", ObservedGeneration: ak.Generation, LastTransitionTime: metav1.NewTime(now)}}
	} else {
		v := ak.Annotations[v1alpha1.AnnotationRevoke]
		ids, all, _ := rotation.ParseRevokeRequest(v)
		for i := range ak.Status.Keys {
			k := &ak.Status.Keys[i]
			if rotation.Valid(*k) && (all || contains(ids, k.ID)) {
				rotation.Revoke(k, now, v1alpha1.RevokedManual)
			}
		}
		ak.Status.HandledRevokeRequest = rotation.RequestDigest(v)
	}
	if err := c.Status().Update(ctx, ak); err != nil {
		t.Error(err)
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// With no operator running, a revocation is in force as soon as the API server holds the annotation:
// WaitRevocation says so at once (step a) and, when keysmith never records it, succeeds with a warning
// instead of failing.
func TestWaitRevocationWithoutOperator(t *testing.T) {
	fastPoll(t)
	c := fixture(nil, "")
	r, err := Revoke(ctx, c, name, []string{"bbbbbbbbbbbb"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(r.Message, "refuses") {
		t.Errorf("the request claims the verifiers refuse the key before anything confirmed it: %s", r.Message)
	}
	var steps []Result
	res, err := WaitRevocation(ctx, c, r, 100*time.Millisecond, func(s Result) { steps = append(steps, s) })
	if err != nil {
		t.Fatalf("WaitRevocation: %v", err)
	}
	if !res.Enforced || res.Recorded || !strings.HasPrefix(res.Warning, NotRecordedWarning) {
		t.Errorf("result %+v: want enforced, not recorded, with the warning", res)
	}
	want := "every verifier refuses key bbbbbbbbbbbb from its next request on (the API server holds keysmith.dev/revoke naming it)"
	if res.Message != want || res.EnforcedMessage != want {
		t.Errorf("message %q, want %q", res.Message, want)
	}
	if len(steps) != 1 || steps[0].Message != want || !steps[0].Enforced {
		t.Errorf("onEnforced called %d times: %+v", len(steps), steps)
	}
	if !strings.Contains(res.Warning, "status does not list key bbbbbbbbbbbb as revoked") {
		t.Errorf("warning %q", res.Warning)
	}

	// The same through Wait, as the plugin and the dashboard call it.
	if res, err := Wait(ctx, c, r, 50*time.Millisecond); err != nil || !res.Enforced || res.Warning == "" {
		t.Errorf("Wait: %v %+v", err, res)
	}
	// WaitRevoked is keysmith's record only: it times out, and says the keys are refused already.
	_, err = WaitRevoked(ctx, c, r, 50*time.Millisecond)
	var te *TimeoutError
	if !errors.As(err, &te) || !te.Enforced || !strings.Contains(err.Error(), "every verifier refuses the keys already: the API server holds keysmith.dev/revoke naming the keys") {
		t.Errorf("WaitRevoked: %v", err)
	}
}

// With keysmith recording it, both steps are confirmed: the API server's revocation first, then the
// record with its message.
func TestWaitRevocationRecorded(t *testing.T) {
	fastPoll(t)
	c := fixture(nil, "")
	r, err := Revoke(ctx, c, name, []string{"aaaaaaaaaaaa", "bbbbbbbbbbbb"}, false)
	if err != nil {
		t.Fatal(err)
	}
	enforced := make(chan Result, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-enforced
		record(t, c)
	}()
	res, err := WaitRevocation(ctx, c, r, 5*time.Second, func(s Result) { enforced <- s })
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if !res.Enforced || !res.Recorded || res.Warning != "" {
		t.Errorf("result %+v", res)
	}
	if !strings.HasPrefix(res.Message, "revoked: key aaaaaaaaaaaa revoked (Manual), key bbbbbbbbbbbb revoked (Manual)") {
		t.Errorf("message %q", res.Message)
	}
	// Once recorded, status itself refuses them (the handled annotation no longer does).
	if res.EnforcedMessage != "every verifier refuses key aaaaaaaaaaaa, bbbbbbbbbbbb from its next request on (the API server holds status listing them as no longer valid)" {
		t.Errorf("enforced message %q", res.EnforcedMessage)
	}
}

// A revocation the API server no longer holds (someone replaced the pending value before keysmith
// recorded it, which lets the key back in) is no success: it times out, and says why.
func TestWaitRevocationNotHeld(t *testing.T) {
	fastPoll(t)
	c := fixture(nil, "")
	r, err := Revoke(ctx, c, name, []string{"bbbbbbbbbbbb"}, false)
	if err != nil {
		t.Fatal(err)
	}
	ak := &v1alpha1.ApiKey{}
	if err := c.Get(ctx, name, ak); err != nil {
		t.Fatal(err)
	}
	if err := patchAnnotation(ctx, c, ak, v1alpha1.AnnotationRevoke, "aaaaaaaaaaaa", false); err != nil {
		t.Fatal(err)
	}
	called := false
	_, err = WaitRevocation(ctx, c, r, 50*time.Millisecond, func(Result) { called = true })
	var te *TimeoutError
	if !errors.As(err, &te) || te.Enforced {
		t.Fatalf("err = %v, want a timeout without enforcement", err)
	}
	if called || !strings.Contains(err.Error(), "the API server does not hold keysmith.dev/revoke naming the keys any more") {
		t.Errorf("onEnforced called %v; %v", called, err)
	}
	// Covered by "all", by spec.disabled, or by a deletion: enforced.
	for _, mut := range []func(*v1alpha1.ApiKey){
		func(a *v1alpha1.ApiKey) { a.Annotations = map[string]string{v1alpha1.AnnotationRevoke: "all"} },
		func(a *v1alpha1.ApiKey) { a.Spec.Disabled = true },
		func(a *v1alpha1.ApiKey) { now := metav1.Now(); a.DeletionTimestamp = &now },
	} {
		a := ak.DeepCopy()
		a.Annotations = nil
		mut(a)
		if Enforced(a, r) == "" {
			t.Errorf("not enforced: disabled %v, annotations %v, deleting %v", a.Spec.Disabled, a.Annotations, a.DeletionTimestamp != nil)
		}
	}
	// A handled value no longer refuses a key status still lists as valid.
	a := ak.DeepCopy()
	a.Annotations = map[string]string{v1alpha1.AnnotationRevoke: "bbbbbbbbbbbb"}
	a.Status.HandledRevokeRequest = rotation.RequestDigest("bbbbbbbbbbbb")
	if msg := Enforced(a, r); msg != "" {
		t.Errorf("a handled value taken as in force: %s", msg)
	}
}

// Disable: spec.disabled stored is enough for every verifier; keysmith's record follows.
func TestWaitDisable(t *testing.T) {
	fastPoll(t)
	c := fixture(nil, "")
	r, err := Disable(ctx, c, name)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(r.Message, "refuses") {
		t.Errorf("the request claims what is not confirmed yet: %s", r.Message)
	}
	res, err := WaitDisable(ctx, c, r, 50*time.Millisecond, nil)
	if err != nil || !res.Enforced || res.Recorded || !strings.HasPrefix(res.Warning, NotRecordedWarning) {
		t.Fatalf("without operator: %v %+v", err, res)
	}
	if res.Message != "every verifier refuses every key of this ApiKey from its next request on (the API server holds spec.disabled: true)" {
		t.Errorf("message %q", res.Message)
	}
	record(t, c)
	res, err = WaitDisable(ctx, c, r, time.Second, nil)
	if err != nil || !res.Recorded || !strings.HasPrefix(res.Message, "disabled: 2 keys revoked (Disabled)") {
		t.Fatalf("recorded: %v %+v", err, res)
	}
}

// The API server's errors end the wait at once.
func TestWaitRevocationNotFound(t *testing.T) {
	fastPoll(t)
	c := fixture(nil, "")
	r := &Request{Kind: KindRevoke, Namespace: "payments", Name: "gone", KeyIDs: []string{"aaaaaaaaaaaa"}}
	start := time.Now()
	if _, err := WaitRevocation(ctx, c, r, 5*time.Second, nil); err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("err = %v after %s", err, time.Since(start))
	}
}

// enable on an ApiKey that is enabled already asks nothing of keysmith: the request says at once whether
// it has a current key, and why not (the plugin and the dashboard return with it, without waiting).
func TestEnableUnchangedSaysWhy(t *testing.T) {
	fastPoll(t)
	stalled := func(a *v1alpha1.ApiKey) {
		a.Status.CurrentKeyID, a.Status.Keys = "", nil
		a.Status.Conditions = []metav1.Condition{
			{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonSecretConflict, Message: "Secret conflict", LastTransitionTime: metav1.Now()},
			{Type: v1alpha1.ConditionStalled, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonSecretConflict, Message: `Secret "billing-api-key" exists and was not created by keysmith`, LastTransitionTime: metav1.Now()},
		}
	}
	r, err := Enable(ctx, fixture(nil, "", stalled), name)
	if err != nil || !r.Unchanged {
		t.Fatalf("%v %+v", err, r)
	}
	want := `ApiKey payments/billing-api is already enabled (spec.disabled is false); it is not Ready: Stalled (SecretConflict): Secret "billing-api-key" exists and was not created by keysmith`
	if r.Message != want {
		t.Errorf("message %q\nwant    %q", r.Message, want)
	}
	ready := func(a *v1alpha1.ApiKey) {
		a.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonKeyActive, LastTransitionTime: metav1.Now()}}
	}
	if r, err := Enable(ctx, fixture(nil, "", ready), name); err != nil || r.Message != "ApiKey payments/billing-api is already enabled (spec.disabled is false); key aaaaaaaaaaaa is current (for Secret billing-api-key)" {
		t.Errorf("%v %q", err, r.Message)
	}
}
