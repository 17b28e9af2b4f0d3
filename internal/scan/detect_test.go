package scan

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/keysmith-dev/keysmith/internal/keys"
)

// oracle is the documented pattern, run by the regexp package: what the detector must find.
var oracle = regexp.MustCompile(`\b[a-z0-9]{2,8}_(live|test)_[0-9A-Za-z]{36}\b`)

func mustKey(t testing.TB, prefix, env string) string {
	t.Helper()
	k, err := keys.Generate(prefix, env)
	if err != nil {
		t.Fatal(err)
	}
	return k.Plaintext()
}

// broken returns key with a checksum that no longer matches (a checksum character changed to another).
func broken(t testing.TB, key string) string {
	t.Helper()
	b := []byte(key)
	last := len(b) - 1
	if b[last] == 'x' {
		b[last] = 'y'
	} else {
		b[last] = 'x'
	}
	if keys.Valid(string(b)) {
		t.Fatal("broken key still valid")
	}
	return string(b)
}

type want struct {
	line, col int
	valid     bool
}

func TestFind(t *testing.T) {
	k := mustKey(t, "ks", keys.Live)
	kt := mustKey(t, "acme1234", keys.Test)
	bad := broken(t, mustKey(t, "bil", keys.Live))
	body := k[len("ks_live_"):]
	for _, tc := range []struct {
		name string
		text string
		want []want
	}{
		{"alone", k, []want{{1, 1, true}}},
		{"env file", "A=1\nAPI_KEY=" + k + "\n", []want{{2, 9, true}}},
		{"quoted json", `{"key": "` + k + `"}`, []want{{1, 10, true}}},
		{"url query", "GET /x?api_key=" + k + "&y=1 HTTP/1.1", []want{{1, 16, true}}},
		{"test environment, longest prefix", "token: " + kt, []want{{1, 8, true}}},
		{"bad checksum is reported, not valid", "x " + bad + "\n", []want{{1, 3, false}}},
		{"two on a line", k + " " + kt, []want{{1, 1, true}, {1, len(k) + 2, true}}},
		{"crlf lines", "a\r\nb\r\n  " + k + "\r\n", []want{{3, 3, true}}},
		{"after a dash", "x-" + k, []want{{1, 3, true}}},
		{"utf-8 before and after", "é" + k + "é", []want{{1, 3, true}}},
		{"followed by a dot", k + ".", []want{{1, 1, true}}},
		{"prefix of one character", "k_live_" + body, nil},
		{"prefix of nine characters", "abcdefghi_live_" + body, nil},
		{"uppercase prefix", "KS_live_" + body, nil},
		{"prefix after an underscore", "X_" + k, nil},
		{"prefix after a capital", "Xks_live_" + body, nil},
		{"prefix after a digit run making it too long", "1234567" + k, nil},
		{"unknown environment", "ks_prod_" + body, nil},
		{"body one short", k[:len(k)-1], nil},
		{"body one long", k + "a", nil},
		{"followed by an underscore", k + "_", nil},
		{"separator inside a separator", "ks_live_live_" + body, nil},
		{"empty", "", nil},
		{"separator only", "_live_", nil},
		{"separator at the very end", strings.Repeat("x", 40) + "_test_", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Find([]byte(tc.text))
			if len(got) != len(tc.want) {
				t.Fatalf("found %d matches, want %d", len(got), len(tc.want))
			}
			for i, w := range tc.want {
				g := got[i]
				if g.Line != w.line || g.Column != w.col || g.Valid != w.valid {
					t.Errorf("match %d at %d:%d valid %v, want %d:%d valid %v", i, g.Line, g.Column, g.Valid, w.line, w.col, w.valid)
				}
			}
			checkOracle(t, []byte(tc.text), got)
		})
	}
}

func TestFindingFields(t *testing.T) {
	k := mustKey(t, "bil", keys.Live)
	got := Find([]byte("key=" + k))
	if len(got) != 1 {
		t.Fatalf("found %d", len(got))
	}
	f := got[0]
	if f.Prefix != "bil" || f.Environment != keys.Live {
		t.Errorf("prefix %q environment %q", f.Prefix, f.Environment)
	}
	if want := k[:len("bil_live_")+RedactedBodyChars] + "…"; f.Redacted != want {
		t.Errorf("redacted %q", f.Redacted) // shows 4 characters of the body only
	}
	if f.ID() != keys.ID(k) || f.Digest() != keys.Sum(k) {
		t.Error("id or digest differs from internal/keys'")
	}
	if strings.Contains(fmt.Sprintf("%v %+v %#v", f, f, f), k[len("bil_live_")+RedactedBodyChars:]) {
		t.Error("printing a Finding shows more of the body than its redacted form")
	}
	bad := Find([]byte(broken(t, k)))
	if len(bad) != 1 || bad[0].Valid || bad[0].ID() != "" || bad[0].Digest() != (keys.Digest{}) {
		t.Error("a bad checksum has an id or a digest")
	}
}

// TestStreamBoundaries puts keys at every offset around the buffer's refills and checks the streamed
// scan finds what the whole-buffer scan and the oracle find, at the same lines and columns.
func TestStreamBoundaries(t *testing.T) {
	k := mustKey(t, "ks", keys.Live)
	bad := broken(t, mustKey(t, "abcdefgh", keys.Test))
	for _, size := range []int{2 * (lookBehind + lookAhead), 128, 257} {
		for off := 0; off < 2*size; off++ {
			var b bytes.Buffer
			for i := 0; i < off; i++ {
				if i%17 == 16 {
					b.WriteByte('\n')
				} else {
					b.WriteByte('a' + byte(i%26))
				}
			}
			b.WriteString(" " + k + " x\n" + bad + "\n")
			b.WriteString(strings.Repeat("y ", off%7))
			b.WriteString(k)
			data := b.Bytes()
			whole := Find(data)
			streamed := streamFind(t, data, size)
			checkOracle(t, data, whole)
			if len(whole) != 3 {
				t.Fatalf("size %d offset %d: %d matches", size, off, len(whole))
			}
			if !sameFindings(whole, streamed) {
				t.Fatalf("size %d offset %d: streamed %v, whole %v", size, off, positions(streamed), positions(whole))
			}
		}
	}
}

func streamFind(t testing.TB, data []byte, size int) []Finding {
	t.Helper()
	var out []Finding
	s := newStream(size)
	n, err := s.scan(&trickle{data: data, step: size/3 + 1}, false, func(buf []byte, m match) { out = append(out, finding(buf, m)) })
	if err != nil || n != int64(len(data)) {
		t.Fatalf("scan: %d bytes, %v", n, err)
	}
	return out
}

// trickle returns at most step bytes a read, like a pipe.
type trickle struct {
	data []byte
	step int
}

func (r *trickle) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.step)], r.data)
	r.data = r.data[n:]
	return n, nil
}

func sameFindings(a, b []Finding) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func positions(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, fmt.Sprintf("%d:%d/%v", f.Line, f.Column, f.Valid))
	}
	return out
}

// checkOracle compares findings with the regexp's matches: same positions (as line and column), same
// checksum verdicts, same redacted forms and digests.
func checkOracle(t testing.TB, data []byte, got []Finding) {
	t.Helper()
	ms := oracle.FindAllIndex(data, -1)
	if len(ms) != len(got) {
		t.Fatalf("found %d matches, the pattern %d", len(got), len(ms))
	}
	for i, m := range ms {
		line := 1 + bytes.Count(data[:m[0]], []byte{'\n'})
		col := m[0] - bytes.LastIndexByte(data[:m[0]], '\n')
		s := string(data[m[0]:m[1]])
		g := got[i]
		if g.Line != line || g.Column != col {
			t.Fatalf("match %d at %d:%d, the pattern's at %d:%d", i, g.Line, g.Column, line, col)
		}
		if before := data[m[0]-col+1 : m[0]]; utf8.Valid(before) {
			if col16 := len(utf16.Encode([]rune(string(before)))) + 1; g.ColumnUTF16 != col16 {
				t.Fatalf("match %d at UTF-16 column %d, want %d", i, g.ColumnUTF16, col16)
			}
		}
		if g.Valid != keys.Valid(s) {
			t.Fatalf("match %d: valid %v, keys.Valid %v", i, g.Valid, keys.Valid(s))
		}
		if g.Redacted != s[:len(s)-keys.BodyLength+RedactedBodyChars]+"…" {
			t.Fatalf("match %d: redacted form differs", i)
		}
		if g.Valid && g.Digest() != keys.Sum(s) {
			t.Fatalf("match %d: digest differs", i)
		}
	}
}

// TestColumnUTF16 checks the columns in UTF-16 code units (SARIF's default) after characters of every
// UTF-8 length, streamed through buffers that split them.
func TestColumnUTF16(t *testing.T) {
	k := mustKey(t, "ks", keys.Live)
	for _, tc := range []struct {
		before        string
		column, col16 int
	}{
		{"", 1, 1},
		{"é ", 4, 3},       // 2 bytes, 1 unit
		{"€=", 5, 3},       // 3 bytes, 1 unit
		{"😀 ", 6, 4},       // 4 bytes, 2 units (a surrogate pair)
		{"x\né😀€ ", 11, 6}, // a line before
		{strings.Repeat("日本", 300) + " ", 1802, 602},
	} {
		data := []byte(strings.Repeat("ümlaut line\n", 3) + tc.before + k + " " + tc.before + k)
		for _, size := range []int{0, 2 * (lookBehind + lookAhead), 131} {
			fs := Find(data)
			if size > 0 {
				fs = streamFind(t, data, size)
			}
			checkOracle(t, data, fs)
			if len(fs) != 2 || fs[0].Column != tc.column || fs[0].ColumnUTF16 != tc.col16 {
				t.Fatalf("%q (buffer %d): %+v", tc.before, size, fs)
			}
		}
	}
}

// FuzzFind checks the detector against the documented pattern run by the regexp package, on whole
// buffers and streamed through small buffers that the input crosses.
func FuzzFind(f *testing.F) {
	k := mustKey(f, "ks", keys.Live)
	kt := mustKey(f, "a1", keys.Test)
	for _, s := range []string{
		"", k, "x=" + k + "\n", k + k, k + " " + kt, "_" + k, k + "_", "ks_live_", "é" + kt,
		broken(f, k), "ks_live_live_" + k[8:], strings.Repeat("_live_", 20) + k, "\x00" + k,
		"abcdefghi_test_" + kt[8:], "A\nB\r\n" + kt + "\n" + k,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		whole := Find(data)
		checkOracle(t, data, whole)
		for _, size := range []int{2 * (lookBehind + lookAhead), 131} {
			if got := streamFind(t, data, size); !sameFindings(got, whole) {
				t.Fatalf("streamed with a buffer of %d: %v, whole %v", size, positions(got), positions(whole))
			}
		}
	})
}

func BenchmarkFind(b *testing.B) {
	k := mustKey(b, "ks", keys.Live)
	var buf bytes.Buffer
	for buf.Len() < 4<<20 {
		fmt.Fprintf(&buf, "2026-12-01T10:%02d:00Z INFO handler request_id=%d user_name=alice path=/v1/orders status=200 latency_ms=12\n", buf.Len()%60, buf.Len())
		if buf.Len()%100 == 0 {
			buf.WriteString("api_key=" + k + "\n")
		}
	}
	data := buf.Bytes()
	s := newStream(DefaultBufferSize)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := s.scan(bytes.NewReader(data), true, func([]byte, match) {}); err != nil {
			b.Fatal(err)
		}
	}
}
