package rotation

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/keys"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func key(id string, state v1alpha1.KeyState, issued, notAfter time.Duration) v1alpha1.IssuedKey {
	return v1alpha1.IssuedKey{ID: id, Hash: "sha256:" + id, State: state,
		IssuedAt: metav1.Time{Time: at(issued)}, NotAfter: metav1.Time{Time: at(notAfter)}}
}

const (
	h   = time.Hour
	day = 24 * time.Hour
)

var (
	noRotation = Settings{Lifetime: 90 * day}
	monthly    = Settings{Lifetime: 90 * day, Period: 30 * day, Overlap: day}
	noOverlap  = Settings{Lifetime: 90 * day, Period: 30 * day}
)

func TestDecide(t *testing.T) {
	type want struct {
		issue        Trigger
		states       map[string]v1alpha1.KeyState
		notAfter     map[string]time.Duration
		transitions  int
		inactive     string
		expiringSoon bool
		problem      string // substring of RevokeProblem
		handledRev   string
		handled      string
		nextRotation time.Duration // from t0; -1 for zero
		nextWake     time.Duration // from t0; -1 for zero
	}
	for _, tc := range []struct {
		name string
		in   Input
		want want
	}{
		{
			name: "first key, no rotation",
			in:   Input{Now: at(0), Settings: noRotation, Secret: SecretMissing},
			want: want{issue: TriggerInitial, nextRotation: -1, nextWake: 90 * day},
		},
		{
			name: "first key with rotation wakes at the period",
			in:   Input{Now: at(0), Settings: monthly, Secret: SecretMissing},
			want: want{issue: TriggerInitial, nextRotation: 30 * day, nextWake: 30 * day},
		},
		{
			name: "first key with a rotate annotation already set records it",
			in:   Input{Now: at(0), Settings: monthly, Secret: SecretMissing, RotateRequest: "1"},
			want: want{issue: TriggerInitial, handled: "1", nextRotation: 30 * day, nextWake: 30 * day},
		},
		{
			name: "nothing due",
			in: Input{Now: at(10 * day), Settings: monthly, CurrentKeyID: "a", Secret: SecretCurrent,
				Keys: []v1alpha1.IssuedKey{key("a", v1alpha1.KeyActive, 0, 90*day)}},
			want: want{states: map[string]v1alpha1.KeyState{"a": v1alpha1.KeyActive}, nextRotation: 30 * day, nextWake: 30 * day},
		},
		{
			name: "one second before the period",
			in: Input{Now: at(30*day - time.Second), Settings: monthly, CurrentKeyID: "a", Secret: SecretCurrent,
				Keys: []v1alpha1.IssuedKey{key("a", v1alpha1.KeyActive, 0, 90*day)}},
			want: want{states: map[string]v1alpha1.KeyState{"a": v1alpha1.KeyActive}, nextRotation: 30 * day, nextWake: 30 * day},
		},
		{
			name: "exactly at the period rotates with overlap",
			in: Input{Now: at(30 * day), Settings: monthly, CurrentKeyID: "a", Secret: SecretCurrent,
				Keys: []v1alpha1.IssuedKey{key("a", v1alpha1.KeyActive, 0, 90*day)}},
			want: want{issue: TriggerScheduled, states: map[string]v1alpha1.KeyState{"a": v1alpha1.KeyRetiring},
				notAfter: map[string]time.Duration{"a": 31 * day}, transitions: 1, nextRotation: 60 * day, nextWake: 31 * day},
		},
		{
			name: "sub-second clock is truncated to whole seconds",
			in: Input{Now: at(30*day + 900*time.Millisecond), Settings: monthly, CurrentKeyID: "a", Secret: SecretCurrent,
				Keys: []v1alpha1.IssuedKey{key("a", v1alpha1.KeyActive, 0, 90*day)}},
			want: want{issue: TriggerScheduled, states: map[string]v1alpha1.KeyState{"a": v1alpha1.KeyRetiring},
				notAfter: map[string]time.Duration{"a": 31 * day}, transitions: 1, nextRotation: 60 * day, nextWake: 31 * day},
		},
		{
			name: "overlap 0 expires the old key at once",
			in: Input{Now: at(30 * day), Settings: noOverlap, CurrentKeyID: "a", Secret: SecretCurrent,
				Keys: []v1alpha1.IssuedKey{key("a", v1alpha1.KeyActive, 0, 90*day)}},
			want: want{issue: TriggerScheduled, states: map[string]v1alpha1.KeyState{"a": v1alpha1.KeyExpired},
				notAfter: map[string]time.Duration{"a": 30 * day}, transitions: 1, nextRotation: 60 * day, nextWake: 60 * day},
		},
		{
			name: "overlap never extends a key past its own lifetime",
			in: Input{Now: at(89*day + 12*h), Settings: monthly, CurrentKeyID: "a", Secret: SecretCurrent,
				Keys: []v1alpha1.IssuedKey{key("a", v1alpha1.KeyActive, 0, 90*day)}},
			want: want{issue: TriggerScheduled, states: map[string]v1alpha1.KeyState{"a": v1alpha1.KeyRetiring},
				notAfter: map[string]time.Duration{"a": 90 * day}, transitions: 1, nextRotation: 119*day + 12*h, nextWake: 90 * day},
		},
		{
			name: "retiring key retires at the end of its overlap",
			in: Input{Now: at(31 * day), Settings: monthly, CurrentKeyID: "b", Secret: SecretCurrent,
				Keys: []v1alpha1.IssuedKey{key("b", v1alpha1.KeyActive, 30*day, 120*day), key("a", v1alpha1.KeyRetiring, 0, 31*day)}},
			want: want{states: map[string]v1alpha1.KeyState{"a": v1alpha1.KeyExpired, "b": v1alpha1.KeyActive}, transitions: 1,
				nextRotation: 60 * day, nextWake: 60 * day},
		},
		{
			name: "overlap that ended during downtime, rotation also overdue",
			in: Input{Now: at(70 * day), Settings: monthly, CurrentKeyID: "b", Secret: SecretCurrent,
				Keys: []v1alpha1.IssuedKey{key("b", v1alpha1.KeyActive, 30*day, 120*day), key("a", v1alpha1.KeyRetiring, 0, 31*day)}},
			want: want{issue: TriggerScheduled, states: map[string]v1alpha1.KeyState{"a": v1alpha1.KeyExpired, "b": v1alpha1.KeyRetiring},
				notAfter: map[string]time.Duration{"b": 71 * day}, transitions: 2, nextRotation: 100 * day, nextWake: 71 * day},
		},
		{
			name: "current key expired during a long downtime, rotation issues a fresh one",
			in: Input{Now: at(200 * day), Settings: monthly, CurrentKeyID: "a", Secret: SecretCurrent,
				Keys: []v1alpha1.IssuedKey{key("a", v1alpha1.KeyActive, 0, 90*day)}},
			want: want{issue: TriggerScheduled, states: map[string]v1alpha1.KeyState{"a": v1alpha1.KeyExpired}, transitions: 1,
				nextRotation: 230 * day, nextWake: 230 * day},
		},
		{
			name: "no rotation: the key expires and nothing is issued",
			in: Input{Now: at(90 * day), Settings: noRotation, CurrentKeyID: "a", Secret: SecretCurrent,
				Keys: []v1alpha1.IssuedKey{key("a", v1alpha1.KeyActive, 0, 90*day)}},
			want: want{states: map[string]v1alpha1.KeyState{"a": v1alpha1.KeyExpired}, transitions: 1, inactive: v1alpha1.ReasonExpired, nextRotation: -1, nextWake: -1},
		},
		{
			name: "no rotation: an expired ApiKey stays expired when its Secret goes",
			in: Input{Now: at(100 * day), Settings: noRotation, CurrentKeyID: "a", Secret: SecretMissing,
				Keys: []v1alpha1.IssuedKey{key("a", v1alpha1.KeyExpired, 0, 90*day)}},
			want: want{states: map[string]v1alpha1.KeyState{"a": v1alpha1.KeyExpired}, inactive: v1alpha1.ReasonExpired, nextRotation: -1, nextWake: -1},
		},
		{
			name: "no rotation: a rotate request issues a fresh key after expiry",
			in: Input{Now: at(100 * day), Settings: noRotation, CurrentKeyID: "a", Secret: SecretCurrent, RotateRequest: "x",
				Keys: []v1alpha1.IssuedKey{key("a", v1alpha1.KeyExpired, 0, 90*day)}},
			want: want{issue: TriggerManual, handled: "x", states: map[string]v1alpha1.KeyState{"a": v1alpha1.KeyExpired}, nextRotation: -1, nextWake: 190 * day},
		},
		{
			name: "manual rotation with the normal overlap",
			in: Input{Now: at(5 * day), Settings: monthly, CurrentKeyID: "a", Secret: SecretCurrent, RotateRequest: "r1",
				Keys: []v1alpha1.IssuedKey{key("a", v1alpha1.KeyActive, 0, 90*day)}},
			want: want{issue: TriggerManual, handled: "r1", states: map[string]v1alpha1.KeyState{"a": v1alpha1.KeyRetiring},
				notAfter: map[string]time.Duration{"a": 6 * day}, transitions: 1, nextRotation: 35 * day, nextWake: 6 * day},
		},
		{
			name: "a handled rotate request does not fire again",
			in: Input{Now: at(5 * day), Settings: monthly, CurrentKeyID: "a", Secret: SecretCurrent, RotateRequest: "r1", HandledRotateRequest: "r1",
				Keys: []v1alpha1.IssuedKey{key("a", v1alpha1.KeyActive, 0, 90*day)}},
			want: want{handled: "r1", states: map[string]v1alpha1.KeyState{"a": v1alpha1.KeyActive}, nextRotation: 30 * day, nextWake: 30 * day},
		},
		{
			name: "removing the rotate annotation does nothing",
			in: Input{Now: at(5 * day), Settings: monthly, CurrentKeyID: "a", Secret: SecretCurrent, HandledRotateRequest: RequestDigest("r1"),
				Keys: []v1alpha1.IssuedKey{key("a", v1alpha1.KeyActive, 0, 90*day)}},
			want: want{handled: "r1", states: map[string]v1alpha1.KeyState{"a": v1alpha1.KeyActive}, nextRotation: 30 * day, nextWake: 30 * day},
		},
		{
			name: "Secret deleted: fresh key, the previous one retires after the overlap",
			in: Input{Now: at(5 * day), Settings: monthly, CurrentKeyID: "a", Secret: SecretMissing,
				Keys: []v1alpha1.IssuedKey{key("a", v1alpha1.KeyActive, 0, 90*day)}},
			want: want{issue: TriggerSecretLost, states: map[string]v1alpha1.KeyState{"a": v1alpha1.KeyRetiring},
				notAfter: map[string]time.Duration{"a": 6 * day}, transitions: 1, nextRotation: 35 * day, nextWake: 6 * day},
		},
		{
			name: "Secret edited: fresh key, the previous one retires after the overlap",
			in: Input{Now: at(5 * day), Settings: monthly, CurrentKeyID: "a", Secret: SecretTampered,
				Keys: []v1alpha1.IssuedKey{key("a", v1alpha1.KeyActive, 0, 90*day)}},
			want: want{issue: TriggerSecretTampered, states: map[string]v1alpha1.KeyState{"a": v1alpha1.KeyRetiring},
				notAfter: map[string]time.Duration{"a": 6 * day}, transitions: 1, nextRotation: 35 * day, nextWake: 6 * day},
		},
		{
			name: "crash after recording a rotation: the Secret still holds the previous key",
			in: Input{Now: at(30*day + time.Minute), Settings: monthly, CurrentKeyID: "b", Secret: SecretTampered,
				Keys: []v1alpha1.IssuedKey{key("b", v1alpha1.KeyActive, 30*day, 120*day), key("a", v1alpha1.KeyRetiring, 0, 31*day)}},
			want: want{issue: TriggerSecretTampered, states: map[string]v1alpha1.KeyState{"b": v1alpha1.KeyRetiring, "a": v1alpha1.KeyRetiring},
				notAfter: map[string]time.Duration{"a": 31 * day, "b": 31*day + time.Minute}, transitions: 1, nextRotation: 60*day + time.Minute, nextWake: 31 * day},
		},
		{
			name: "no rotation: a manual rotation keeps the previous key for the overlap",
			in: Input{Now: at(5 * day), Settings: Settings{Lifetime: 90 * day, Overlap: day}, CurrentKeyID: "a", Secret: SecretCurrent, RotateRequest: "x",
				Keys: []v1alpha1.IssuedKey{key("a", v1alpha1.KeyActive, 0, 90*day)}},
			want: want{issue: TriggerManual, handled: "x", states: map[string]v1alpha1.KeyState{"a": v1alpha1.KeyRetiring},
				notAfter: map[string]time.Duration{"a": 6 * day}, transitions: 1, nextRotation: -1, nextWake: 6 * day},
		},
		{
			name: "revoke the current key: a fresh key at once, no overlap",
			in: Input{Now: at(5 * day), Settings: monthly, CurrentKeyID: "aaaaaaaaaaaa", Secret: SecretCurrent, RevokeRequest: "aaaaaaaaaaaa",
				Keys: []v1alpha1.IssuedKey{key("aaaaaaaaaaaa", v1alpha1.KeyActive, 0, 90*day)}},
			want: want{issue: TriggerRevoked, handledRev: "aaaaaaaaaaaa", states: map[string]v1alpha1.KeyState{"aaaaaaaaaaaa": v1alpha1.KeyRevoked},
				transitions: 1, nextRotation: 35 * day, nextWake: 35 * day},
		},
		{
			name: "revoke a retiring key only",
			in: Input{Now: at(30*day + h), Settings: monthly, CurrentKeyID: "bbbbbbbbbbbb", Secret: SecretCurrent, RevokeRequest: " aaaaaaaaaaaa ",
				Keys: []v1alpha1.IssuedKey{key("bbbbbbbbbbbb", v1alpha1.KeyActive, 30*day, 120*day), key("aaaaaaaaaaaa", v1alpha1.KeyRetiring, 0, 31*day)}},
			want: want{handledRev: " aaaaaaaaaaaa ", states: map[string]v1alpha1.KeyState{"aaaaaaaaaaaa": v1alpha1.KeyRevoked, "bbbbbbbbbbbb": v1alpha1.KeyActive},
				transitions: 1, nextRotation: 60 * day, nextWake: 60 * day},
		},
		{
			name: "revoke all",
			in: Input{Now: at(30*day + h), Settings: monthly, CurrentKeyID: "bbbbbbbbbbbb", Secret: SecretCurrent, RevokeRequest: "all",
				Keys: []v1alpha1.IssuedKey{key("bbbbbbbbbbbb", v1alpha1.KeyActive, 30*day, 120*day), key("aaaaaaaaaaaa", v1alpha1.KeyRetiring, 0, 31*day)}},
			want: want{issue: TriggerRevoked, handledRev: "all", states: map[string]v1alpha1.KeyState{"aaaaaaaaaaaa": v1alpha1.KeyRevoked, "bbbbbbbbbbbb": v1alpha1.KeyRevoked},
				transitions: 2, nextRotation: 60*day + h, nextWake: 60*day + h},
		},
		{
			name: "a malformed revoke value leaves keys untouched and is handled once",
			in: Input{Now: at(5 * day), Settings: monthly, CurrentKeyID: "aaaaaaaaaaaa", Secret: SecretCurrent, RevokeRequest: "the leaked one",
				Keys: []v1alpha1.IssuedKey{key("aaaaaaaaaaaa", v1alpha1.KeyActive, 0, 90*day)}},
			want: want{handledRev: "the leaked one", problem: "no key was revoked", states: map[string]v1alpha1.KeyState{"aaaaaaaaaaaa": v1alpha1.KeyActive},
				nextRotation: 30 * day, nextWake: 30 * day},
		},
		{
			name: "unknown ids are reported, listed ones revoked",
			in: Input{Now: at(5 * day), Settings: monthly, CurrentKeyID: "aaaaaaaaaaaa", Secret: SecretCurrent, RevokeRequest: "aaaaaaaaaaaa,cccccccccccc",
				Keys: []v1alpha1.IssuedKey{key("aaaaaaaaaaaa", v1alpha1.KeyActive, 0, 90*day)}},
			want: want{issue: TriggerRevoked, handledRev: "aaaaaaaaaaaa,cccccccccccc", problem: "names 1 key(s) this ApiKey does not list", states: map[string]v1alpha1.KeyState{"aaaaaaaaaaaa": v1alpha1.KeyRevoked},
				transitions: 1, nextRotation: 35 * day, nextWake: 35 * day},
		},
		{
			name: "a handled revoke value does nothing",
			in: Input{Now: at(5 * day), Settings: monthly, CurrentKeyID: "bbbbbbbbbbbb", Secret: SecretCurrent, RevokeRequest: "aaaaaaaaaaaa", HandledRevokeRequest: "aaaaaaaaaaaa",
				Keys: []v1alpha1.IssuedKey{key("bbbbbbbbbbbb", v1alpha1.KeyActive, 0, 90*day)}},
			want: want{handledRev: "aaaaaaaaaaaa", states: map[string]v1alpha1.KeyState{"bbbbbbbbbbbb": v1alpha1.KeyActive}, nextRotation: 30 * day, nextWake: 30 * day},
		},
		{
			name: "a handled revoke value recorded as its digest does nothing",
			in: Input{Now: at(5 * day), Settings: monthly, CurrentKeyID: "bbbbbbbbbbbb", Secret: SecretCurrent, RevokeRequest: "aaaaaaaaaaaa", HandledRevokeRequest: RequestDigest("aaaaaaaaaaaa"),
				Keys: []v1alpha1.IssuedKey{key("bbbbbbbbbbbb", v1alpha1.KeyActive, 0, 90*day)}},
			want: want{handledRev: "aaaaaaaaaaaa", states: map[string]v1alpha1.KeyState{"bbbbbbbbbbbb": v1alpha1.KeyActive}, nextRotation: 30 * day, nextWake: 30 * day},
		},
		{
			name: "a key pasted instead of its id is revoked by its id",
			in: Input{Now: at(5 * day), Settings: monthly, CurrentKeyID: pastedID, Secret: SecretCurrent, RevokeRequest: pastedKey,
				Keys: []v1alpha1.IssuedKey{key(pastedID, v1alpha1.KeyActive, 0, 90*day)}},
			want: want{issue: TriggerRevoked, handledRev: pastedKey, states: map[string]v1alpha1.KeyState{pastedID: v1alpha1.KeyRevoked},
				transitions: 1, nextRotation: 35 * day, nextWake: 35 * day},
		},
		{
			name: "disabled: everything revoked, nothing issued",
			in: Input{Now: at(5 * day), Settings: monthly, CurrentKeyID: "b", Secret: SecretCurrent, Disabled: true, RotateRequest: "r",
				Keys: []v1alpha1.IssuedKey{key("b", v1alpha1.KeyActive, 0, 90*day), key("a", v1alpha1.KeyRetiring, 0, 6*day)}},
			want: want{inactive: v1alpha1.ReasonDisabled, handled: "r", states: map[string]v1alpha1.KeyState{"a": v1alpha1.KeyRevoked, "b": v1alpha1.KeyRevoked},
				transitions: 2, nextRotation: -1, nextWake: -1},
		},
		{
			name: "enabled again: a fresh key",
			in: Input{Now: at(6 * day), Settings: monthly, CurrentKeyID: "b", Secret: SecretCurrent,
				Keys: []v1alpha1.IssuedKey{{ID: "b", State: v1alpha1.KeyRevoked, Reason: v1alpha1.RevokedDisabled, IssuedAt: metav1.Time{Time: t0}, NotAfter: metav1.Time{Time: at(90 * day)}}}},
			want: want{issue: TriggerEnabled, states: map[string]v1alpha1.KeyState{"b": v1alpha1.KeyRevoked}, nextRotation: 36 * day, nextWake: 36 * day},
		},
		{
			name: "unused for the limit: revoked, not replaced",
			in: Input{Now: at(30 * day), Settings: Settings{Lifetime: 90 * day, UnusedAfter: 30 * day}, CurrentKeyID: "a", Secret: SecretCurrent,
				Keys: []v1alpha1.IssuedKey{key("a", v1alpha1.KeyActive, 0, 90*day)}},
			want: want{inactive: v1alpha1.ReasonUnused, states: map[string]v1alpha1.KeyState{"a": v1alpha1.KeyRevoked}, transitions: 1, nextRotation: -1, nextWake: -1},
		},
		{
			name: "recently used: kept, woken at its unused deadline",
			in: Input{Now: at(30 * day), Settings: Settings{Lifetime: 90 * day, UnusedAfter: 30 * day}, CurrentKeyID: "a", Secret: SecretCurrent,
				Keys: []v1alpha1.IssuedKey{func() v1alpha1.IssuedKey {
					k := key("a", v1alpha1.KeyActive, 0, 90*day)
					k.LastUsedAt = &metav1.Time{Time: at(20 * day)}
					return k
				}()}},
			want: want{states: map[string]v1alpha1.KeyState{"a": v1alpha1.KeyActive}, nextRotation: -1, nextWake: 50 * day},
		},
		{
			name: "unused and revoked: a rotate request issues a fresh key",
			in: Input{Now: at(31 * day), Settings: Settings{Lifetime: 90 * day, UnusedAfter: 30 * day}, CurrentKeyID: "a", Secret: SecretCurrent, RotateRequest: "again",
				Keys: []v1alpha1.IssuedKey{{ID: "a", State: v1alpha1.KeyRevoked, Reason: v1alpha1.RevokedUnused, IssuedAt: metav1.Time{Time: t0}, NotAfter: metav1.Time{Time: at(90 * day)}}}},
			want: want{issue: TriggerManual, handled: "again", states: map[string]v1alpha1.KeyState{"a": v1alpha1.KeyRevoked}, nextRotation: -1, nextWake: 61 * day},
		},
		{
			name: "no rotation: expiring soon within the warning",
			in: Input{Now: at(76 * day), Settings: Settings{Lifetime: 90 * day, ExpiryWarning: 14 * day}, CurrentKeyID: "a", Secret: SecretCurrent,
				Keys: []v1alpha1.IssuedKey{key("a", v1alpha1.KeyActive, 0, 90*day)}},
			want: want{expiringSoon: true, states: map[string]v1alpha1.KeyState{"a": v1alpha1.KeyActive}, nextRotation: -1, nextWake: 90 * day},
		},
		{
			name: "no rotation: woken when the warning starts",
			in: Input{Now: at(10 * day), Settings: Settings{Lifetime: 90 * day, ExpiryWarning: 14 * day}, CurrentKeyID: "a", Secret: SecretCurrent,
				Keys: []v1alpha1.IssuedKey{key("a", v1alpha1.KeyActive, 0, 90*day)}},
			want: want{states: map[string]v1alpha1.KeyState{"a": v1alpha1.KeyActive}, nextRotation: -1, nextWake: 76 * day},
		},
		{
			name: "first key without rotation: woken when its warning starts",
			in:   Input{Now: at(0), Settings: Settings{Lifetime: 30 * day, ExpiryWarning: 14 * day}, Secret: SecretMissing},
			want: want{issue: TriggerInitial, nextRotation: -1, nextWake: 16 * day},
		},
		{
			name: "first key living less than the warning: expiring soon from the start",
			in:   Input{Now: at(0), Settings: Settings{Lifetime: 7 * day, ExpiryWarning: 14 * day}, Secret: SecretMissing},
			want: want{issue: TriggerInitial, expiringSoon: true, nextRotation: -1, nextWake: 7 * day},
		},
		{
			name: "first key rotated in time: no warning, woken for the rotation",
			in:   Input{Now: at(0), Settings: Settings{Lifetime: 31 * day, Period: 30 * day, Overlap: h, ExpiryWarning: 14 * day}, Secret: SecretMissing},
			want: want{issue: TriggerInitial, nextRotation: 30 * day, nextWake: 30 * day},
		},
		{
			name: "rotation in time: no warning",
			in: Input{Now: at(29 * day), Settings: Settings{Lifetime: 31 * day, Period: 30 * day, Overlap: h, ExpiryWarning: 14 * day}, CurrentKeyID: "a", Secret: SecretCurrent,
				Keys: []v1alpha1.IssuedKey{key("a", v1alpha1.KeyActive, 0, 31*day)}},
			want: want{states: map[string]v1alpha1.KeyState{"a": v1alpha1.KeyActive}, nextRotation: 30 * day, nextWake: 30 * day},
		},
		{
			name: "foreign Secret: nothing is issued",
			in:   Input{Now: at(0), Settings: monthly, Secret: SecretForeign},
			want: want{nextRotation: -1, nextWake: -1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Decide(tc.in)
			if p.Issue != tc.want.issue {
				t.Errorf("Issue = %q, want %q", p.Issue, tc.want.issue)
			}
			for id, st := range tc.want.states {
				k := find(p.Keys, id)
				if k == nil {
					t.Fatalf("key %s missing from plan", id)
				}
				if k.State != st {
					t.Errorf("key %s state = %s, want %s", id, k.State, st)
				}
			}
			for id, na := range tc.want.notAfter {
				if got := find(p.Keys, id).NotAfter.Time; !got.Equal(at(na)) {
					t.Errorf("key %s notAfter = %s, want %s", id, got.Sub(t0), na)
				}
			}
			if len(p.Transitions) != tc.want.transitions {
				t.Errorf("transitions = %+v, want %d", p.Transitions, tc.want.transitions)
			}
			if p.Inactive != tc.want.inactive {
				t.Errorf("Inactive = %q, want %q", p.Inactive, tc.want.inactive)
			}
			if p.ExpiringSoon != tc.want.expiringSoon {
				t.Errorf("ExpiringSoon = %v, want %v", p.ExpiringSoon, tc.want.expiringSoon)
			}
			if (tc.want.problem == "") != (p.RevokeProblem == "") || !strings.Contains(p.RevokeProblem, tc.want.problem) {
				t.Errorf("RevokeProblem = %q, want %q", p.RevokeProblem, tc.want.problem)
			}
			if p.HandledRevokeRequest != RequestDigest(tc.want.handledRev) {
				t.Errorf("HandledRevokeRequest = %q, want %q", p.HandledRevokeRequest, tc.want.handledRev)
			}
			if p.HandledRotateRequest != RequestDigest(tc.want.handled) {
				t.Errorf("HandledRotateRequest = %q, want %q", p.HandledRotateRequest, tc.want.handled)
			}
			checkTime(t, "NextRotation", p.NextRotation, tc.want.nextRotation)
			checkTime(t, "NextWake", p.NextWake, tc.want.nextWake)
			if !p.NextWake.IsZero() && !p.NextWake.After(p.Now) {
				t.Errorf("NextWake %s is not after Now %s: the controller would hot-loop", p.NextWake, p.Now)
			}
		})
	}
}

func TestDecideDoesNotModifyInput(t *testing.T) {
	keys := []v1alpha1.IssuedKey{key("a", v1alpha1.KeyActive, 0, 90*day)}
	Decide(Input{Now: at(30 * day), Settings: monthly, CurrentKeyID: "a", Secret: SecretCurrent, Keys: keys})
	if keys[0].State != v1alpha1.KeyActive || !keys[0].NotAfter.Time.Equal(at(90*day)) {
		t.Fatalf("input modified: %+v", keys[0])
	}
}

func TestWithNewKey(t *testing.T) {
	p := Decide(Input{Now: at(30*day + 500*time.Millisecond), Settings: monthly, CurrentKeyID: "a", Secret: SecretCurrent,
		Keys: []v1alpha1.IssuedKey{key("a", v1alpha1.KeyActive, 0, 90*day)}})
	keys := p.WithNewKey("b", "sha256:b")
	if len(keys) != 2 || keys[0].ID != "b" || keys[0].State != v1alpha1.KeyActive {
		t.Fatalf("keys = %+v", keys)
	}
	if !keys[0].IssuedAt.Time.Equal(at(30*day)) || !keys[0].NotAfter.Time.Equal(at(120*day)) {
		t.Fatalf("new key times = %s, %s", keys[0].IssuedAt, keys[0].NotAfter)
	}
}

func TestTrim(t *testing.T) {
	var keys []v1alpha1.IssuedKey
	// 3 retiring keys among 20 finished ones: all valid keys are kept, oldest finished dropped.
	keys = append(keys, key("new", v1alpha1.KeyActive, 0, day))
	for i := 0; i < 20; i++ {
		st := v1alpha1.KeyExpired
		if i%7 == 0 {
			st = v1alpha1.KeyRetiring
		}
		keys = append(keys, key(string(rune('a'+i)), st, 0, day))
	}
	out := trim(keys, 16)
	if len(out) != 16 || out[0].ID != "new" {
		t.Fatalf("len %d, first %s", len(out), out[0].ID)
	}
	for _, id := range []string{"a", "h", "o"} {
		if find(out, id) == nil {
			t.Errorf("retiring key %s dropped while finished keys remain", id)
		}
	}
	if find(out, "t") != nil {
		t.Error("oldest finished key kept")
	}
	// 20 retiring keys: the oldest retiring ones go, the active one never does.
	keys = []v1alpha1.IssuedKey{key("new", v1alpha1.KeyActive, 0, day)}
	for i := 0; i < 20; i++ {
		keys = append(keys, key(string(rune('a'+i)), v1alpha1.KeyRetiring, 0, day))
	}
	out = trim(keys, 16)
	if len(out) != 16 || out[0].ID != "new" || out[15].ID != "o" {
		t.Fatalf("got %d keys, first %s, last %s", len(out), out[0].ID, out[len(out)-1].ID)
	}
}

func TestClassifySecret(t *testing.T) {
	keys := []v1alpha1.IssuedKey{key("b", v1alpha1.KeyActive, 0, day), key("a", v1alpha1.KeyRetiring, 0, day), key("z", v1alpha1.KeyExpired, 0, day)}
	for _, tc := range []struct {
		name          string
		exists, owned bool
		hash          string
		want          SecretState
	}{
		{"missing", false, false, "", SecretMissing},
		{"foreign", true, false, "sha256:b", SecretForeign},
		{"current", true, true, "sha256:b", SecretCurrent},
		{"previous (a crash between the writes)", true, true, "sha256:a", SecretTampered},
		{"older", true, true, "sha256:z", SecretTampered},
		{"emptied", true, true, "", SecretTampered},
		{"edited", true, true, "sha256:x", SecretTampered},
	} {
		if got := ClassifySecret(tc.exists, tc.owned, tc.hash, keys, "b"); got != tc.want {
			t.Errorf("%s: got %d, want %d", tc.name, got, tc.want)
		}
	}
}

func find(keys []v1alpha1.IssuedKey, id string) *v1alpha1.IssuedKey {
	for i := range keys {
		if keys[i].ID == id {
			return &keys[i]
		}
	}
	return nil
}

func checkTime(t *testing.T, name string, got time.Time, want time.Duration) {
	t.Helper()
	if want < 0 {
		if !got.IsZero() {
			t.Errorf("%s = %s, want zero", name, got.Sub(t0))
		}
		return
	}
	if !got.Equal(at(want)) {
		t.Errorf("%s = %v, want %s", name, got.Sub(t0), want)
	}
}

var (
	pastedKey = mustKey()
	pastedID  = keys.ID(pastedKey)
)

func mustKey() string {
	k, err := keys.Generate("ks", "live")
	if err != nil {
		panic(err)
	}
	return k.Plaintext()
}

func TestParseRevokeRequest(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		ids     []string
		all     bool
		problem string
	}{
		{name: "ids", in: "aaaaaaaaaaaa, bbbbbbbbbbbb", ids: []string{"aaaaaaaaaaaa", "bbbbbbbbbbbb"}},
		{name: "all", in: "all", all: true},
		{name: "a pasted key becomes its id", in: pastedKey, ids: []string{pastedID}},
		{name: "a key next to an id", in: "aaaaaaaaaaaa," + pastedKey, ids: []string{"aaaaaaaaaaaa", pastedID}},
		{name: "empty", in: " , ", problem: "is empty"},
		{name: "garbage names its position only", in: "aaaaaaaaaaaa,secret-value", problem: "entry 2 is not"},
		{name: "a key with a broken checksum is garbage", in: brokenChecksum(pastedKey), problem: "entry 1 is not"},
		{name: "too many entries", in: strings.Repeat("aaaaaaaaaaaa,", MaxRevokeEntries+1), problem: "more than 64 entries"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ids, all, problem := ParseRevokeRequest(tc.in)
			if !slices.Equal(ids, tc.ids) || all != tc.all || !strings.Contains(problem, tc.problem) || (tc.problem == "") != (problem == "") {
				t.Errorf("ParseRevokeRequest = %v, %v, %q; want %v, %v, %q", ids, all, problem, tc.ids, tc.all, tc.problem)
			}
			if problem != "" && (strings.Contains(problem, "secret-value") || strings.Contains(problem, pastedKey[:20])) {
				t.Errorf("problem %q repeats the annotation value", problem)
			}
		})
	}
}

func TestRequestHandled(t *testing.T) {
	for _, tc := range []struct {
		v, handled string
		want       bool
	}{
		{"", "", true},
		{"1", "", false},
		{"1", RequestDigest("1"), true},
		{"1", "1", true}, // recorded verbatim by earlier releases
		{"2", RequestDigest("1"), false},
	} {
		if got := RequestHandled(tc.v, tc.handled); got != tc.want {
			t.Errorf("RequestHandled(%q, %q) = %v, want %v", tc.v, tc.handled, got, tc.want)
		}
	}
	if d := RequestDigest(pastedKey); strings.Contains(d, pastedKey) || !strings.HasPrefix(d, "sha256:") || len(d) != 71 {
		t.Errorf("RequestDigest = %q", d)
	}
}

// FuzzParseRevokeRequest: any annotation value parses without panicking, yields only 12-hex-digit ids,
// and is never repeated in the problem it reports.
func FuzzParseRevokeRequest(f *testing.F) {
	for _, seed := range []string{"all", "aaaaaaaaaaaa", "aaaaaaaaaaaa, bbbbbbbbbbbb", pastedKey, "all," + pastedKey, "", ",,,", "the leaked one", strings.Repeat("a,", 100)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		ids, all, problem := ParseRevokeRequest(v)
		if problem != "" {
			if len(ids) > 0 || all {
				t.Fatalf("a problem and something to revoke: %v %v %q", ids, all, problem)
			}
			if !problemShape.MatchString(problem) {
				t.Fatalf("problem %q is not one of the fixed messages (it may repeat the value)", problem)
			}
			return
		}
		if len(ids) > MaxRevokeEntries {
			t.Fatalf("%d ids", len(ids))
		}
		for _, id := range ids {
			if !keyIDPattern.MatchString(id) {
				t.Fatalf("id %q", id)
			}
		}
		if d := RequestDigest(v); v != "" && !digestShape.MatchString(d) {
			t.Fatalf("digest %q", d)
		}
	})
}

var (
	problemShape = regexp.MustCompile(`^keysmith\.dev/revoke (has more than 64 entries|entry [0-9]+ is not "all", a 12-hex-digit key id or a key|is empty); no key was revoked$`)
	digestShape  = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
)

func TestRequests(t *testing.T) {
	active := []v1alpha1.IssuedKey{key("aaaaaaaaaaaa", v1alpha1.KeyActive, 0, 90*day), key("bbbbbbbbbbbb", v1alpha1.KeyRetiring, 0, 6*day)}
	for _, tc := range []struct {
		name       string
		in         Input
		states     map[string]v1alpha1.KeyState
		handledRev string
		handledRot string
		inactive   string
		problem    bool
	}{
		{name: "a revoke request is recorded though nothing else happens",
			in:     Input{RevokeRequest: "aaaaaaaaaaaa", RotateRequest: "r"},
			states: map[string]v1alpha1.KeyState{"aaaaaaaaaaaa": v1alpha1.KeyRevoked, "bbbbbbbbbbbb": v1alpha1.KeyRetiring}, handledRev: RequestDigest("aaaaaaaaaaaa")},
		{name: "disabled revokes everything and handles both requests",
			in:         Input{Disabled: true, RevokeRequest: "x", RotateRequest: "r"},
			states:     map[string]v1alpha1.KeyState{"aaaaaaaaaaaa": v1alpha1.KeyRevoked, "bbbbbbbbbbbb": v1alpha1.KeyRevoked},
			handledRev: RequestDigest("x"), handledRot: RequestDigest("r"), inactive: v1alpha1.ReasonDisabled},
		{name: "a handled request does nothing", in: Input{RevokeRequest: "all", HandledRevokeRequest: RequestDigest("all")},
			states: map[string]v1alpha1.KeyState{"aaaaaaaaaaaa": v1alpha1.KeyActive}, handledRev: RequestDigest("all")},
		{name: "a malformed request is handled and reported", in: Input{RevokeRequest: "oops"},
			states: map[string]v1alpha1.KeyState{"aaaaaaaaaaaa": v1alpha1.KeyActive}, handledRev: RequestDigest("oops"), problem: true},
		{name: "a verbatim record of an earlier release becomes its digest, annotation gone",
			in:     Input{HandledRevokeRequest: "the leaked one", HandledRotateRequest: "1764230400"},
			states: map[string]v1alpha1.KeyState{"aaaaaaaaaaaa": v1alpha1.KeyActive}, handledRev: RequestDigest("the leaked one"), handledRot: RequestDigest("1764230400")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.Now, tc.in.Keys, tc.in.CurrentKeyID = at(day), active, "aaaaaaaaaaaa"
			p := Requests(tc.in)
			for id, st := range tc.states {
				if got := find(p.Keys, id).State; got != st {
					t.Errorf("key %s = %s, want %s", id, got, st)
				}
			}
			if p.HandledRevokeRequest != tc.handledRev || p.HandledRotateRequest != tc.handledRot {
				t.Errorf("handled = %q, %q; want %q, %q", p.HandledRevokeRequest, p.HandledRotateRequest, tc.handledRev, tc.handledRot)
			}
			if p.Inactive != tc.inactive || (p.RevokeProblem != "") != tc.problem || p.Issue != TriggerNone {
				t.Errorf("inactive %q, problem %q, issue %q", p.Inactive, p.RevokeProblem, p.Issue)
			}
			if active[0].State != v1alpha1.KeyActive {
				t.Fatal("Requests modified its input")
			}
		})
	}
}

// brokenChecksum changes the last character of key (its checksum) to another one.
func brokenChecksum(key string) string {
	last := key[len(key)-1]
	if last == 'x' {
		return key[:len(key)-1] + "y"
	}
	return key[:len(key)-1] + "x"
}
