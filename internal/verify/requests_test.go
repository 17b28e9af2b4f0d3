package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc/peer"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
)

func TestCheckConstraints(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name   string
		key    string
		scopes []string
		accept Constraints
		want   Code
	}{
		{"no constraints", f.active, nil, Constraints{}, CodeValid},
		{"its namespace", f.active, nil, Constraints{Namespaces: []string{"other", "pay"}}, CodeValid},
		{"its environment", f.active, nil, Constraints{Environment: v1alpha1.EnvironmentLive}, CodeValid},
		{"both", f.active, []string{"users:read"}, Constraints{Namespaces: []string{"pay"}, Environment: v1alpha1.EnvironmentLive}, CodeValid},
		{"another namespace", f.active, nil, Constraints{Namespaces: []string{"other"}}, CodeNotAccepted},
		{"another environment", f.active, nil, Constraints{Environment: v1alpha1.EnvironmentTest}, CodeNotAccepted},
		{"outside, and lacking a scope: constraints first", f.active, []string{"audit:read"}, Constraints{Namespaces: []string{"other"}}, CodeNotAccepted},
		{"revoked outside: states first", f.revoked, nil, Constraints{Namespaces: []string{"other"}}, CodeRevoked},
		{"expired outside: states first", f.expired, nil, Constraints{Environment: v1alpha1.EnvironmentTest}, CodeExpired},
		{"unknown", gen(t), nil, Constraints{Namespaces: []string{"pay"}}, CodeNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Check(f.ix, f.clk.Now(), Request{Key: tc.key, Scopes: tc.scopes, Accept: tc.accept})
			if r.Code != tc.want {
				t.Fatalf("code = %s, want %s", r.Code, tc.want)
			}
		})
	}
	// A refused use is no use.
	f.clk.Step(1e9)
	Check(f.ix, f.clk.Now(), Request{Key: f.retiring, Accept: Constraints{Namespaces: []string{"other"}}})
	if e := f.entry(t, f.retiring); e.lastUsed.used.Load() != 0 {
		t.Fatal("a key outside the constraints was recorded as used")
	}
}

func (f *fixture) entry(t *testing.T, key string) *Entry {
	t.Helper()
	r := Check(f.ix, f.clk.Now(), Request{Key: key, Accept: Constraints{Namespaces: []string{"-"}}})
	if r.Entry == nil {
		t.Fatal("no entry")
	}
	return r.Entry
}

func TestCheckWithConstraintsDoesNotAllocate(t *testing.T) {
	f := newFixture(t)
	now := f.clk.Now()
	req := Request{Key: f.active, Scopes: []string{"users:read"}, Accept: Constraints{Namespaces: []string{"a", "b", "pay"}, Environment: v1alpha1.EnvironmentLive}}
	if n := testing.AllocsPerRun(1000, func() { Check(f.ix, now, req) }); n != 0 {
		t.Fatalf("Check allocates %v times per hit", n)
	}
	req.Accept.Namespaces = []string{"other"}
	if n := testing.AllocsPerRun(1000, func() { Check(f.ix, now, req) }); n != 0 {
		t.Fatalf("Check allocates %v times per refusal", n)
	}
}

func TestAuthzConstraints(t *testing.T) {
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	s := &Service{Index: f.ix, Clock: f.clk, Metrics: NewMetrics(reg, func() float64 { return 0 })}
	h := s.Handler()
	for _, tc := range []struct {
		name       string
		target     string
		headers    map[string]string
		wantStatus int
		wantAuth   string
		wantCode   ErrorCode
	}{
		{"accepted namespace", "/authz?namespaces=other,pay", nil, 200, "", ""},
		{"accepted namespace and environment", "/authz?scopes=users:read&namespaces=pay&environment=live", nil, 200, "", ""},
		{"blanks and empty items", "/authz?namespaces=%20pay%20,,&environment=%20live", nil, 200, "", ""},
		{"another namespace", "/authz?namespaces=other", nil, 403, notAcceptedChallenge, ""},
		{"another environment", "/authz?environment=test", nil, 403, notAcceptedChallenge, ""},
		{"outside and lacking a scope", "/authz?scopes=audit:read&namespaces=other", nil, 403, notAcceptedChallenge, ""},
		{"Envoy's path_prefix form", "/authz?namespaces=pay&environment=live&path=/orders?page=2", nil, 200, "", ""},
		{"a client's path adds a constraint", "/authz?namespaces=pay&path=/orders?x=1&namespaces=pay", nil, 400, invalidRequestChallenge, ErrorInvalidConstraints},
		{"a client's path sets an environment", "/authz?path=/orders?environment=test", nil, 200, "", ""},
		{"namespaces twice", "/authz?namespaces=pay&namespaces=other", nil, 400, invalidRequestChallenge, ErrorInvalidConstraints},
		{"environment twice", "/authz?environment=live&environment=live", nil, 400, invalidRequestChallenge, ErrorInvalidConstraints},
		{"empty namespaces", "/authz?namespaces=", nil, 400, invalidRequestChallenge, ErrorInvalidConstraints},
		{"only commas", "/authz?namespaces=,,", nil, 400, invalidRequestChallenge, ErrorInvalidConstraints},
		{"not a label", "/authz?namespaces=pay,Pay_Team", nil, 400, invalidRequestChallenge, ErrorInvalidConstraints},
		{"a subdomain is not a namespace", "/authz?namespaces=pay.example", nil, 400, invalidRequestChallenge, ErrorInvalidConstraints},
		{"65 namespaces", "/authz?namespaces=" + strings.Repeat("pay,", MaxNamespaces+1), nil, 400, invalidRequestChallenge, ErrorInvalidConstraints},
		{"unknown environment", "/authz?environment=staging", nil, 400, invalidRequestChallenge, ErrorInvalidConstraints},
		{"empty environment", "/authz?environment=", nil, 400, invalidRequestChallenge, ErrorInvalidConstraints},
		{"no header form", "/authz", map[string]string{"Namespaces": "other", "Environment": "test", "X-Namespaces": "other"}, 200, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", tc.target, nil)
			req.Header.Set("Authorization", "Bearer "+f.active)
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d (%s)", rec.Code, tc.wantStatus, rec.Body.String())
			}
			if got := rec.Header().Get("WWW-Authenticate"); got != tc.wantAuth {
				t.Fatalf("WWW-Authenticate %q, want %q", got, tc.wantAuth)
			}
			if tc.wantStatus == 403 && (rec.Header().Get("X-ApiKey-Id") != "" || rec.Header().Get("X-ApiKey-Name") != "") {
				t.Fatal("identity disclosed for a key outside the constraints")
			}
			if tc.wantCode != "" {
				var e ErrorResponse
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Code != tc.wantCode {
					t.Fatalf("body %q, want code %s", rec.Body.String(), tc.wantCode)
				}
				if strings.Contains(e.Error, "Pay_Team") || strings.Contains(e.Error, "staging") {
					t.Fatal("the error echoes the input")
				}
			}
		})
	}
	if got := testCounter(t, reg, "keysmith_verify_invalid_requests_total"); got != 10 {
		t.Fatalf("invalid requests counted %v, want 10", got)
	}
}

func TestVerifyEndpointConstraints(t *testing.T) {
	f := newFixture(t)
	h := newService(t, f, nil).Handler()
	for _, tc := range []struct {
		name       string
		body       string
		wantStatus int
		wantCode   string
		identity   bool
	}{
		{"accepted", `{"key":"` + f.active + `","namespaces":["other","pay"],"environment":"live"}`, 200, "VALID", true},
		{"another namespace", `{"key":"` + f.active + `","namespaces":["other"]}`, 200, "NOT_ACCEPTED", false},
		{"another environment", `{"key":"` + f.active + `","environment":"test"}`, 200, "NOT_ACCEPTED", false},
		{"revoked inside", `{"key":"` + f.revoked + `","namespaces":["pay"]}`, 200, "REVOKED", true},
		{"revoked outside discloses nothing", `{"key":"` + f.revoked + `","namespaces":["other"]}`, 200, "REVOKED", false},
		{"null namespaces is no constraint", `{"key":"` + f.active + `","namespaces":null}`, 200, "VALID", true},
		{"empty namespaces", `{"key":"` + f.active + `","namespaces":[]}`, 400, "INVALID_CONSTRAINTS", false},
		{"bad namespace", `{"key":"` + f.active + `","namespaces":["UPPER"]}`, 400, "INVALID_CONSTRAINTS", false},
		{"bad environment", `{"key":"` + f.active + `","environment":"prod"}`, 400, "INVALID_CONSTRAINTS", false},
		{"namespaces of the wrong type", `{"key":"` + f.active + `","namespaces":"pay"}`, 400, "BAD_REQUEST", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/verify", strings.NewReader(tc.body)))
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d", rec.Code, tc.wantStatus)
			}
			var got map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if got["code"] != tc.wantCode {
				t.Fatalf("code %v, want %s", got["code"], tc.wantCode)
			}
			_, hasKey := got["apiKey"]
			_, hasID := got["keyId"]
			if hasKey != tc.identity || hasID != tc.identity {
				t.Fatalf("identity disclosed: %v, want %v (%s)", hasKey, tc.identity, rec.Body.String())
			}
		})
	}
}

func TestExtAuthzConstraints(t *testing.T) {
	f := newFixture(t)
	x := &ExtAuthz{Service: newService(t, f, nil)}
	for _, tc := range []struct {
		name       string
		extensions map[string]string
		headers    map[string]string
		wantCode   code.Code
		wantHTTP   int32
	}{
		{"accepted", map[string]string{"namespaces": "other,pay", "environment": "live"}, nil, code.Code_OK, 0},
		{"another namespace", map[string]string{"namespaces": "other"}, nil, code.Code_PERMISSION_DENIED, 403},
		{"another environment", map[string]string{"environment": "test"}, nil, code.Code_PERMISSION_DENIED, 403},
		{"headers never set constraints", nil, map[string]string{"namespaces": "other", "environment": "test"}, code.Code_OK, 0},
		{"empty namespaces", map[string]string{"namespaces": ""}, nil, code.Code_INVALID_ARGUMENT, 400},
		{"bad environment", map[string]string{"environment": "qa"}, nil, code.Code_INVALID_ARGUMENT, 400},
		{"65 scopes", map[string]string{"scopes": strings.Repeat("users:read,", MaxRequiredScopes+1)}, nil, code.Code_INVALID_ARGUMENT, 400},
		{"a malformed scope in the header", nil, map[string]string{"x-required-scopes": "users:read,NOT A SCOPE"}, code.Code_INVALID_ARGUMENT, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			headers := map[string]string{"authorization": "Bearer " + f.active}
			for k, v := range tc.headers {
				headers[k] = v
			}
			resp, err := x.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Request:           &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/orders", Headers: headers}},
				ContextExtensions: tc.extensions,
			}})
			if err != nil {
				t.Fatal(err)
			}
			if code.Code(resp.GetStatus().GetCode()) != tc.wantCode {
				t.Fatalf("grpc code %v, want %v", code.Code(resp.GetStatus().GetCode()), tc.wantCode)
			}
			d := resp.GetDeniedResponse()
			if int32(d.GetStatus().GetCode()) != tc.wantHTTP && tc.wantCode != code.Code_OK {
				t.Fatalf("http status %v, want %d", d.GetStatus().GetCode(), tc.wantHTTP)
			}
			hs := map[string]string{}
			for _, h := range d.GetHeaders() {
				hs[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
			}
			switch tc.wantHTTP {
			case 403:
				if hs["www-authenticate"] != notAcceptedChallenge || hs["x-apikey-id"] != "" {
					t.Fatalf("denied headers %v", hs)
				}
			case 400:
				if hs["www-authenticate"] != invalidRequestChallenge || !strings.Contains(d.GetBody(), `"code":"INVALID_`) || strings.Contains(d.GetBody(), "NOT A SCOPE") {
					t.Fatalf("invalid answer %v %q", hs, d.GetBody())
				}
			}
		})
	}
}

func TestRequiredScopeLimits(t *testing.T) {
	f := newFixture(t)
	var audit bytes.Buffer
	s := newService(t, f, &audit)
	h := s.Handler()
	scopes := func(n int, prefix string) []string {
		var out []string
		for i := 0; i < n; i++ {
			out = append(out, fmt.Sprintf("%s%d:read", prefix, i))
		}
		return out
	}
	authz := func(query, header string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "/authz?scopes="+url.QueryEscape(query), nil)
		req.Header.Set("X-Api-Key", f.active)
		if header != "" {
			req.Header.Set("X-Required-Scopes", header)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	verify := func(sc []string) *httptest.ResponseRecorder {
		b, _ := json.Marshal(VerifyRequest{Key: f.active, Scopes: sc})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/verify", bytes.NewReader(b)))
		return rec
	}
	wantInvalid := func(t *testing.T, rec *httptest.ResponseRecorder) {
		t.Helper()
		var e ErrorResponse
		if rec.Code != 400 || json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Code != ErrorInvalidScopes {
			t.Fatalf("got %d %s, want 400 INVALID_SCOPES", rec.Code, rec.Body.String())
		}
		if strings.Contains(rec.Body.String()+rec.Header().Get("WWW-Authenticate"), "marker") {
			t.Fatal("the answer echoes the input")
		}
	}
	t.Run("64 scopes are a question", func(t *testing.T) {
		if rec := authz(strings.Join(scopes(32, "marker"), ","), strings.Join(scopes(32, "other"), ",")); rec.Code != 403 {
			t.Fatalf("status %d", rec.Code)
		}
		if rec := verify(scopes(64, "marker")); rec.Code != 200 {
			t.Fatalf("status %d", rec.Code)
		}
	})
	t.Run("65 are refused", func(t *testing.T) {
		wantInvalid(t, authz(strings.Join(scopes(33, "marker"), ","), strings.Join(scopes(32, "other"), ",")))
		wantInvalid(t, verify(scopes(65, "marker")))
	})
	t.Run("malformed scopes are refused", func(t *testing.T) {
		for _, bad := range []string{"marker", "Marker:read", "marker:", ":read", "marker:read:write", "marker..x:read", "-marker:read", "marker_:read", "mark er:read", "marker:read\x00", strings.Repeat("m", 121) + ":markers"} {
			wantInvalid(t, authz("users:read,"+bad, ""))
			wantInvalid(t, verify([]string{"users:read", bad}))
		}
	})
	t.Run("a 1 MiB header of one-letter scopes", func(t *testing.T) {
		wantInvalid(t, authz("", strings.Repeat("a,", 1<<19)))
		wantInvalid(t, authz("", strings.Repeat("a:b,", 1<<18)))
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = s.Audit.Run(ctx)
	for _, l := range strings.Split(strings.TrimSpace(audit.String()), "\n") {
		var r AuditRecord
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		if len(r.Scopes) > MaxRequiredScopes {
			t.Fatalf("a record of %d scopes", len(r.Scopes))
		}
	}
	if n := strings.Count(audit.String(), "\n"); n != 2 {
		t.Fatalf("%d audit records, want 2: refused requests are not decisions", n)
	}
}

// TestParseScopesStopsAtTheLimit is the attack of 1 MiB of one-letter scopes: split first, it made half
// a million strings; the parser now holds at most MaxRequiredScopes of them and allocates a few KiB.
func TestParseScopesStopsAtTheLimit(t *testing.T) {
	for _, list := range []string{strings.Repeat("a:b,", 1<<18), strings.Repeat(" , ", 1<<18) + "a", strings.Repeat("a,", 1<<19)} {
		var got []string
		var err *requestError
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		allocs := testing.AllocsPerRun(10, func() { got, err = parseScopes(nil, list) })
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Fatal("accepted")
		}
		if len(got) > MaxRequiredScopes {
			t.Fatalf("holds %d scopes", len(got))
		}
		if perRun := (after.TotalAlloc - before.TotalAlloc) / 11; allocs > 10 || perRun > 8<<10 {
			t.Fatalf("%v allocations, %d bytes per parse of %d bytes", allocs, perRun, len(list))
		}
	}
}

// FuzzScopeShape checks that the verifier refuses exactly the required scopes that an ApiKey could not
// carry: its parser against the ApiKey validation (the CRD's pattern and length).
func FuzzScopeShape(f *testing.F) {
	for _, s := range []string{"users:read", "a:b", "a.b-c_d:e", "a:", ":b", "a::b", "a:b:c", "A:b", "a-:b", "a:-b", "a..b:c", strings.Repeat("a", 126) + ":b", strings.Repeat("a", 127) + ":b", "a:b\n", "é:b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		errs := (&v1alpha1.ApiKeySpec{Scopes: []string{s}, SecretName: "s"}).Validate()
		refused := false
		for _, e := range errs {
			if e.Field == "spec.scopes[0]" && e.Type == field.ErrorTypeInvalid {
				refused = true
			}
		}
		if ValidScope(s) == refused {
			t.Fatalf("ValidScope(%q) = %v, the ApiKey validation refuses it: %v", s, ValidScope(s), refused)
		}
	})
}

// FuzzConstraints checks the parsers of scopes and constraints against a plain reference: they accept
// exactly the lists that are within the limits and well formed, and never hold more than the limit.
func FuzzConstraints(f *testing.F) {
	f.Add("users:read,roles:manage", "pay,other", "live")
	f.Add(" , users:read ,", " pay ,, ", " test ")
	f.Add(strings.Repeat("a:b,", 70), strings.Repeat("n,", 70), "")
	f.Add("a", "UPPER", "staging")
	f.Add("", "", "")
	f.Fuzz(func(t *testing.T, scopes, namespaces, environment string) {
		items := func(list string) []string {
			var out []string
			for _, s := range strings.Split(list, ",") {
				if s = strings.TrimSpace(s); s != "" {
					out = append(out, s)
				}
			}
			return out
		}
		got, err := parseScopes(nil, scopes)
		want := items(scopes)
		ok := len(want) <= MaxRequiredScopes
		for _, s := range want {
			ok = ok && ValidScope(s)
		}
		if (err == nil) != ok || len(got) > MaxRequiredScopes || err == nil && strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("parseScopes(%q) = %q, %v", scopes, got, err)
		}
		if err != nil && err.code != ErrorInvalidScopes {
			t.Fatalf("code %s", err.code)
		}

		ns, err := parseNamespaces(namespaces)
		wantNS := items(namespaces)
		ok = len(wantNS) > 0 && len(wantNS) <= MaxNamespaces
		for _, n := range wantNS {
			ok = ok && len(validation.IsDNS1123Label(n)) == 0
		}
		if (err == nil) != ok || len(ns) > MaxNamespaces || err == nil && strings.Join(ns, ",") != strings.Join(wantNS, ",") {
			t.Fatalf("parseNamespaces(%q) = %q, %v", namespaces, ns, err)
		}
		if err != nil && (err.code != ErrorInvalidConstraints || strings.Contains(err.msg, namespaces) && len(namespaces) > 3) {
			t.Fatalf("parseNamespaces error %s %q", err.code, err.msg)
		}

		env, err := parseEnvironment(environment)
		trimmed := strings.TrimSpace(environment)
		if (err == nil) != (trimmed == "live" || trimmed == "test") || err == nil && string(env) != trimmed {
			t.Fatalf("parseEnvironment(%q) = %q, %v", environment, env, err)
		}
	})
}

// TestForwardingHeadersAreTrustedOnlyFromProxies is the forgery of the audit trail: a direct client sent
// X-Forwarded-For and X-Forwarded-Uri, and its record named the address and path it chose.
func TestForwardingHeadersAreTrustedOnlyFromProxies(t *testing.T) {
	f := newFixture(t)
	forged := map[string]string{
		"X-Forwarded-For": "198.51.100.66", "X-Real-Ip": "198.51.100.67", "X-Forwarded-Method": "DELETE",
		"X-Forwarded-Uri": "/forged/uri", "X-Original-Uri": "/forged/original", "X-Original-Method": "PATCH",
	}
	for _, tc := range []struct {
		name                     string
		trusted                  string
		remote                   string
		headers                  map[string]string
		target                   string
		caller, method, path     string
		verifyCaller, verifyPath string
	}{
		{"no proxy trusted: a direct client forges nothing", "", "203.0.113.9:4711", forged, "/authz/real?x=1", "203.0.113.9", "GET", "/authz/real", "203.0.113.9", "/v1/verify"},
		{"a client that is not the trusted proxy", "10.0.0.0/8", "203.0.113.9:4711", forged, "/authz/real", "203.0.113.9", "GET", "/authz/real", "203.0.113.9", "/v1/verify"},
		{"the trusted proxy", "10.0.0.0/8", "10.1.2.3:4711", forged, "/authz/real", "198.51.100.66", "DELETE", "/forged/uri", "198.51.100.66", "/v1/verify"},
		{"a forged hop left of the proxy's", "10.0.0.5", "10.0.0.5:1", map[string]string{"X-Forwarded-For": "198.51.100.66, 203.0.113.9"}, "/authz", "203.0.113.9", "GET", "", "203.0.113.9", "/v1/verify"},
		{"two trusted proxies", "10.0.0.0/8", "10.0.0.5:1", map[string]string{"X-Forwarded-For": "198.51.100.66, 203.0.113.9, 10.9.9.9"}, "/authz", "203.0.113.9", "GET", "", "203.0.113.9", "/v1/verify"},
		{"garbage in X-Forwarded-For", "10.0.0.0/8", "10.0.0.5:1", map[string]string{"X-Forwarded-For": "198.51.100.66, <script>"}, "/authz", "10.0.0.5", "GET", "", "10.0.0.5", "/v1/verify"},
		{"X-Real-Ip without X-Forwarded-For", "10.0.0.0/8", "10.0.0.5:1", map[string]string{"X-Real-Ip": "2001:db8::7"}, "/authz", "2001:db8::7", "GET", "", "2001:db8::7", "/v1/verify"},
		{"IPv6 proxy", "fd00::/8", "[fd00::1]:1", map[string]string{"X-Forwarded-For": "::ffff:198.51.100.66"}, "/authz", "198.51.100.66", "GET", "", "198.51.100.66", "/v1/verify"},
		{"Envoy's appended path", "10.0.0.0/8", "10.0.0.5:1", nil, "/authz?namespaces=pay&path=/orders/7?page=2", "10.0.0.5", "GET", "/orders/7?page=2", "10.0.0.5", "/v1/verify"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			s := newService(t, f, &buf)
			var err error
			if s.TrustedProxies, err = ParseTrustedProxies(tc.trusted); err != nil {
				t.Fatal(err)
			}
			h := s.Handler()
			req := httptest.NewRequest("GET", tc.target, nil)
			req.RemoteAddr = tc.remote
			req.Header.Set("X-Api-Key", f.active)
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			h.ServeHTTP(httptest.NewRecorder(), req)
			req = httptest.NewRequest("POST", "/v1/verify", strings.NewReader(`{"key":"`+f.active+`"}`))
			req.RemoteAddr = tc.remote
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			h.ServeHTTP(httptest.NewRecorder(), req)
			recs := drain(t, s.Audit, &buf)
			if len(recs) != 2 {
				t.Fatalf("%d records", len(recs))
			}
			if r := recs[0]; r.Caller != tc.caller || r.Method != tc.method || r.Path != tc.path {
				t.Fatalf("/authz record caller %q method %q path %q, want %q %q %q", r.Caller, r.Method, r.Path, tc.caller, tc.method, tc.path)
			}
			if r := recs[1]; r.Caller != tc.verifyCaller || r.Method != "POST" || r.Path != tc.verifyPath {
				t.Fatalf("/v1/verify record caller %q method %q path %q", r.Caller, r.Method, r.Path)
			}
		})
	}
}

func TestExtAuthzTrustsSourceAttributesOnlyFromProxies(t *testing.T) {
	f := newFixture(t)
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: socketAddress("198.51.100.66")},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "DELETE", Path: "/forged", Headers: map[string]string{"x-api-key": f.active}}},
	}}
	from := func(addr string) context.Context {
		return peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(addr), Port: 5555}})
	}
	for _, tc := range []struct {
		name, trusted, peerAddr, caller, method, path string
	}{
		{"untrusted peer", "", "203.0.113.9", "203.0.113.9", "POST", checkMethod},
		{"trusted Envoy", "10.0.0.0/8", "10.0.0.7", "198.51.100.66", "DELETE", "/forged"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			s := newService(t, f, &buf)
			s.TrustedProxies, _ = ParseTrustedProxies(tc.trusted)
			if _, err := (&ExtAuthz{Service: s}).Check(from(tc.peerAddr), req); err != nil {
				t.Fatal(err)
			}
			recs := drain(t, s.Audit, &buf)
			if r := recs[0]; r.Caller != tc.caller || r.Method != tc.method || r.Path != tc.path {
				t.Fatalf("record caller %q method %q path %q, want %q %q %q", r.Caller, r.Method, r.Path, tc.caller, tc.method, tc.path)
			}
		})
	}
}

func TestParseTrustedProxies(t *testing.T) {
	got, err := ParseTrustedProxies(" 10.0.0.0/8, 192.0.2.1 ,fd00::/8,::ffff:198.51.100.0/120,,")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[10.0.0.0/8 192.0.2.1/32 fd00::/8 198.51.100.0/24]" {
		t.Fatalf("parsed %v", got)
	}
	for _, bad := range []string{"10.0.0.0/33", "proxy.example", "10.0.0.1:80", "fe80::1%eth0", "*"} {
		if _, err := ParseTrustedProxies(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
		if _, err := New(Options{TrustedProxies: bad}); err == nil || !strings.Contains(err.Error(), "--verify-trusted-proxies") {
			t.Errorf("New accepted --verify-trusted-proxies=%q: %v", bad, err)
		}
	}
	if _, err := New(Options{AuditQueueBytes: 1000}); err == nil {
		t.Error("New accepted a 1000-byte audit queue")
	}
}

// drain closes the auditor and returns what it wrote to buf.
func drain(t *testing.T, a *Auditor, buf *bytes.Buffer) []AuditRecord {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Run(ctx); err != nil {
		t.Fatal(err)
	}
	var out []AuditRecord
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		var r AuditRecord
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("audit line %q: %v", l, err)
		}
		out = append(out, r)
	}
	return out
}

func socketAddress(ip string) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: ip}}}
}
