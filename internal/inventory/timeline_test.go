package inventory

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
)

func line(evs []Event) string {
	var out []string
	for _, e := range evs {
		s := e.When + " " + string(e.Kind) + " " + e.KeyID
		if e.Reason != "" {
			s += " (" + e.Reason + ")"
		}
		if e.Until != nil {
			s += " until " + Relative(*e.Until, now)
		}
		if e.Future {
			s += " [future]"
		}
		out = append(out, s)
	}
	return strings.Join(out, "\n")
}

func TestTimeline(t *testing.T) {
	key := func(id string, state v1alpha1.KeyState, issued, notAfter time.Duration) v1alpha1.IssuedKey {
		return v1alpha1.IssuedKey{ID: id, State: state, IssuedAt: at(issued), NotAfter: at(notAfter)}
	}
	revoked := func(k v1alpha1.IssuedKey, when time.Duration, reason string) v1alpha1.IssuedKey {
		k.State, k.RevokedAt, k.Reason = v1alpha1.KeyRevoked, atp(when), reason
		return k
	}
	used := func(k v1alpha1.IssuedKey, when time.Duration) v1alpha1.IssuedKey {
		k.LastUsedAt = atp(when)
		return k
	}
	tests := []struct {
		name string
		keys []v1alpha1.IssuedKey // newest first, as status
		next *time.Duration
		want string
	}{
		{name: "no keys", want: ""},
		{name: "one key, never used", keys: []v1alpha1.IssuedKey{key("a", v1alpha1.KeyActive, -time.Hour, 90*day)},
			want: "1h ago Issued a\nin 90d Expires a [future]"},
		{name: "rotation with overlap, then the retiring key expired", next: ptr(20 * day), keys: []v1alpha1.IssuedKey{
			used(key("c", v1alpha1.KeyActive, -10*day, 80*day), -2*time.Hour),
			used(key("b", v1alpha1.KeyExpired, -40*day, -9*day), -10*day-time.Hour),
			key("a", v1alpha1.KeyExpired, -70*day, -39*day),
		}, want: strings.Join([]string{
			"70d ago Issued a", "40d ago Rotated b", "40d ago Retiring a until 39d ago", "39d ago Expired a",
			"10d ago LastUsed b", "10d ago Rotated c", "10d ago Retiring b until 9d ago", "9d ago Expired b",
			"2h ago LastUsed c", "in 20d RotationScheduled c [future]", "in 80d Expires c [future]",
		}, "\n")},
		{name: "a retiring key still accepted", keys: []v1alpha1.IssuedKey{
			key("b", v1alpha1.KeyActive, -time.Hour, 90*day),
			key("a", v1alpha1.KeyRetiring, -30*day, 23*time.Hour),
		}, want: "30d ago Issued a\n1h ago Rotated b\n1h ago Retiring a until in 23h\nin 23h Expires a [future]\nin 90d Expires b [future]"},
		{name: "rotation with overlap 0s", keys: []v1alpha1.IssuedKey{
			key("b", v1alpha1.KeyActive, -time.Hour, 90*day),
			key("a", v1alpha1.KeyExpired, -30*day, -time.Hour),
		}, want: "30d ago Issued a\n1h ago Expired a\n1h ago Rotated b\nin 90d Expires b [future]"},
		{name: "the current key revoked: a fresh key at once, not a rotation", keys: []v1alpha1.IssuedKey{
			key("b", v1alpha1.KeyActive, -time.Hour, 90*day),
			revoked(key("a", v1alpha1.KeyActive, -30*day, 60*day), -time.Hour, "Manual"),
		}, want: "30d ago Issued a\n1h ago Revoked a (Manual)\n1h ago Issued b\nin 90d Expires b [future]"},
		{name: "expired without rotation, renewed days later", keys: []v1alpha1.IssuedKey{
			key("b", v1alpha1.KeyActive, -time.Hour, 90*day),
			key("a", v1alpha1.KeyExpired, -100*day, -10*day),
		}, want: "100d ago Issued a\n10d ago Expired a\n1h ago Issued b\nin 90d Expires b [future]"},
		{name: "disabled then enabled", keys: []v1alpha1.IssuedKey{
			key("c", v1alpha1.KeyActive, -time.Hour, 90*day),
			revoked(key("b", v1alpha1.KeyActive, -20*day, 70*day), -5*day, "Disabled"),
			revoked(key("a", v1alpha1.KeyActive, -40*day, 50*day), -5*day, "Disabled"),
		}, want: "40d ago Issued a\n20d ago Rotated b\n20d ago Retiring a until 5d ago\n5d ago Revoked a (Disabled)\n5d ago Revoked b (Disabled)\n1h ago Issued c\nin 90d Expires c [future]"},
		{name: "three revocations within one second keep their order", keys: []v1alpha1.IssuedKey{
			key("c", v1alpha1.KeyActive, -2*time.Hour, 90*day),
			revoked(key("b", v1alpha1.KeyActive, -2*time.Hour, 90*day), -2*time.Hour, "Manual"),
			revoked(key("a", v1alpha1.KeyActive, -3*time.Hour, 90*day), -2*time.Hour, "Manual"),
		}, want: "3h ago Issued a\n2h ago Revoked a (Manual)\n2h ago Issued b\n2h ago Revoked b (Manual)\n2h ago Issued c\nin 90d Expires c [future]"},
		// A rotation shortens the old key's notAfter to the new key's issue + the overlap (1d here); a
		// revocation of the old key in that same second is still after the rotation.
		{name: "rotate, then revoke the old key in the same second", keys: []v1alpha1.IssuedKey{
			key("b", v1alpha1.KeyActive, -time.Hour, 90*day),
			revoked(key("a", v1alpha1.KeyRetiring, -30*day, -time.Hour+day), -time.Hour, "Manual"),
		}, want: "30d ago Issued a\n1h ago Rotated b\n1h ago Retiring a until 1h ago\n1h ago Revoked a (Manual)\nin 90d Expires b [future]"},
		{name: "rotate, then revoke the old key a second later", keys: []v1alpha1.IssuedKey{
			key("b", v1alpha1.KeyActive, -time.Hour, 90*day),
			revoked(key("a", v1alpha1.KeyRetiring, -30*day, -time.Hour+day), -time.Hour+time.Second, "Manual"),
		}, want: "30d ago Issued a\n1h ago Rotated b\n1h ago Retiring a until 59m ago\n59m ago Revoked a (Manual)\nin 90d Expires b [future]"},
		{name: "rotate, then revoke both keys in the same second: a fresh key", keys: []v1alpha1.IssuedKey{
			key("c", v1alpha1.KeyActive, -time.Hour, 90*day),
			revoked(key("b", v1alpha1.KeyActive, -time.Hour, 90*day), -time.Hour, "Manual"),
			revoked(key("a", v1alpha1.KeyRetiring, -30*day, -time.Hour+day), -time.Hour, "Manual"),
		}, want: "30d ago Issued a\n1h ago Rotated b\n1h ago Retiring a until 1h ago\n1h ago Revoked a (Manual)\n1h ago Revoked b (Manual)\n1h ago Issued c\nin 90d Expires c [future]"},
		{name: "revoke the current key, then its fresh key issued in the same second (notAfter untouched): no rotation", keys: []v1alpha1.IssuedKey{
			key("b", v1alpha1.KeyActive, -time.Hour, 90*day),
			revoked(key("a", v1alpha1.KeyActive, -30*day, 60*day), -time.Hour, "Manual"),
		}, want: "30d ago Issued a\n1h ago Revoked a (Manual)\n1h ago Issued b\nin 90d Expires b [future]"},
		{name: "a rotated-out key revoked during its overlap: retiring until the revocation", keys: []v1alpha1.IssuedKey{
			key("b", v1alpha1.KeyActive, -10*time.Hour, 90*day),
			revoked(key("a", v1alpha1.KeyRetiring, -30*day, -10*time.Hour+day), -2*time.Hour, "Manual"),
		}, want: "30d ago Issued a\n10h ago Rotated b\n10h ago Retiring a until 2h ago\n2h ago Revoked a (Manual)\nin 90d Expires b [future]"},
		{name: "a key whose notAfter passed before keysmith recorded it", keys: []v1alpha1.IssuedKey{
			key("a", v1alpha1.KeyActive, -91*day, -day),
		}, want: "91d ago Issued a\n24h ago Expired a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := apiKey()
			k.Status.Keys = tt.keys
			k.Status.NextRotationAt = nil
			if tt.next != nil {
				k.Status.NextRotationAt = atp(*tt.next)
			}
			if len(tt.keys) > 0 {
				k.Status.CurrentKeyID = tt.keys[0].ID
			}
			evs := Timeline(k, now)
			if got := line(evs); got != tt.want {
				t.Errorf("timeline:\n%s\nwant:\n%s", got, tt.want)
			}
			for i, e := range evs {
				if e.Message == "" {
					t.Errorf("event %d has no message", i)
				}
				if i > 0 && e.At.Before(evs[i-1].At) {
					t.Errorf("event %d is before event %d", i, i-1)
				}
			}
		})
	}
}

// The overlap that recognises a rotation comes from status.effective, else from the spec (here 2h).
func TestTimelineSameSecondOverlapFromSpec(t *testing.T) {
	k := apiKey(func(k *v1alpha1.ApiKey) {
		k.Status.Effective = nil
		k.Spec.Rotation.Overlap = dur(2 * time.Hour)
		k.Status.NextRotationAt = nil
		k.Status.CurrentKeyID = "b"
		k.Status.Keys = []v1alpha1.IssuedKey{
			{ID: "b", State: v1alpha1.KeyActive, IssuedAt: at(-time.Hour), NotAfter: at(90 * day)},
			{ID: "a", State: v1alpha1.KeyRevoked, Reason: "Manual", IssuedAt: at(-30 * day), NotAfter: at(time.Hour), RevokedAt: atp(-time.Hour)},
		}
	})
	want := "30d ago Issued a\n1h ago Rotated b\n1h ago Retiring a until 1h ago\n1h ago Revoked a (Manual)\nin 90d Expires b [future]"
	if got := line(Timeline(k, now)); got != want {
		t.Errorf("timeline:\n%s\nwant:\n%s", got, want)
	}
	evs := Timeline(k, now)
	if evs[1].Message != "key b issued, replacing a" || evs[2].Message != "key a retiring, accepted until its revocation at "+at(-time.Hour).UTC().Format(time.RFC3339)+" (1h ago)" {
		t.Errorf("messages %q, %q", evs[1].Message, evs[2].Message)
	}
}

func TestTimelineJSON(t *testing.T) {
	b, err := json.Marshal(Timeline(apiKey(), now))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `{"at":"2026-11-17T12:00:00Z","kind":"Rotated","keyID":"aaaaaaaaaaaa","when":"10d ago","message":"key aaaaaaaaaaaa issued, replacing bbbbbbbbbbbb"}`) {
		t.Errorf("JSON: %s", b)
	}
}

func TestTimelineDisabledHasNoScheduledRotation(t *testing.T) {
	k := apiKey(func(k *v1alpha1.ApiKey) { k.Spec.Disabled = true })
	for _, e := range Timeline(k, now) {
		if e.Kind == EventRotationScheduled {
			t.Errorf("a disabled ApiKey shows a scheduled rotation")
		}
	}
}

func ptr[T any](v T) *T { return &v }
