package keys

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

func TestGenerateFormat(t *testing.T) {
	re := regexp.MustCompile(Pattern)
	seen := map[string]bool{}
	for _, tc := range []struct{ prefix, env string }{
		{"ks", Live}, {"ks", Test}, {"acme1234", Live}, {"a1", Test},
	} {
		for i := 0; i < 200; i++ {
			k, err := Generate(tc.prefix, tc.env)
			if err != nil {
				t.Fatalf("Generate(%q,%q): %v", tc.prefix, tc.env, err)
			}
			s := k.Plaintext()
			if !re.MatchString(s) {
				t.Fatalf("generated key does not match %s (length %d)", Pattern, len(s))
			}
			if !strings.HasPrefix(s, tc.prefix+"_"+tc.env+"_") {
				t.Fatalf("generated key lacks prefix %s_%s_", tc.prefix, tc.env)
			}
			if seen[s] {
				t.Fatal("duplicate key generated")
			}
			seen[s] = true
			p, err := Parse(s)
			if err != nil || p != k {
				t.Fatalf("Parse(generated) = %v, %v", p == k, err)
			}
		}
	}
}

func TestGenerateRejectsBadInput(t *testing.T) {
	for _, tc := range []struct {
		prefix, env string
		want        error
	}{
		{"k", Live, ErrPrefix},
		{"abcdefghi", Live, ErrPrefix},
		{"KS", Live, ErrPrefix},
		{"k_s", Live, ErrPrefix},
		{"ks", "prod", ErrEnv},
		{"ks", "", ErrEnv},
	} {
		if _, err := Generate(tc.prefix, tc.env); !errors.Is(err, tc.want) {
			t.Errorf("Generate(%q,%q) error = %v, want %v", tc.prefix, tc.env, err, tc.want)
		}
	}
}

// The random part must be unbiased: with a reader that yields every byte value equally often, every
// base62 character must come out equally often.
func TestRandomBase62Unbiased(t *testing.T) {
	src := make([]byte, 256*64)
	for i := range src {
		src[i] = byte(i)
	}
	dst := make([]byte, 248*64/256*4) // consume a whole multiple of the cycle
	if err := randomBase62(bytes.NewReader(src), dst); err != nil {
		t.Fatal(err)
	}
	counts := map[byte]int{}
	for _, c := range dst {
		counts[c]++
	}
	if len(counts) != 62 {
		t.Fatalf("got %d distinct characters, want 62", len(counts))
	}
	for c, n := range counts {
		if n != counts['0'] {
			t.Fatalf("character %q appears %d times, '0' appears %d times", c, n, counts['0'])
		}
	}
}

func TestParse(t *testing.T) {
	good, err := Generate("ks", Live)
	if err != nil {
		t.Fatal(err)
	}
	s := good.Plaintext()
	flip := func(i int) string {
		b := []byte(s)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	for _, tc := range []struct {
		name string
		in   string
		want error
	}{
		{"valid", s, nil},
		{"empty", "", ErrMalformed},
		{"no body", "ks_live_", ErrMalformed},
		{"short body", s[:len(s)-1], ErrMalformed},
		{"long body", s + "A", ErrMalformed},
		{"unknown environment", strings.Replace(s, "_live_", "_prod_", 1), ErrMalformed},
		{"uppercase prefix", "KS" + s[2:], ErrMalformed},
		{"one-letter prefix", s[1:], ErrMalformed},
		{"missing separator", strings.Replace(s, "ks_", "ks-", 1), ErrMalformed},
		{"non-base62 body", s[:len(s)-3] + "-" + s[len(s)-2:], ErrMalformed},
		{"whitespace", " " + s, ErrMalformed},
		{"random part changed", flip(len(s) - BodyLength + 3), ErrChecksum},
		{"checksum changed", flip(len(s) - 1), ErrChecksum},
		{"valid long prefix", "abcdefgh" + s[2:], nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Parse error = %v, want %v", err, tc.want)
			}
			if Valid(tc.in) != (tc.want == nil) {
				t.Fatalf("Valid = %v, want %v", !(tc.want == nil), tc.want == nil)
			}
			if err != nil && len(tc.in) > 8 && strings.Contains(err.Error(), tc.in[8:]) {
				t.Fatal("error message contains key material")
			}
		})
	}
}

func TestKnownChecksum(t *testing.T) {
	// The CRC32 of thirty "0" characters, decoded from base62
	// independently, so that a change of the checksum scheme breaks this test.
	random := strings.Repeat("0", RandomLength)
	var out [ChecksumLength]byte
	putChecksum(out[:], []byte(random))
	v := uint64(0)
	for _, c := range out {
		v = v*62 + uint64(strings.IndexByte(base62, c))
	}
	const want = 0x77E5DB82 // zlib.crc32(b"0"*30) in Python, an independent implementation
	if v != want {
		t.Fatalf("checksum of thirty zeros decodes to %#x, want %#x", v, want)
	}
}

func TestHashAndID(t *testing.T) {
	k := "ks_test_000000000000000000000000000000000000"
	h := Hash(k)
	if !strings.HasPrefix(h, "sha256:") || len(h) != 7+64 {
		t.Fatalf("Hash = %q", h)
	}
	if ID(k) != h[7:7+IDLength] {
		t.Fatalf("ID %q is not the start of the hash %q", ID(k), h)
	}
	if !Matches(k, h) {
		t.Fatal("Matches(key, Hash(key)) = false")
	}
	for _, bad := range []string{"", "sha256:", "md5:" + h[7:], h[:len(h)-1], h + "0", strings.ToUpper(h[:7]) + h[7:], h[:10] + "zz" + h[12:]} {
		if Matches(k, bad) {
			t.Fatalf("Matches accepted hash %q", bad)
		}
	}
	if Matches(k+"x", h) {
		t.Fatal("Matches accepted another key")
	}
	d, err := ParseHash(h)
	if err != nil || !d.Equal(Sum(k)) || d.String() != h {
		t.Fatalf("ParseHash round trip failed: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	k, _ := Generate("ks", Live)
	f.Add(k.Plaintext())
	f.Add("ks_test_")
	f.Add("")
	f.Add("abcdefgh_live_000000000000000000000000000000000000")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := Parse(s)
		if (err == nil) != Valid(s) {
			t.Fatalf("Parse and Valid disagree")
		}
		if err != nil {
			if len(s) >= 8 && strings.Contains(err.Error(), s) {
				t.Fatalf("error contains the input")
			}
			return
		}
		if p.Plaintext() != s {
			t.Fatalf("round trip changed the key")
		}
		if !regexp.MustCompile(Pattern).MatchString(s) {
			t.Fatalf("accepted key does not match the documented pattern")
		}
		if ValidatePrefix(p.Prefix) != nil {
			t.Fatalf("accepted key has an invalid prefix")
		}
	})
}

func BenchmarkValidAndSum(b *testing.B) {
	k, _ := Generate("ks", Live)
	s := k.Plaintext()
	b.ReportAllocs()
	for b.Loop() {
		if !Valid(s) {
			b.Fatal("invalid")
		}
		_ = Sum(s)
	}
}

func TestKeyPrintsRedacted(t *testing.T) {
	k, _ := Generate("ks", Live)
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s", k, k, k, k)} {
		if strings.Contains(s, k.Body) || strings.Contains(s, k.Body[:RandomLength]) {
			t.Fatalf("printing a Key shows its body: %s", s)
		}
	}
}
