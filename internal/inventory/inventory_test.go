package inventory

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
)

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

func at(d time.Duration) metav1.Time   { return metav1.Time{Time: now.Add(d)} }
func atp(d time.Duration) *metav1.Time { t := at(d); return &t }
func dur(d time.Duration) *metav1.Duration {
	return &metav1.Duration{Duration: d}
}

func cond(typ, status, reason, msg string) metav1.Condition {
	return metav1.Condition{Type: typ, Status: metav1.ConditionStatus(status), Reason: reason, Message: msg}
}

// apiKey is a healthy rotating ApiKey: key a (current, issued 10 days ago, rotating in 20 days), key b
// retiring.
func apiKey(mut ...func(*v1alpha1.ApiKey)) *v1alpha1.ApiKey {
	k := &v1alpha1.ApiKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: "payments", Name: "billing-api", CreationTimestamp: at(-100 * day)},
		Spec: v1alpha1.ApiKeySpec{Scopes: []string{"users:read", "orgs:read"}, SecretName: "billing-api-key",
			Rotation: &v1alpha1.RotationSpec{Period: metav1.Duration{Duration: 30 * day}}},
		Status: v1alpha1.ApiKeyStatus{
			Conditions:     []metav1.Condition{cond("Ready", "True", "KeyActive", "Key aaaaaaaaaaaa is active")},
			CurrentKeyID:   "aaaaaaaaaaaa",
			NextRotationAt: atp(20 * day),
			LastUsedAt:     atp(-2 * time.Hour),
			Effective: &v1alpha1.EffectiveSettings{Environment: "live", ExpiresAfter: metav1.Duration{Duration: 90 * day},
				RotationPeriod: dur(30 * day), Overlap: dur(day), ExpiryWarning: metav1.Duration{Duration: 14 * day}},
			Keys: []v1alpha1.IssuedKey{
				{ID: "aaaaaaaaaaaa", State: v1alpha1.KeyActive, IssuedAt: at(-10 * day), NotAfter: at(80 * day), LastUsedAt: atp(-2 * time.Hour)},
				{ID: "bbbbbbbbbbbb", State: v1alpha1.KeyExpired, IssuedAt: at(-40 * day), NotAfter: at(-9 * day), LastUsedAt: atp(-10 * day)},
			},
		},
	}
	for _, m := range mut {
		m(k)
	}
	return k
}

func kinds(r Row) string {
	var out []string
	for _, w := range r.Warnings {
		out = append(out, string(w.Kind)+"="+w.Label)
	}
	return strings.Join(out, "; ")
}

func TestCompute(t *testing.T) {
	noRotation := func(k *v1alpha1.ApiKey) {
		k.Spec.Rotation = nil
		k.Status.NextRotationAt = nil
		k.Status.Effective.RotationPeriod = nil
	}
	stalled := func(reason, msg string) func(*v1alpha1.ApiKey) {
		return func(k *v1alpha1.ApiKey) {
			k.Status.Conditions = []metav1.Condition{cond("Ready", "False", reason, msg), cond("Stalled", "True", reason, msg)}
		}
	}
	tests := []struct {
		name      string
		key       *v1alpha1.ApiKey
		policies  []v1alpha1.ApiKeyPolicy
		warnings  string
		lastUsed  string
		expires   string
		rotation  string
		ready     string
		validKeys int
		unused    string
	}{
		{name: "healthy", key: apiKey(), warnings: "", lastUsed: "2h ago", expires: "in 80d", rotation: "in 20d", ready: "True", validKeys: 1, unused: "720h0m0s"},
		{name: "never used, recently issued", key: apiKey(func(k *v1alpha1.ApiKey) {
			k.Status.LastUsedAt = nil
			k.Status.Keys[0].LastUsedAt = nil
		}), lastUsed: "never", expires: "in 80d", rotation: "in 20d", ready: "True", validKeys: 1},
		{name: "never used for longer than the default window, counted from the current key's issue", key: apiKey(func(k *v1alpha1.ApiKey) {
			k.Status.LastUsedAt = nil
			k.Status.Keys[0].LastUsedAt = nil
			k.Status.Keys[0].IssuedAt = at(-41 * day)
		}), warnings: "Unused=unused 41d", lastUsed: "unused 41d", expires: "in 80d", rotation: "in 20d", ready: "True", validKeys: 1},
		{name: "last use of any key older than the window, even with a newer key", key: apiKey(func(k *v1alpha1.ApiKey) {
			k.Status.LastUsedAt = atp(-41 * day)
			k.Status.Keys[0].LastUsedAt = nil
			k.Status.Keys[0].IssuedAt = at(-1 * day)
		}), warnings: "Unused=unused 41d", lastUsed: "unused 41d", expires: "in 80d", rotation: "in 20d", ready: "True", validKeys: 1},
		{name: "just inside the default window", key: apiKey(func(k *v1alpha1.ApiKey) {
			k.Status.LastUsedAt = atp(-30*day + time.Second)
		}), lastUsed: "29d ago", expires: "in 80d", rotation: "in 20d", ready: "True", validKeys: 1},
		{name: "exactly the window", key: apiKey(func(k *v1alpha1.ApiKey) {
			k.Status.LastUsedAt = atp(-30 * day)
		}), warnings: "Unused=unused 30d", lastUsed: "unused 30d", expires: "in 80d", rotation: "in 20d", ready: "True", validKeys: 1},
		{name: "revokeUnusedAfter is the window", key: apiKey(func(k *v1alpha1.ApiKey) {
			k.Status.Effective.RevokeUnusedAfter = dur(48 * time.Hour)
			k.Status.LastUsedAt = atp(-3 * day)
		}), warnings: "Unused=unused 3d", lastUsed: "unused 3d", expires: "in 80d", rotation: "in 20d", ready: "True", validKeys: 1, unused: "48h0m0s"},
		{name: "current key revoked as unused", key: apiKey(stalled("Unused", "Key aaaaaaaaaaaa was revoked: unused"), func(k *v1alpha1.ApiKey) {
			k.Status.Keys[0].State, k.Status.Keys[0].RevokedAt, k.Status.Keys[0].Reason = v1alpha1.KeyRevoked, atp(-time.Hour), "Unused"
			k.Status.LastUsedAt = atp(-50 * day)
		}), warnings: "Unused=revoked unused", lastUsed: "50d ago", expires: "", rotation: "in 20d", ready: "False", validKeys: 0},
		{name: "expiring without rotation (computed)", key: apiKey(noRotation, func(k *v1alpha1.ApiKey) {
			k.Status.Keys[0].NotAfter = at(3 * day)
		}), warnings: "Expiring=expires in 3d", lastUsed: "2h ago", expires: "in 3d", ready: "True", validKeys: 1},
		{name: "expiring: ExpiringSoon condition", key: apiKey(noRotation, func(k *v1alpha1.ApiKey) {
			k.Status.Keys[0].NotAfter = at(20 * day) // outside 14d, but keysmith says so (a policy's longer warning)
			k.Status.Conditions = append(k.Status.Conditions, cond("ExpiringSoon", "True", "WillExpire", "Key expires"))
		}), warnings: "Expiring=expires in 20d", lastUsed: "2h ago", expires: "in 20d", ready: "True", validKeys: 1},
		{name: "not expiring: outside the warning", key: apiKey(noRotation, func(k *v1alpha1.ApiKey) {
			k.Status.Keys[0].NotAfter = at(14*day + time.Minute)
		}), lastUsed: "2h ago", expires: "in 14d", ready: "True", validKeys: 1},
		{name: "expiring at the edge of the warning", key: apiKey(noRotation, func(k *v1alpha1.ApiKey) {
			k.Status.Keys[0].NotAfter = at(14 * day)
		}), warnings: "Expiring=expires in 14d", lastUsed: "2h ago", expires: "in 14d", ready: "True", validKeys: 1},
		{name: "not expiring: a rotation comes first", key: apiKey(func(k *v1alpha1.ApiKey) {
			k.Status.Keys[0].NotAfter = at(3 * day)
			k.Status.NextRotationAt = atp(2 * day)
		}), lastUsed: "2h ago", expires: "in 3d", rotation: "in 2d", ready: "True", validKeys: 1},
		{name: "expiring: the rotation comes after the expiry", key: apiKey(func(k *v1alpha1.ApiKey) {
			k.Status.Keys[0].NotAfter = at(3 * day)
			k.Status.NextRotationAt = atp(4 * day)
		}), warnings: "Expiring=expires in 3d", lastUsed: "2h ago", expires: "in 3d", rotation: "in 4d", ready: "True", validKeys: 1},
		{name: "a policy's longer expiry warning", key: apiKey(noRotation, func(k *v1alpha1.ApiKey) {
			k.Status.Keys[0].NotAfter = at(20 * day)
			k.Status.Effective.ExpiryWarning = metav1.Duration{Duration: 30 * day}
		}), warnings: "Expiring=expires in 20d", lastUsed: "2h ago", expires: "in 20d", ready: "True", validKeys: 1},
		{name: "expired, not yet recorded", key: apiKey(noRotation, func(k *v1alpha1.ApiKey) {
			k.Status.Keys[0].NotAfter = at(-2 * time.Hour)
		}), warnings: "Expired=expired 2h ago", lastUsed: "2h ago", expires: "2h ago", ready: "True", validKeys: 0},
		{name: "expired and stalled", key: apiKey(noRotation, stalled("Expired", "Key aaaaaaaaaaaa expired"), func(k *v1alpha1.ApiKey) {
			k.Status.Keys[0].NotAfter, k.Status.Keys[0].State = at(-2*day), v1alpha1.KeyExpired
		}), warnings: "Expired=expired 2d ago", lastUsed: "2h ago", expires: "2d ago", ready: "False", validKeys: 0},
		{name: "stalled on a foreign Secret", key: apiKey(stalled("SecretConflict", "Secret billing-api-key exists and was not created by keysmith")),
			warnings: "Stalled=stalled: SecretConflict", lastUsed: "2h ago", expires: "in 80d", rotation: "in 20d", ready: "False", validKeys: 1},
		{name: "policy violation recorded; rotation blocked, so the key is expiring", key: apiKey(stalled("PolicyViolation", "ApiKeyPolicy production: rotation is required"), func(k *v1alpha1.ApiKey) {
			k.Status.Keys[0].NotAfter = at(10 * day)
		}), warnings: "PolicyViolation=policy violation; Expiring=expires in 10d", lastUsed: "2h ago", expires: "in 10d", rotation: "in 20d", ready: "False", validKeys: 1},
		{name: "policy violation not recorded yet", key: apiKey(noRotation), policies: []v1alpha1.ApiKeyPolicy{{
			ObjectMeta: metav1.ObjectMeta{Name: "production"}, Spec: v1alpha1.ApiKeyPolicySpec{RequireRotation: true}}},
			warnings: "PolicyViolation=policy violation", lastUsed: "2h ago", expires: "in 80d", ready: "True", validKeys: 1},
		{name: "not ready for a reason that is not progress", key: apiKey(func(k *v1alpha1.ApiKey) {
			k.Status.Conditions = []metav1.Condition{cond("Ready", "False", "Revoked", "the current key was revoked")}
		}), warnings: "NotReady=not ready: Revoked", lastUsed: "2h ago", expires: "in 80d", rotation: "in 20d", ready: "False", validKeys: 1},
		{name: "issuing is progress, not a warning", key: apiKey(func(k *v1alpha1.ApiKey) {
			k.Status.Conditions = []metav1.Condition{cond("Ready", "False", "Issuing", "issuing"), cond("Reconciling", "True", "Issuing", "issuing")}
		}), lastUsed: "2h ago", expires: "in 80d", rotation: "in 20d", ready: "False", validKeys: 1},
		{name: "disabled: information only", key: apiKey(func(k *v1alpha1.ApiKey) {
			k.Spec.Disabled = true
			k.Status.Conditions = []metav1.Condition{cond("Ready", "False", "Disabled", "disabled")}
			k.Status.Keys[0].State, k.Status.Keys[0].RevokedAt, k.Status.Keys[0].Reason = v1alpha1.KeyRevoked, atp(-time.Hour), "Disabled"
			k.Status.LastUsedAt = atp(-60 * day)
		}), warnings: "Disabled=disabled", lastUsed: "60d ago", rotation: "in 20d", ready: "False", validKeys: 0},
		{name: "deleting", key: apiKey(func(k *v1alpha1.ApiKey) { k.DeletionTimestamp = atp(-time.Second) }),
			warnings: "Deleting=deleting", lastUsed: "2h ago", expires: "in 80d", rotation: "in 20d", ready: "True", validKeys: 1},
		{name: "no status yet", key: apiKey(func(k *v1alpha1.ApiKey) { k.Status = v1alpha1.ApiKeyStatus{} }),
			lastUsed: "never", ready: "", validKeys: 0},
		{name: "several warnings, most severe first", key: apiKey(noRotation, stalled("SecretWriteFailed", "quota"), func(k *v1alpha1.ApiKey) {
			k.Status.Keys[0].NotAfter = at(5 * day)
			k.Status.LastUsedAt = atp(-31 * day)
		}), warnings: "Stalled=stalled: SecretWriteFailed; Expiring=expires in 5d; Unused=unused 31d", lastUsed: "unused 31d", expires: "in 5d", ready: "False", validKeys: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Compute(tt.key, now, tt.policies)
			if got := kinds(r); got != tt.warnings {
				t.Errorf("warnings = %q, want %q", got, tt.warnings)
			}
			if r.LastUsed != tt.lastUsed {
				t.Errorf("LastUsed = %q, want %q", r.LastUsed, tt.lastUsed)
			}
			if r.Expires != tt.expires {
				t.Errorf("Expires = %q, want %q", r.Expires, tt.expires)
			}
			if r.NextRotation != tt.rotation {
				t.Errorf("NextRotation = %q, want %q", r.NextRotation, tt.rotation)
			}
			if r.Ready != tt.ready {
				t.Errorf("Ready = %q, want %q", r.Ready, tt.ready)
			}
			if r.ValidKeys != tt.validKeys {
				t.Errorf("ValidKeys = %d, want %d", r.ValidKeys, tt.validKeys)
			}
			if tt.unused != "" && r.UnusedWindow != tt.unused {
				t.Errorf("UnusedWindow = %q, want %q", r.UnusedWindow, tt.unused)
			}
			for _, w := range r.Warnings {
				if w.Message == "" || w.Label == "" || w.Severity == "" {
					t.Errorf("warning %+v lacks a label, message or severity", w)
				}
			}
			if r.Flagged() != (tt.warnings != "" && !strings.HasPrefix(tt.warnings, "Disabled") && !strings.HasPrefix(tt.warnings, "Deleting")) {
				t.Errorf("Flagged() = %v", r.Flagged())
			}
		})
	}
}

func TestComputeColumns(t *testing.T) {
	r := Compute(apiKey(), now, nil)
	if r.Namespace != "payments" || r.Name != "billing-api" || r.CurrentKeyID != "aaaaaaaaaaaa" || r.SecretName != "billing-api-key" ||
		strings.Join(r.Scopes, ",") != "users:read,orgs:read" || r.Environment != "live" || r.Reason != "KeyActive" {
		t.Errorf("row = %+v", r)
	}
	if !r.ExpiresAt.Equal(now.Add(80*day)) || !r.NextRotationAt.Equal(now.Add(20*day)) || !r.LastUsedAt.Equal(now.Add(-2*time.Hour)) {
		t.Errorf("instants: %v %v %v", r.ExpiresAt, r.NextRotationAt, r.LastUsedAt)
	}
	if r.ExpiryWarning != "336h0m0s" || r.UnusedWindow != "720h0m0s" {
		t.Errorf("windows %s %s", r.ExpiryWarning, r.UnusedWindow)
	}
	// JSON: the names the dashboard serves.
	b, err := json.Marshal(Compute(apiKey(func(k *v1alpha1.ApiKey) { k.Status.LastUsedAt = atp(-31 * day) }), now, nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"namespace":"payments"`, `"currentKeyID":"aaaaaaaaaaaa"`, `"expiresAt":"2027-02-15T12:00:00Z"`, `"expires":"in 80d"`,
		`"lastUsed":"unused 31d"`, `"warnings":[{"kind":"Unused","severity":"warning","label":"unused 31d"`} {
		if !strings.Contains(string(b), field) {
			t.Errorf("JSON lacks %s: %s", field, b)
		}
	}
}

func TestComputeWithoutEffective(t *testing.T) {
	// Before keysmith wrote status.effective, the policies passed in give the windows and the names.
	k := apiKey(func(k *v1alpha1.ApiKey) { k.Status.Effective = nil })
	ps := []v1alpha1.ApiKeyPolicy{
		{ObjectMeta: metav1.ObjectMeta{Name: "a"}, Spec: v1alpha1.ApiKeyPolicySpec{ExpiryWarning: dur(21 * day), RevokeUnusedAfter: dur(10 * day)}},
		{ObjectMeta: metav1.ObjectMeta{Name: "b"}, Spec: v1alpha1.ApiKeyPolicySpec{ExpiryWarning: dur(7 * day), RevokeUnusedAfter: dur(20 * day)}},
	}
	r := Compute(k, now, ps)
	if r.ExpiryWarning != (21*day).String() || r.UnusedWindow != (10*day).String() || strings.Join(r.Policies, ",") != "a,b" {
		t.Errorf("windows %s %s, policies %v", r.ExpiryWarning, r.UnusedWindow, r.Policies)
	}
	r = Compute(k, now, nil)
	if r.ExpiryWarning != "336h0m0s" || r.UnusedWindow != "720h0m0s" || r.Policies != nil || r.Environment != "live" {
		t.Errorf("built-in windows %s %s %v %q", r.ExpiryWarning, r.UnusedWindow, r.Policies, r.Environment)
	}
}

func TestHuman(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 59 * time.Second: "59s", time.Minute: "1m", 59*time.Minute + 59*time.Second: "59m", time.Hour: "1h",
		47 * time.Hour: "47h", 48 * time.Hour: "2d", 41*day + 23*time.Hour: "41d", 729 * day: "729d", 730 * day: "2y",
		-3 * day: "3d",
	} {
		if got := Human(d); got != want {
			t.Errorf("Human(%v) = %q, want %q", d, got, want)
		}
	}
	for d, want := range map[time.Duration]string{
		3 * day: "in 3d", -2 * time.Hour: "2h ago", 0: "now", 999 * time.Millisecond: "now", -999 * time.Millisecond: "now",
		time.Second: "in 1s", -time.Second: "1s ago",
	} {
		if got := Relative(now.Add(d), now); got != want {
			t.Errorf("Relative(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestWarningsText(t *testing.T) {
	r := Row{Warnings: []Warning{{Label: "expires in 3d"}, {Label: "unused 41d"}}}
	if got := r.WarningsText(); got != "expires in 3d, unused 41d" {
		t.Errorf("WarningsText = %q", got)
	}
	if (Row{}).WarningsText() != "" {
		t.Error("empty row has warnings text")
	}
}

func TestSummarizeSecret(t *testing.T) {
	yes := true
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "billing-api-key", Labels: map[string]string{"app.kubernetes.io/managed-by": "keysmith"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "ApiKey", Name: "billing-api", Controller: &yes}}},
		Type: "keysmith.dev/api-key",
		Data: map[string][]byte{"api-key": []byte("ks_live_0123456789"), "key-id": []byte("aaaaaaaaaaaa"), "expires-at": []byte("2027-02-25T07:42:30Z")},
	}
	value := s.Data["api-key"]
	info := SummarizeSecret("billing-api-key", s)
	b, _ := json.Marshal(info)
	want := `{"name":"billing-api-key","exists":true,"type":"keysmith.dev/api-key","managedByKeysmith":true,"owner":"billing-api","data":[{"key":"api-key","length":18},{"key":"expires-at","length":20},{"key":"key-id","length":12}]}`
	if string(b) != want {
		t.Errorf("info = %s", b)
	}
	if strings.Trim(string(value), "\x00") != "" || s.Data != nil {
		t.Error("the values were not zeroed")
	}
	if info := SummarizeSecret("gone", nil); info.Exists || info.Name != "gone" {
		t.Errorf("missing: %+v", info)
	}
}
