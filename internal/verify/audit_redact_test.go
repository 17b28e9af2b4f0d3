package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/go-logr/logr"
	"google.golang.org/grpc/peer"

	"github.com/keysmith-dev/keysmith/internal/keys"
)

// testKey builds a valid key from a 30-character random part, with the checksum computed as README.md
// documents it (base62 of the CRC32 of the random part, 6 digits, most significant first), independently
// of package keys, so that the table's keys are deterministic and keys.Valid checks them.
func testKey(t testing.TB, prefix, env string, seed uint64) string {
	t.Helper()
	const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	r := rand.New(rand.NewPCG(seed, 0x6b6579))
	random := make([]byte, keys.RandomLength)
	for i := range random {
		random[i] = digits[r.IntN(len(digits))]
	}
	sum := make([]byte, keys.ChecksumLength)
	for v, i := crc32.ChecksumIEEE(random), keys.ChecksumLength-1; i >= 0; i-- {
		sum[i], v = digits[v%62], v/62
	}
	k := prefix + "_" + env + "_" + string(random) + string(sum)
	if !keys.Valid(k) {
		t.Fatalf("test key %d is not valid", seed)
	}
	return k
}

// badChecksum returns k with its last character changed: key-shaped, not valid.
func badChecksum(t testing.TB, k string) string {
	t.Helper()
	last := byte('A')
	if k[len(k)-1] == 'A' {
		last = 'B'
	}
	near := k[:len(k)-1] + string(last)
	if keys.Valid(near) {
		t.Fatal("the near-key is valid")
	}
	return near
}

// validKeysIn counts, by brute force, the substrings of s that keys.Valid accepts: every start, every
// prefix length. It is the fuzz target's oracle, independent of the scan in redactKeys.
func validKeysIn(s string) int {
	n := 0
	for p := range len(s) {
		for l := keys.MinPrefixLength; l <= keys.MaxPrefixLength; l++ {
			if e := p + l + keyEnvLen + keys.BodyLength; e <= len(s) && keys.Valid(s[p:e]) {
				n++
			}
		}
	}
	return n
}

func marker(k string) string { return "<key:" + keys.ID(k) + ">" }

// TestRedactKeys is the table of redactKeys: keys anywhere in a path, a query, a method or a caller,
// several of them, prefixes of 2 and 8 characters, near-keys, keys cut short by truncation, and text
// that only looks a little like a key, which passes unchanged.
func TestRedactKeys(t *testing.T) {
	k := testKey(t, "ks", "live", 1)
	k2 := testKey(t, "ks", "live", 2)
	short := testKey(t, "ab", "test", 3)      // a 2-character prefix
	long := testKey(t, "abcdefgh", "live", 4) // an 8-character prefix
	digits := testKey(t, "a1", "test", 5)
	near := badChecksum(t, k)
	body := k[len(k)-keys.BodyLength:]
	for _, tc := range []struct {
		name string
		in   string
		cut  bool
		want string
	}{
		{"empty", "", false, ""},
		{"no key", "/orders/42?page=2&sort=desc", false, "/orders/42?page=2&sort=desc"},
		{"key in the path", "/orders/" + k + "/items", false, "/orders/" + marker(k) + "/items"},
		{"key in the query", "/orders?api_key=" + k + "&page=2", false, "/orders?api_key=" + marker(k) + "&page=2"},
		{"key as the whole query value at the end", "/orders?api_key=" + k, false, "/orders?api_key=" + marker(k)},
		{"key at the start", k + "/orders", false, marker(k) + "/orders"},
		{"key at the end", "/orders/" + k, false, "/orders/" + marker(k)},
		{"key alone (a method, a caller)", k, false, marker(k)},
		{"key after a bearer word", "Bearer " + k, false, "Bearer " + marker(k)},
		{"several keys", "/a/" + k + "?x=" + k2 + "&y=" + k, false, "/a/" + marker(k) + "?x=" + marker(k2) + "&y=" + marker(k)},
		{"adjacent keys", k + k2, false, marker(k) + marker(k2)},
		{"keys separated by an underscore", k + "_" + k2, false, marker(k) + "_" + marker(k2)},
		{"2-character prefix", "/x?k=" + short, false, "/x?k=" + marker(short)},
		{"8-character prefix", "/x?k=" + long + "&z", false, "/x?k=" + marker(long) + "&z"},
		{"prefix with digits", "/" + digits, false, "/" + marker(digits)},
		{"test environment", "?" + short + "," + k, false, "?" + marker(short) + "," + marker(k)},
		{"prefix longer than 8: the last 8 are the key's", "xy" + long, false, "xy" + marker(long)},
		{"prefix of one character", "/k_live_" + body, false, "/" + redactedKey},
		{"no prefix", "/_live_" + body, false, "/" + redactedKey},
		{"uppercase prefix", "/KS_live_" + body, false, "/KS" + redactedKey},
		{"bad checksum", "/orders?api_key=" + near + "&page=2", false, "/orders?api_key=" + redactedKey + "&page=2"},
		{"bad checksum at the start and a key at the end", near + "/" + k, false, redactedKey + "/" + marker(k)},
		{"body longer than 36", "/" + k + "Z9", false, "/" + marker(k) + "Z9"},
		{"body of 35, not cut", "/ks_live_" + body[:35] + "/x", false, "/ks_live_" + body[:35] + "/x"},
		{"body of 35 at the end, not cut", "/ks_live_" + body[:35], false, "/ks_live_" + body[:35]},
		{"cut inside the body", "/orders?api_key=" + k[:30], true, "/orders?api_key=" + redactedKey},
		{"cut after one body character: <redacted> would not fit, the body is cut off", "/orders?k=" + k[:9], true, "/orders?k=ks_live_"},
		{"cut after three body characters, no prefix", "/orders?k=" + k[2:11], true, "/orders?k=_live_"},
		{"cut after four body characters, no prefix", "/orders?k=" + k[2:12], true, "/orders?k=" + redactedKey},
		{"cut after two body characters of an 8-character prefix key", long[:16], true, redactedKey},
		{"cut right after the separator: nothing secret", "/orders?k=ks_live_", true, "/orders?k=ks_live_"},
		{"cut inside the separator", "/orders?k=ks_liv", true, "/orders?k=ks_liv"},
		{"cut: a whole key then a cut one", k + "&" + k2[:20], true, marker(k) + "&" + redactedKey},
		{"cut, but the partial body is not at the end", "/ks_live_abc/def", true, "/ks_live_abc/def"},
		{"cut method of an 8-character prefix key", long[:MaxAuditMethod], true, redactedKey},
		{"near miss: _live_ in a word", "/my_live_stream/orders_test_results", false, "/my_live_stream/orders_test_results"},
		{"near miss: uppercase environment", "/ks_LIVE_" + body, false, "/ks_LIVE_" + body},
		{"near miss: other environment", "/ks_prod_" + body, false, "/ks_prod_" + body},
		{"near miss: non-base62 in the body", "/ks_live_" + body[:20] + "-" + body[21:], false, "/ks_live_" + body[:20] + "-" + body[21:]},
		{"separators sharing an underscore: live is a prefix", "_live_test_" + body, false, "_" + marker("live_test_"+body)},
		{"separators sharing an underscore, bad checksum", "_live_test_" + near[8:], false, "_" + redactedKey},
		{"unicode around a key", "/é/" + k + "/ü", false, "/é/" + marker(k) + "/ü"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := redactKeys(tc.in, tc.cut)
			if got != tc.want {
				t.Fatalf("redactKeys(%s, %v)\n got %s\nwant %s", showKeys(tc.in), tc.cut, showKeys(got), showKeys(tc.want))
			}
			if n := validKeysIn(got); n != 0 {
				t.Fatalf("%d valid keys left", n)
			}
			if len(got) > len(tc.in) {
				t.Fatalf("grew from %d to %d bytes", len(tc.in), len(got))
			}
			if again := redactKeys(got, tc.cut); again != got {
				t.Fatalf("not idempotent: %s", showKeys(again))
			}
		})
	}
}

// showKeys is s with the bodies of the keys in it shown as … (a failing test prints no key, even a
// made-up one).
func showKeys(s string) string {
	return regexp.MustCompile(`_(live|test)_[0-9A-Za-z]{1,36}`).ReplaceAllStringFunc(s, func(m string) string { return m[:keyEnvLen] + "…" })
}

// TestRedactKeysDoesNotAllocateForCleanText: a record without anything key-shaped costs the writer a
// scan and nothing else.
func TestRedactKeysDoesNotAllocateForCleanText(t *testing.T) {
	path := strings.Repeat("/my_live_stream?orders_test_=1", MaxAuditPath/30)
	if n := testing.AllocsPerRun(100, func() { _ = redactKeys(path, true) }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
	rec := AuditRecord{Caller: "203.0.113.7", Method: "GET", Path: path, Scopes: []string{"users:read"}, AcceptNamespaces: []string{"pay"}}
	if n := testing.AllocsPerRun(100, func() { r := rec; r.redactKeys() }); n != 0 {
		t.Fatalf("%v allocations for a record", n)
	}
}

// TestAuditRecordRedactsKeys goes through Record and the writer: every free-text field, keys that the
// auditor's truncation cuts short, and the record as written (JSON, with <key:…> unescaped).
func TestAuditRecordRedactsKeys(t *testing.T) {
	f := newFixture(t)
	k := testKey(t, "ks", "live", 10)
	long := testKey(t, "abcdefgh", "test", 11)
	near := badChecksum(t, k)
	pad := strings.Repeat("p", MaxAuditPath-len("/?k=")-20)
	for _, tc := range []struct {
		name                     string
		info                     RequestInfo
		scopes                   []string
		caller, method, path     string
		wantScopes               []string
		truncated                bool
		secretsThatMustNotRemain []string
	}{
		{name: "key in the query of the path",
			info:   RequestInfo{Caller: "203.0.113.7", Method: "GET", Path: "/orders?api_key=" + k + "&page=2"},
			caller: "203.0.113.7", method: "GET", path: "/orders?api_key=" + marker(k) + "&page=2", secretsThatMustNotRemain: []string{k}},
		{name: "key as the caller, an 8-character prefix key as the method (cut to 32)",
			info:   RequestInfo{Caller: k, Method: long, Path: "/x"},
			caller: marker(k), method: redactedKey, path: "/x", truncated: true, secretsThatMustNotRemain: []string{k, long}},
		{name: "a key the path's truncation cuts short",
			info:   RequestInfo{Caller: "203.0.113.7", Method: "GET", Path: "/" + pad + "?k=" + k},
			caller: "203.0.113.7", method: "GET", path: "/" + pad + "?k=" + redactedKey, truncated: true, secretsThatMustNotRemain: []string{k}},
		{name: "a near-key and a key, several places",
			info:   RequestInfo{Caller: near, Method: k, Path: near + "/" + k},
			caller: redactedKey, method: redactedKey, path: redactedKey + "/" + marker(k), truncated: true, secretsThatMustNotRemain: []string{k, near}},
		{name: "a scope that holds a key (only possible for a lowercase body; kept out by redaction anyway)",
			info:   RequestInfo{Caller: "203.0.113.7", Method: "GET", Path: "/x"},
			scopes: []string{"users:read", "x:" + strings.ToLower(k)}, caller: "203.0.113.7", method: "GET", path: "/x",
			wantScopes: []string{"users:read", "x:" + redactKeys(strings.ToLower(k), false)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			a := NewAuditor(&buf, AuditOptions{Log: logr.Discard()})
			scopes := append([]string(nil), tc.scopes...)
			a.Record(f.clk.Now(), Result{Code: CodeNotFound}, Request{Key: "ks_live_nope", Scopes: scopes}, tc.info, 0)
			recs := drain(t, a, &buf)
			line := buf.String()
			if len(recs) != 1 {
				t.Fatalf("%d records", len(recs))
			}
			r := recs[0]
			if r.Caller != tc.caller || r.Method != tc.method || r.Path != tc.path || r.Truncated != tc.truncated {
				t.Fatalf("caller %s, method %s, path %s, truncated %v\nwant caller %s, method %s, path %s, truncated %v",
					showKeys(r.Caller), showKeys(r.Method), showKeys(r.Path), r.Truncated, showKeys(tc.caller), showKeys(tc.method), showKeys(tc.path), tc.truncated)
			}
			if tc.wantScopes != nil && strings.Join(r.Scopes, " ") != strings.Join(tc.wantScopes, " ") {
				t.Fatalf("scopes %s", showKeys(strings.Join(r.Scopes, " ")))
			}
			if strings.Join(scopes, " ") != strings.Join(tc.scopes, " ") {
				t.Fatal("redaction changed the request's scopes")
			}
			if n := validKeysIn(line); n != 0 {
				t.Fatalf("%d valid keys written", n)
			}
			for _, s := range tc.secretsThatMustNotRemain {
				body := s[len(s)-keys.BodyLength:]
				for i := 0; i+12 <= len(body); i++ {
					if strings.Contains(line, body[i:i+12]) {
						t.Fatalf("12 characters of a body (offset %d) written", i)
					}
				}
			}
			if strings.Contains(tc.path, "<key:") && !strings.Contains(line, `"path":"`+tc.path+`"`) {
				t.Fatal("the redaction is escaped in the written line")
			}
		})
	}
}

// TestFrontEndsAuditNoForwardedKeys: through the HTTP and gRPC front ends, a trusted proxy forwards the
// client's URI with its query (nginx's $request_uri), a method, and Envoy's path; an untrusted client
// puts a key in /authz/<path>. No key is written; valid ones are named by id.
func TestFrontEndsAuditNoForwardedKeys(t *testing.T) {
	f := newFixture(t)
	var buf bytes.Buffer
	s := newService(t, f, &buf)
	s.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	other := testKey(t, "acme1234", "test", 20)
	near := badChecksum(t, f.active)

	forwarded := httptest.NewRequest("GET", "/authz?scopes=users:read", nil) // from 192.0.2.1, trusted
	forwarded.Header.Set("Authorization", "Bearer "+f.active)
	forwarded.Header.Set("X-Original-URI", "/orders/7?api_key="+f.active+"&sig="+near)
	forwarded.Header.Set("X-Original-Method", f.active)
	forwarded.Header.Set("X-Forwarded-For", "203.0.113.7")
	direct := httptest.NewRequest("GET", "/authz/orders/"+other+"?api_key="+f.active, nil)
	direct.RemoteAddr = "198.51.100.9:4711" // not trusted: the record holds its own path
	direct.Header.Set("X-Api-Key", f.active)
	for _, req := range []*http.Request{forwarded, direct} {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d", rec.Code)
		}
	}
	check := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
		Method: "GET", Path: "/envoy?token=" + other, Headers: map[string]string{"authorization": "Bearer " + f.active}}}}}
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 4711}})
	if out, err := (&ExtAuthz{Service: s}).Check(ctx, check); err != nil || out.GetStatus().GetCode() != 0 {
		t.Fatalf("gRPC check: %v, %v", out.GetStatus(), err)
	}

	recs := drain(t, s.Audit, &buf)
	got := map[string]string{}
	for _, r := range recs {
		got[r.Path] = r.Caller + " " + r.Method
	}
	want := map[string]string{
		"/orders/7?api_key=" + marker(f.active) + "&sig=" + redactedKey: "203.0.113.7 " + redactedKey,
		"/authz/orders/" + marker(other):                                "198.51.100.9 GET",
		"/envoy?token=" + marker(other):                                 "192.0.2.1 GET",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("records\n got %s\nwant %s", showKeys(fmt.Sprint(got)), showKeys(fmt.Sprint(want)))
	}
	if n := validKeysIn(buf.String()); n != 0 {
		t.Fatalf("%d valid keys written", n)
	}
}

var (
	keyShapedRE   = regexp.MustCompile(`_(live|test)_[0-9A-Za-z]{36}`)
	partialTailRE = regexp.MustCompile(`_(live|test)_[0-9A-Za-z]{1,35}$`)
)

// FuzzRedactKeys: whatever the text, the output holds no substring that keys.Valid accepts (counted by
// brute force) and nothing key-shaped ("_live_" or "_test_" and 36 base62 characters; when cut, also a
// body cut short at the end), is never longer, and redacting it again changes nothing; text without
// anything key-shaped passes unchanged.
func FuzzRedactKeys(f *testing.F) {
	k := testKey(f, "ks", "live", 30)
	long := testKey(f, "abcdefgh", "test", 31)
	near := badChecksum(f, k)
	for _, s := range []string{
		"", "/orders/42?page=2", "/orders?api_key=" + k, k, k + k, k + "_" + long, "xy" + long, near,
		"/_live_" + k[8:], long[:MaxAuditMethod], "/my_live_stream", "_live_test_" + k[8:], "/é/" + k + "\xff",
		"/orders?api_key=" + k[:30], "ks_live_", k[:len(k)-1],
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, cut bool) {
		out := redactKeys(s, cut)
		if n := validKeysIn(out); n != 0 {
			t.Fatalf("%d valid keys in the output", n)
		}
		if len(out) > len(s) {
			t.Fatalf("grew from %d to %d bytes", len(s), len(out))
		}
		if again := redactKeys(out, cut); again != out {
			t.Fatalf("not idempotent: %s, then %s", showKeys(out), showKeys(again))
		}
		shaped := keyShapedRE.MatchString(s) || cut && partialTailRE.MatchString(s)
		if !shaped && out != s {
			t.Fatalf("changed text with nothing key-shaped: %s to %s", showKeys(s), showKeys(out))
		}
		if keyShapedRE.MatchString(out) || cut && partialTailRE.MatchString(out) {
			t.Fatalf("left something key-shaped: %s", showKeys(out))
		}
	})
}

// BenchmarkAuditedAuthzHandler is BenchmarkAuthzHandler behind a trusted proxy, with the audit trail
// running (to io.Discard): the request path, Record included. Redaction happens in the writer goroutine,
// so the figures must not depend on whether the forwarded URI holds a key.
func BenchmarkAuditedAuthzHandler(b *testing.B) {
	f := newFixture(b)
	for _, bc := range []struct{ name, uri string }{
		{"plain", "/orders/42?page=2&sort=desc"},
		{"key-in-query", "/orders/42?page=2&api_key=" + gen(b)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := newService(b, f, io.Discard)
			s.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error)
			go func() { done <- s.Audit.Run(ctx) }()
			h := s.Handler()
			req := httptest.NewRequest("GET", "/authz?scopes=users:read", nil)
			req.Header.Set("Authorization", "Bearer "+f.active)
			req.Header.Set("X-Original-URI", bc.uri)
			req.Header.Set("X-Original-Method", "GET")
			req.Header.Set("X-Forwarded-For", "203.0.113.7")
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatal(rec.Code)
				}
			}
			b.StopTimer()
			cancel()
			<-done
		})
	}
}

// BenchmarkAuditWriter is the writer goroutine's cost per record (encoding, and redaction when the
// record holds something key-shaped), for a short path, a 1 KiB path without a key and with keys.
func BenchmarkAuditWriter(b *testing.B) {
	key := gen(b)
	long := "/" + strings.Repeat("orders_live/", MaxAuditPath/12+1)
	nearMisses := strings.Repeat("/my_live_stream", MaxAuditPath/15+1)
	for _, bc := range []struct{ name, path string }{
		{"short", "/orders/42?page=2"},
		{"1KiB-no-key", long[:MaxAuditPath]},
		{"1KiB-near-misses", nearMisses[:MaxAuditPath]},
		{"key-in-query", "/orders/42?page=2&api_key=" + key},
		{"1KiB-3-keys", (long[:MaxAuditPath-3*len(key)-6] + "?a=" + key + "&b=" + key + "&" + key)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			a := NewAuditor(io.Discard, AuditOptions{Log: logr.Discard()})
			w := &auditWriter{a: a}
			w.enc = json.NewEncoder(&w.buf)
			rec := AuditRecord{Code: CodeValid, KeyID: "0123456789ab", Namespace: "pay", Name: "billing",
				Scopes: []string{"users:read"}, Caller: "203.0.113.7", Method: "GET", Path: bc.path}
			b.ReportAllocs()
			for b.Loop() {
				w.add(rec)
				if w.records == 64 {
					w.flush()
				}
			}
		})
	}
}

// BenchmarkRedactKeys is the scan alone, on a 1 KiB field: nothing key-shaped (two substring searches),
// many near misses ("_live_" without a body), and three keys.
func BenchmarkRedactKeys(b *testing.B) {
	key := gen(b)
	clean := strings.Repeat("/orders/42?page=2", MaxAuditPath/17+1)[:MaxAuditPath]
	misses := strings.Repeat("/my_live_stream", MaxAuditPath/15+1)[:MaxAuditPath]
	keyed := clean[:MaxAuditPath-3*len(key)-6] + "?a=" + key + "&b=" + key + "&" + key
	for _, bc := range []struct{ name, s string }{{"1KiB-clean", clean}, {"1KiB-near-misses", misses}, {"1KiB-3-keys", keyed}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = redactKeys(bc.s, true)
			}
		})
	}
}
