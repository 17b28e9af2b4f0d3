package keys

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	k, err := Generate("ks", Live)
	if err != nil {
		t.Fatal(err)
	}
	key := k.Plaintext()
	other, _ := Generate("acme1234", Test)
	tests := []struct {
		name, in, want string
		hasKey         bool
	}{
		{"empty", "", "", false},
		{"no key", "key id 0123456789ab, ks_live_short", "key id 0123456789ab, ks_live_short", false},
		{"a key alone", key, "<redacted>", true},
		{"a key in a message", `unknown command "` + key + `" for "kubectl apikey"`, `unknown command "<redacted>" for "kubectl apikey"`, true},
		{"two keys", key + "," + other.Plaintext(), "<redacted>,<redacted>", true},
		{"a key in a URL", "GET /orders?api_key=" + key + "&x=1", "GET /orders?api_key=<redacted>&x=1", true},
		{"a key with a character too many", key + "x", "<redacted>", true},
		{"a key cut short", key[:len(key)-10], "<redacted>", false},
		{"a bad checksum", key[:len(key)-1] + "!", "<redacted>!", false},
		{"run into a longer prefix", "abcdefghij" + key, "abcd<redacted>", true},
		{"20 body characters", "ks_test_" + strings.Repeat("a", 20), "<redacted>", false},
		{"19 body characters", "ks_test_" + strings.Repeat("a", 19), "ks_test_" + strings.Repeat("a", 19), false},
		{"the prefix swallowed by a near-key before it", "xx_live_" + strings.Repeat("0", 20) + key, "<redacted><redacted>", true},
		{"no prefix", "_live_" + k.Body, "<redacted>", false},
		{"not an environment", "ks_prod_" + k.Body, "ks_prod_" + k.Body, false},
		{"an uppercase prefix", "KS_live_" + k.Body, "KS<redacted>", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Redact(tt.in)
			if got != tt.want {
				t.Errorf("Redact = %q, want %q", got, tt.want)
			}
			if string(RedactBytes([]byte(tt.in))) != tt.want {
				t.Errorf("RedactBytes differs from Redact")
			}
			if ContainsKey(tt.in) != tt.hasKey {
				t.Errorf("ContainsKey = %v, want %v", ContainsKey(tt.in), tt.hasKey)
			}
			if HasKeyShape(tt.in) != (got != tt.in) {
				t.Errorf("HasKeyShape = %v", HasKeyShape(tt.in))
			}
			if ContainsKey(got) || HasKeyShape(got) || Redact(got) != got {
				t.Errorf("Redact left a key shape in %q", got)
			}
		})
	}
	if n := CountKeys(key + " " + key[:len(key)-1] + "x " + other.Plaintext()); n != 2 {
		t.Errorf("CountKeys = %d, want 2", n)
	}
	// JSON stays valid: the key alphabet needs no escaping.
	b, _ := json.Marshal(map[string]string{"message": "refused: " + key})
	var v map[string]string
	if err := json.Unmarshal(RedactBytes(b), &v); err != nil || v["message"] != "refused: <redacted>" {
		t.Errorf("redacted JSON %s: %v", RedactBytes(b), err)
	}
}

// FuzzRedact: whatever the text, and wherever a key is planted in it, Redact leaves no key, nothing shaped
// like one, and no 20 characters of the key's body; it is idempotent.
func FuzzRedact(f *testing.F) {
	k, err := Generate("ks", Live)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"", "ks_live_", "a_live_" + strings.Repeat("Z", 40), "\x00ks_test_", "ks_live_ks_live_" + k.Body, "é" + k.Plaintext()} {
		f.Add(s, 0)
		f.Add(s, len(s)/2)
	}
	f.Fuzz(func(t *testing.T, s string, at int) {
		for _, in := range []string{s, plant(s, k.Plaintext(), at)} {
			got := Redact(in)
			if ContainsKey(got) || HasKeyShape(got) || Redact(got) != got || string(RedactBytes([]byte(in))) != got {
				t.Fatalf("Redact(%q) = %q", in, got)
			}
		}
		if got := Redact(plant(s, k.Plaintext(), at)); strings.Contains(got, k.Body[:20]) && !strings.Contains(s, k.Body[:20]) {
			t.Fatalf("Redact left 20 characters of the planted key's body: %q", got)
		}
	})
}

// plant inserts key into s at byte offset at (bounded), with a space on either side when at is odd.
func plant(s, key string, at int) string {
	if at < 0 {
		at = -at
	}
	if len(s) > 0 {
		at %= len(s) + 1
	} else {
		at = 0
	}
	if at%2 == 1 {
		key = " " + key + " "
	}
	return s[:at] + key + s[at:]
}
