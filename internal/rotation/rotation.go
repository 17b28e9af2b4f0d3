// Package rotation holds keysmith's key lifecycle decisions as pure functions. Plan looks at the time, the
// effective settings and what status and the Secret say, and returns what to do and when to look again.
// It never reads the clock and never talks to the API server.
package rotation

import (
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
)

// Settings are the effective lifecycle settings of an ApiKey (spec plus defaults).
type Settings struct {
	// Lifetime of each key.
	Lifetime time.Duration
	// Period between rotations; 0 disables scheduled rotation.
	Period time.Duration
	// Overlap during which the previous key stays valid after a rotation (scheduled or not).
	Overlap time.Duration
	// UnusedAfter revokes keys not used for this long; 0 disables it.
	UnusedAfter time.Duration
	// ExpiryWarning is how long before notAfter a key that will not be rotated in time is reported.
	ExpiryWarning time.Duration
}

// SecretState is what the Secret holds, relative to status.
type SecretState int

const (
	// SecretCurrent: the Secret holds the current key.
	SecretCurrent SecretState = iota
	// SecretMissing: there is no Secret.
	SecretMissing
	// SecretTampered: the Secret holds something that is not the current key (edited, emptied).
	SecretTampered
	// SecretForeign: a Secret of that name exists and keysmith did not create it.
	SecretForeign
)

// Input is everything Plan looks at.
type Input struct {
	Now      time.Time
	Settings Settings
	// Keys is status.keys, newest first.
	Keys []v1alpha1.IssuedKey
	// CurrentKeyID is status.currentKeyID.
	CurrentKeyID string
	// RotateRequest is the value of the keysmith.dev/rotate annotation; HandledRotateRequest what status
	// records of the last one acted on (its RequestDigest).
	RotateRequest        string
	HandledRotateRequest string
	// RevokeRequest is the value of the keysmith.dev/revoke annotation ("all" or key ids, comma
	// separated); HandledRevokeRequest what status records of the last one acted on.
	RevokeRequest        string
	HandledRevokeRequest string
	// Disabled is spec.disabled.
	Disabled bool
	Secret   SecretState
}

// Trigger says why a new key is issued.
type Trigger string

const (
	TriggerNone      Trigger = ""
	TriggerInitial   Trigger = "Initial"
	TriggerScheduled Trigger = "Scheduled"
	TriggerManual    Trigger = "Manual"
	// TriggerSecretLost: the Secret was deleted; the previous key is handled as in a rotation.
	TriggerSecretLost Trigger = "SecretLost"
	// TriggerSecretTampered: the Secret no longer holds the current key (edited, or left behind by a
	// crash between recording a key and writing it); handled as in a rotation.
	TriggerSecretTampered Trigger = "SecretTampered"
	// TriggerRevoked: the current key was revoked on request; a fresh one replaces it at once.
	TriggerRevoked Trigger = "Revoked"
	// TriggerEnabled: spec.disabled was turned off.
	TriggerEnabled Trigger = "Enabled"
)

// Transition is one key changing state, reported so that the caller can emit one event per transition.
type Transition struct {
	ID       string
	From, To v1alpha1.KeyState
}

// Plan is the outcome of a decision.
type Plan struct {
	// Now is the instant the plan was made for, truncated to whole seconds (status stores seconds).
	Now time.Time
	// Issue is why a new key must be issued, or TriggerNone.
	Issue Trigger
	// Keys is status.keys after the decision, without the new key (see WithNewKey).
	Keys []v1alpha1.IssuedKey
	// CurrentKeyID is status.currentKeyID after the decision, unless a new key is issued.
	CurrentKeyID string
	// Transitions lists the state changes of existing keys.
	Transitions []Transition
	// HandledRotateRequest and HandledRevokeRequest are the values to record in status: digests of the
	// annotation values handled (RequestDigest), never the values.
	HandledRotateRequest string
	HandledRevokeRequest string
	// RevokeProblem describes a keysmith.dev/revoke value that could not be acted on (keys untouched),
	// or ids it named that are not listed.
	RevokeProblem string
	// Inactive is why there is no valid current key and none will be issued: v1alpha1.ReasonExpired,
	// ReasonUnused or ReasonDisabled; empty otherwise.
	Inactive string
	// ExpiringSoon is true when the current key expires within the expiry warning and no rotation will
	// replace it before.
	ExpiringSoon bool
	// NextRotation is when the current key (or the new one) rotates; zero without rotation.
	NextRotation time.Time
	// NextWake is the earliest instant after Now at which Plan would decide something new; zero for never.
	NextWake time.Time

	settings Settings
}

// Decide plans the lifecycle step for in. It is a pure function of its input.
func Decide(in Input) Plan {
	p := newPlan(in)
	now := p.Now

	// 1. Time: keys whose notAfter has passed are expired. The verifier already refuses them; this records it.
	for i := range p.Keys {
		k := &p.Keys[i]
		if Valid(*k) && !now.Before(k.NotAfter.Time) {
			p.transition(k, v1alpha1.KeyExpired)
		}
	}

	// 2. Revocations: the kill switch, revoke requests, unused keys.
	if p.requests(in) {
		p.Keys = trim(p.Keys, v1alpha1.MaxKeysInStatus)
		return p
	}
	if in.Settings.UnusedAfter > 0 {
		for i := range p.Keys {
			if !now.Before(lastUse(p.Keys[i]).Add(in.Settings.UnusedAfter)) {
				p.revoke(&p.Keys[i], v1alpha1.RevokedUnused)
			}
		}
	}
	current := p.current()
	previous := p.find(in.CurrentKeyID)

	// 3. Whether a new key is due, most specific reason first.
	manual := !RequestHandled(in.RotateRequest, in.HandledRotateRequest)
	switch {
	case in.Secret == SecretForeign:
		// Never touch a Secret keysmith did not create: nothing is issued until the conflict is resolved.
	case len(in.Keys) == 0:
		p.Issue = TriggerInitial
	case current != nil && in.Secret == SecretMissing:
		p.Issue = TriggerSecretLost
	case current != nil && in.Secret == SecretTampered:
		p.Issue = TriggerSecretTampered
	case manual:
		p.Issue = TriggerManual
	case in.Settings.Period > 0 && current != nil && !now.Before(current.IssuedAt.Add(in.Settings.Period)):
		p.Issue = TriggerScheduled
	case current != nil:
	case previous != nil && previous.State == v1alpha1.KeyRevoked && previous.Reason == v1alpha1.RevokedManual:
		p.Issue = TriggerRevoked
	case previous != nil && previous.State == v1alpha1.KeyRevoked &&
		(previous.Reason == v1alpha1.RevokedDisabled || previous.Reason == v1alpha1.RevokedPolicy):
		p.Issue = TriggerEnabled
	case previous != nil && previous.State == v1alpha1.KeyRevoked && previous.Reason == v1alpha1.RevokedUnused:
		// An unused key stays revoked until someone asks for a fresh one (keysmith.dev/rotate).
	case in.Settings.Period > 0:
		// The current key is gone (expired while keysmith was down); rotation means there must be one.
		p.Issue = TriggerScheduled
	}
	if p.Issue != TriggerNone && in.RotateRequest != "" {
		// A request that arrives with (or before) another reason to issue is satisfied by that issuance.
		p.HandledRotateRequest = RequestDigest(in.RotateRequest)
	}

	// 4. The previous key once a new one is issued.
	// A key that never reached the Secret (a crash between the two writes) is handled the same way: nobody
	// holds it, and if somebody does after all (a restored Secret), the overlap keeps them working.
	if p.Issue != TriggerNone && current != nil && current.State == v1alpha1.KeyActive {
		end := now.Add(in.Settings.Overlap).Truncate(time.Second)
		if end.Before(current.NotAfter.Time) {
			current.NotAfter = metav1.Time{Time: end}
		}
		if now.Before(current.NotAfter.Time) {
			p.transition(current, v1alpha1.KeyRetiring)
		} else {
			p.transition(current, v1alpha1.KeyExpired)
		}
	}
	if p.Issue == TriggerNone && p.current() == nil && len(p.Keys) > 0 {
		p.Inactive = v1alpha1.ReasonExpired
		if previous != nil && previous.State == v1alpha1.KeyRevoked && previous.Reason == v1alpha1.RevokedUnused {
			p.Inactive = v1alpha1.ReasonUnused
		}
	}

	// 5. When to look again.
	if in.Settings.Period > 0 {
		switch {
		case p.Issue != TriggerNone:
			p.NextRotation = now.Add(in.Settings.Period)
		case current != nil && current.State == v1alpha1.KeyActive:
			p.NextRotation = current.IssuedAt.Add(in.Settings.Period)
		}
	}
	p.NextWake = p.NextRotation
	if p.Issue != TriggerNone {
		p.NextWake = earliest(p.NextWake, now.Add(in.Settings.Lifetime))
		if in.Settings.UnusedAfter > 0 {
			p.NextWake = earliest(p.NextWake, now.Add(in.Settings.UnusedAfter))
		}
	}
	for _, k := range p.Keys {
		if Valid(k) {
			p.NextWake = earliest(p.NextWake, k.NotAfter.Time)
			if in.Settings.UnusedAfter > 0 {
				p.NextWake = earliest(p.NextWake, lastUse(k).Add(in.Settings.UnusedAfter))
			}
		}
	}
	// 6. A current key (the one issued now, if any) that will expire before any rotation replaces it:
	// warned about now, or woken for when the warning starts.
	var notAfter time.Time
	if p.Issue != TriggerNone {
		notAfter = now.Add(in.Settings.Lifetime)
	} else if cur := p.current(); cur != nil {
		notAfter = cur.NotAfter.Time
	}
	if !notAfter.IsZero() && in.Settings.ExpiryWarning > 0 {
		rotatesInTime := !p.NextRotation.IsZero() && p.NextRotation.Before(notAfter)
		warnAt := notAfter.Add(-in.Settings.ExpiryWarning)
		if !rotatesInTime {
			if now.Before(warnAt) {
				p.NextWake = earliest(p.NextWake, warnAt)
			} else {
				p.ExpiringSoon = true
			}
		}
	}
	p.Keys = trim(p.Keys, v1alpha1.MaxKeysInStatus)
	return p
}

// Requests plans only what spec.disabled and keysmith.dev/revoke ask for (the revocations, the handled
// request, Inactive when disabled), for an ApiKey that gets no other lifecycle step: it breaks a policy,
// its spec is invalid, or its Secret is foreign or refused. A revocation is recorded whatever else is
// wrong, so that it holds after the annotation is removed or disabled is set back. Nothing is issued.
func Requests(in Input) Plan {
	p := newPlan(in)
	p.requests(in)
	p.Keys = trim(p.Keys, v1alpha1.MaxKeysInStatus)
	return p
}

// newPlan starts a plan for in: the time in whole seconds, a copy of the keys, and the handled requests,
// rewritten as digests where an earlier release recorded them verbatim.
func newPlan(in Input) Plan {
	p := Plan{Now: in.Now.Truncate(time.Second), CurrentKeyID: in.CurrentKeyID,
		HandledRotateRequest: asDigest(in.HandledRotateRequest), HandledRevokeRequest: asDigest(in.HandledRevokeRequest),
		settings: in.Settings}
	p.Keys = make([]v1alpha1.IssuedKey, len(in.Keys))
	copy(p.Keys, in.Keys)
	return p
}

// asDigest returns a handled request as status records it now: its digest.
func asDigest(handled string) string {
	if handled == "" || strings.HasPrefix(handled, "sha256:") {
		return handled
	}
	return RequestDigest(handled)
}

// requests applies the kill switch and a new revoke request, and reports whether the ApiKey is disabled
// (then nothing else happens).
func (p *Plan) requests(in Input) (disabled bool) {
	if in.Disabled {
		for i := range p.Keys {
			p.revoke(&p.Keys[i], v1alpha1.RevokedDisabled)
		}
		if in.RevokeRequest != "" {
			p.HandledRevokeRequest = RequestDigest(in.RevokeRequest)
		}
		if in.RotateRequest != "" {
			p.HandledRotateRequest = RequestDigest(in.RotateRequest)
		}
		p.Inactive = v1alpha1.ReasonDisabled
		return true
	}
	if RequestHandled(in.RevokeRequest, in.HandledRevokeRequest) {
		return false
	}
	p.HandledRevokeRequest = RequestDigest(in.RevokeRequest)
	ids, all, problem := ParseRevokeRequest(in.RevokeRequest)
	var unknown []string
	if problem == "" {
		for _, id := range ids {
			if k := p.find(id); k != nil {
				p.revoke(k, v1alpha1.RevokedManual)
			} else {
				unknown = append(unknown, id)
			}
		}
		if all {
			for i := range p.Keys {
				p.revoke(&p.Keys[i], v1alpha1.RevokedManual)
			}
		}
		if len(unknown) > 0 {
			problem = fmt.Sprintf("keysmith.dev/revoke names %d key(s) this ApiKey does not list (any others were revoked)", len(unknown))
		}
	}
	p.RevokeProblem = problem
	return false
}

// revoke revokes k (when it is still valid) for reason, recording the transition.
func (p *Plan) revoke(k *v1alpha1.IssuedKey, reason string) {
	if Valid(*k) {
		p.Transitions = append(p.Transitions, Transition{ID: k.ID, From: k.State, To: v1alpha1.KeyRevoked})
		Revoke(k, p.Now, reason)
	}
}

// Valid reports whether a key is still accepted by state (Active or Retiring); notAfter aside.
func Valid(k v1alpha1.IssuedKey) bool {
	return k.State == v1alpha1.KeyActive || k.State == v1alpha1.KeyRetiring
}

// Revoke marks k revoked at now (whole seconds) for reason.
func Revoke(k *v1alpha1.IssuedKey, now time.Time, reason string) {
	k.State, k.RevokedAt, k.Reason = v1alpha1.KeyRevoked, &metav1.Time{Time: now.Truncate(time.Second)}, reason
}

// RevokeAll revokes every valid key in keys (modified in place) and returns their ids.
func RevokeAll(keys []v1alpha1.IssuedKey, now time.Time, reason string) []string {
	var ids []string
	for i := range keys {
		if Valid(keys[i]) {
			Revoke(&keys[i], now, reason)
			ids = append(ids, keys[i].ID)
		}
	}
	return ids
}

func (p *Plan) find(id string) *v1alpha1.IssuedKey {
	for i := range p.Keys {
		if p.Keys[i].ID == id {
			return &p.Keys[i]
		}
	}
	return nil
}

func lastUse(k v1alpha1.IssuedKey) time.Time {
	if k.LastUsedAt != nil && k.LastUsedAt.After(k.IssuedAt.Time) {
		return k.LastUsedAt.Time
	}
	return k.IssuedAt.Time
}

// current returns the current key in p.Keys when it is still listed as Active, else nil. An expired or
// revoked current key counts as no current key.
func (p *Plan) current() *v1alpha1.IssuedKey {
	if p.CurrentKeyID == "" {
		return nil
	}
	for i := range p.Keys {
		if p.Keys[i].ID == p.CurrentKeyID && p.Keys[i].State == v1alpha1.KeyActive {
			return &p.Keys[i]
		}
	}
	return nil
}

func (p *Plan) transition(k *v1alpha1.IssuedKey, to v1alpha1.KeyState) {
	p.Transitions = append(p.Transitions, Transition{ID: k.ID, From: k.State, To: to})
	k.State = to
}

// WithNewKey returns status.keys with a newly issued key (id and hash) in front, bounded in length.
// It is only meaningful when p.Issue is set.
func (p Plan) WithNewKey(id, hash string) []v1alpha1.IssuedKey {
	k := v1alpha1.IssuedKey{
		ID:       id,
		Hash:     hash,
		State:    v1alpha1.KeyActive,
		IssuedAt: metav1.Time{Time: p.Now},
		NotAfter: metav1.Time{Time: p.Now.Add(p.settings.Lifetime).Truncate(time.Second)},
	}
	return trim(append([]v1alpha1.IssuedKey{k}, p.Keys...), v1alpha1.MaxKeysInStatus)
}

// trim bounds the list to max entries, dropping the oldest finished keys (Revoked, Expired) first and then,
// only if a burst of rotations left more valid keys than fit, the oldest retiring ones. A key that is not
// listed is refused by the verifier, so status never claims more than it enforces.
func trim(keys []v1alpha1.IssuedKey, max int) []v1alpha1.IssuedKey {
	if len(keys) <= max {
		return keys
	}
	out := make([]v1alpha1.IssuedKey, 0, len(keys))
	drop := len(keys) - max
	// Walk from the oldest, dropping finished keys until enough are gone.
	keep := make([]bool, len(keys))
	for i := range keys {
		keep[i] = true
	}
	for _, finishedOnly := range []bool{true, false} {
		for i := len(keys) - 1; i > 0 && drop > 0; i-- {
			if !keep[i] {
				continue
			}
			finished := keys[i].State == v1alpha1.KeyRevoked || keys[i].State == v1alpha1.KeyExpired
			if finished || (!finishedOnly && keys[i].State != v1alpha1.KeyActive) {
				keep[i] = false
				drop--
			}
		}
	}
	for i, k := range keys {
		if keep[i] {
			out = append(out, k)
		}
	}
	return out
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// ClassifySecret says what the Secret holds relative to status. exists and owned describe the Secret;
// keyHash is "sha256:<hex>" of its api-key value ("" when empty).
func ClassifySecret(exists, owned bool, keyHash string, keys []v1alpha1.IssuedKey, currentID string) SecretState {
	switch {
	case !exists:
		return SecretMissing
	case !owned:
		return SecretForeign
	}
	for _, k := range keys {
		if k.ID == currentID && keyHash != "" && keyHash == k.Hash {
			return SecretCurrent
		}
	}
	return SecretTampered
}
