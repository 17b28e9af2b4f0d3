package inventory

import (
	"slices"
	"time"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
)

// EventKind is what happened to a key (or will happen: Future events).
type EventKind string

const (
	// EventIssued: a key was issued with no valid predecessor (the first key, after an expiry, a
	// revocation, or enable).
	EventIssued EventKind = "Issued"
	// EventRotated: a key was issued while its predecessor was still valid (a scheduled or requested
	// rotation); the predecessor has a Retiring event at the same instant, or expired at once (overlap 0s).
	EventRotated EventKind = "Rotated"
	// EventRetiring: a key was replaced and stays valid Until the end of its overlap.
	EventRetiring EventKind = "Retiring"
	// EventRevoked: a key was revoked; Reason says why (Manual, Disabled, Unused, PolicyViolation, Deleted).
	EventRevoked EventKind = "Revoked"
	// EventExpired: a key's notAfter passed (the end of its lifetime, or of its overlap).
	EventExpired EventKind = "Expired"
	// EventLastUsed: the newest verification that accepted a key.
	EventLastUsed EventKind = "LastUsed"
	// EventExpires (future): a valid key will stop being accepted.
	EventExpires EventKind = "Expires"
	// EventRotationScheduled (future): keysmith's next scheduled rotation.
	EventRotationScheduled EventKind = "RotationScheduled"
)

// Event is one entry of a Timeline.
type Event struct {
	At   time.Time `json:"at"`
	Kind EventKind `json:"kind"`
	// KeyID is the key concerned ("" for RotationScheduled).
	KeyID string `json:"keyID,omitempty"`
	// Reason is a revocation's reason.
	Reason string `json:"reason,omitempty"`
	// Until is when a Retiring key stops being accepted.
	Until *time.Time `json:"until,omitempty"`
	// Future is true for events after now (Expires, RotationScheduled, an Until still ahead).
	Future bool `json:"future,omitempty"`
	// When is At relative to now ("3d ago", "in 29d").
	When string `json:"when"`
	// Message says it in a sentence.
	Message string `json:"message"`
}

// Timeline lists what status records about k's keys, oldest first, followed by what is scheduled: each
// key's issue (Issued or Rotated), retirement, revocation, expiry and last use, then the expiries and the
// rotation still ahead. It covers the keys status lists (at most 16, newest first there).
func Timeline(k *v1alpha1.ApiKey, now time.Time) []Event {
	ks := k.Status.Keys // newest first
	overlap := overlapOf(k)
	var evs []Event
	// Status records instants to the second, so several events often share one. They are ordered by the
	// key generation they belong to (g: the key's position, oldest first) and then by a rank: what ended a
	// key before its successor was issued (its revocation, its expiry) comes with its successor's
	// generation, just before the successor's issue; a key's retirement comes just after it, and so does
	// the revocation of a key that a rotation had replaced within that same second (rotate, then revoke
	// the old key).
	const (
		rankEndedBefore = iota // revoked or expired, then the successor issued
		rankIssued
		rankRetiring
		rankEndedAfter // revoked after the rotation that replaced it
		rankLastUsed
		rankExpires
		rankScheduled
	)
	type order struct{ gen, rank int }
	var orders []order
	add := func(gen, rank int, e Event) {
		e.Future = e.At.After(now)
		e.When = Relative(e.At, now)
		evs = append(evs, e)
		orders = append(orders, order{gen, rank})
	}
	for i := len(ks) - 1; i >= 0; i-- {
		key, g := ks[i], len(ks)-1-i
		var older, newer *v1alpha1.IssuedKey
		if i+1 < len(ks) {
			older = &ks[i+1]
		}
		if i > 0 {
			newer = &ks[i-1]
		}
		issued := key.IssuedAt.Time
		switch {
		case older != nil && rotated(*older, key, overlap):
			add(g, rankIssued, Event{At: issued, Kind: EventRotated, KeyID: key.ID, Message: "key " + key.ID + " issued, replacing " + older.ID})
		case older != nil && older.RevokedAt != nil && !older.RevokedAt.After(issued) && issued.Sub(older.RevokedAt.Time) < 2*time.Second:
			add(g, rankIssued, Event{At: issued, Kind: EventIssued, KeyID: key.ID, Message: "key " + key.ID + " issued after " + older.ID + " was revoked"})
		default:
			add(g, rankIssued, Event{At: issued, Kind: EventIssued, KeyID: key.ID, Message: "key " + key.ID + " issued"})
		}
		rotatedOut := newer != nil && rotated(key, *newer, overlap)
		if rotatedOut && key.NotAfter.After(newer.IssuedAt.Time) {
			// Accepted until the end of its overlap, or until its revocation if that came first.
			until := key.NotAfter.Time
			msg := "key " + key.ID + " retiring, accepted until " + until.UTC().Format(time.RFC3339) + " (" + Relative(until, now) + ")"
			if key.RevokedAt != nil && key.RevokedAt.Time.Before(until) {
				until = key.RevokedAt.Time
				msg = "key " + key.ID + " retiring, accepted until its revocation at " + until.UTC().Format(time.RFC3339) + " (" + Relative(until, now) + ")"
			}
			add(g+1, rankRetiring, Event{At: newer.IssuedAt.Time, Kind: EventRetiring, KeyID: key.ID, Until: &until, Message: msg})
		}
		if key.LastUsedAt != nil {
			add(g, rankLastUsed, Event{At: key.LastUsedAt.Time, Kind: EventLastUsed, KeyID: key.ID, Message: "key " + key.ID + " last used"})
		}
		switch {
		case key.RevokedAt != nil:
			msg := "key " + key.ID + " revoked"
			if key.Reason != "" {
				msg += " (" + key.Reason + ")"
			}
			rank := rankEndedBefore
			if rotatedOut {
				rank = rankEndedAfter
			}
			add(g+1, rank, Event{At: key.RevokedAt.Time, Kind: EventRevoked, KeyID: key.ID, Reason: key.Reason, Message: msg})
		case key.State == v1alpha1.KeyRevoked:
			// Revoked without a time (an older writer): nothing to place on the timeline.
		case key.State == v1alpha1.KeyExpired || !now.Before(key.NotAfter.Time):
			add(g+1, rankEndedBefore, Event{At: key.NotAfter.Time, Kind: EventExpired, KeyID: key.ID, Message: "key " + key.ID + " expired"})
		default:
			msg := "key " + key.ID + " expires"
			if key.State == v1alpha1.KeyRetiring {
				msg = "retiring key " + key.ID + " stops being accepted"
			}
			add(g, rankExpires, Event{At: key.NotAfter.Time, Kind: EventExpires, KeyID: key.ID, Message: msg})
		}
	}
	if t := k.Status.NextRotationAt; t != nil && t.After(now) && !k.Spec.Disabled {
		add(len(ks), rankScheduled, Event{At: t.Time, Kind: EventRotationScheduled, KeyID: k.Status.CurrentKeyID, Message: "next scheduled rotation"})
	}
	idx := make([]int, len(evs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		if c := evs[a].At.Compare(evs[b].At); c != 0 {
			return c
		}
		if c := orders[a].gen - orders[b].gen; c != 0 {
			return c
		}
		return orders[a].rank - orders[b].rank
	})
	sorted := make([]Event, len(evs))
	for i, j := range idx {
		sorted[i] = evs[j]
	}
	evs = sorted
	return evs
}

// rotated reports whether newer replaced older in a rotation: older was accepted when newer was issued,
// or was revoked within that same second (status records seconds: rotate, then revoke the old key) after
// the rotation had shortened its notAfter to newer's issue + the overlap, as a rotation does
// (internal/rotation: Decide, step 4). A revocation that came first (the current key revoked, then a
// fresh key at once) leaves notAfter alone, so it is no rotation.
func rotated(older, newer v1alpha1.IssuedKey, overlap time.Duration) bool {
	issued := newer.IssuedAt.Time
	if validAt(older, issued) {
		return true
	}
	return older.RevokedAt != nil && older.RevokedAt.Time.Equal(issued) && !older.IssuedAt.After(issued) &&
		older.NotAfter.Time.Equal(issued.Add(overlap).Truncate(time.Second))
}

// overlapOf is the ApiKey's rotation overlap: status.effective's, else what its spec gives.
func overlapOf(k *v1alpha1.ApiKey) time.Duration {
	if e := k.Status.Effective; e != nil && e.Overlap != nil {
		return e.Overlap.Duration
	}
	if e, err := k.Spec.Effective(); err == nil && e.Overlap != nil {
		return e.Overlap.Duration
	}
	return -1 // unknown: no notAfter matches
}

// validAt reports whether k was accepted at t (issued, not yet revoked, before its notAfter). A key whose
// notAfter is exactly t was replaced with no overlap: it still counts, as the replacement is a rotation.
func validAt(k v1alpha1.IssuedKey, t time.Time) bool {
	if k.IssuedAt.After(t) {
		return false
	}
	if k.RevokedAt != nil && !k.RevokedAt.After(t) {
		return false
	}
	return !k.NotAfter.Time.Before(t)
}
