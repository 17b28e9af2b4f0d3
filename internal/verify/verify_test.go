package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/code"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/keys"
)

var t0 = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// fixture is an index holding one ApiKey ("pay/billing") with keys in every state.
type fixture struct {
	ix                                       *MemoryIndex
	clk                                      *clocktesting.FakeClock
	active, retiring, revoked, expired, late string // plaintext keys
	synced                                   bool
}

func gen(t testing.TB) string {
	k, err := keys.Generate("ks", keys.Live)
	if err != nil {
		t.Fatal(err)
	}
	return k.Plaintext()
}

func issued(key string, state v1alpha1.KeyState, notAfter time.Time) v1alpha1.IssuedKey {
	return v1alpha1.IssuedKey{ID: keys.ID(key), Hash: keys.Hash(key), State: state, IssuedAt: metav1.Time{Time: t0.Add(-time.Hour)}, NotAfter: metav1.Time{Time: notAfter},
		Scopes: []string{"users:read", "roles:manage"}}
}

func newFixture(t testing.TB) *fixture {
	f := &fixture{clk: clocktesting.NewFakeClock(t0), synced: true}
	f.ix = NewMemoryIndex(Scope{}, f.clk, func() bool { return f.synced }, 30*time.Second)
	f.active, f.retiring, f.revoked, f.expired, f.late = gen(t), gen(t), gen(t), gen(t), gen(t)
	f.ix.Upsert(f.apiKey())
	return f
}

func (f *fixture) apiKey() *v1alpha1.ApiKey {
	return &v1alpha1.ApiKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: "pay", Name: "billing"},
		Spec:       v1alpha1.ApiKeySpec{Scopes: []string{"users:read", "roles:manage"}, SecretName: "s"},
		Status: v1alpha1.ApiKeyStatus{Keys: []v1alpha1.IssuedKey{
			issued(f.active, v1alpha1.KeyActive, t0.Add(24*time.Hour)),
			issued(f.retiring, v1alpha1.KeyRetiring, t0.Add(time.Minute)),
			issued(f.revoked, v1alpha1.KeyRevoked, t0.Add(24*time.Hour)),
			issued(f.expired, v1alpha1.KeyExpired, t0.Add(-time.Minute)),
			issued(f.late, v1alpha1.KeyRetiring, t0), // notAfter reached, state not yet updated
		}},
	}
}

func TestCheck(t *testing.T) {
	f := newFixture(t)
	unknown := gen(t)
	for _, tc := range []struct {
		name     string
		key      string
		required []string
		want     Code
	}{
		{"active", f.active, nil, CodeValid},
		{"active with scopes", f.active, []string{"users:read", "roles:manage"}, CodeValid},
		{"retiring inside its overlap", f.retiring, []string{"users:read"}, CodeValid},
		{"missing scope", f.active, []string{"users:write"}, CodeInsufficientScope},
		{"one of two scopes missing", f.active, []string{"users:read", "audit:read"}, CodeInsufficientScope},
		{"revoked", f.revoked, nil, CodeRevoked},
		{"expired state", f.expired, nil, CodeExpired},
		{"notAfter reached before the status says so", f.late, nil, CodeExpired},
		{"unknown", unknown, nil, CodeNotFound},
		{"garbage", "hello", nil, CodeMalformed},
		{"bad checksum", f.active[:len(f.active)-1] + flip(f.active[len(f.active)-1]), nil, CodeMalformed},
		{"empty", "", nil, CodeMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Check(f.ix, f.clk.Now(), Request{Key: tc.key, Scopes: tc.required})
			if r.Code != tc.want {
				t.Fatalf("code = %s, want %s", r.Code, tc.want)
			}
			if (r.Entry != nil) != (tc.want != CodeNotFound && tc.want != CodeMalformed) {
				t.Fatalf("entry presence wrong for %s", r.Code)
			}
		})
	}
}

func flip(c byte) string {
	if c == 'a' {
		return "b"
	}
	return "a"
}

func TestCheckExactlyAtNotAfter(t *testing.T) {
	f := newFixture(t)
	f.clk.SetTime(t0.Add(time.Minute - time.Second))
	if c := Check(f.ix, f.clk.Now(), Request{Key: f.retiring}).Code; c != CodeValid {
		t.Fatalf("one second before notAfter: %s", c)
	}
	f.clk.SetTime(t0.Add(time.Minute))
	if c := Check(f.ix, f.clk.Now(), Request{Key: f.retiring}).Code; c != CodeExpired {
		t.Fatalf("at notAfter: %s", c)
	}
}

func TestDeletingAndDeletedApiKeysAreRefused(t *testing.T) {
	f := newFixture(t)
	ak := f.apiKey()
	now := metav1.Now()
	ak.DeletionTimestamp = &now
	f.ix.Upsert(ak)
	if c := Check(f.ix, f.clk.Now(), Request{Key: f.active}).Code; c != CodeRevoked {
		t.Fatalf("deleting ApiKey: %s", c)
	}
	f.ix.Delete(types.NamespacedName{Namespace: "pay", Name: "billing"})
	if c := Check(f.ix, f.clk.Now(), Request{Key: f.active}).Code; c != CodeNotFound {
		t.Fatalf("deleted ApiKey: %s", c)
	}
	if f.ix.Len() != 0 {
		t.Fatalf("index not empty: %d", f.ix.Len())
	}
}

func TestUpsertReplacesKeysAndKeepsLastUsed(t *testing.T) {
	f := newFixture(t)
	Check(f.ix, f.clk.Now(), Request{Key: f.active})
	ak := f.apiKey()
	ak.Status.Keys = ak.Status.Keys[:1] // the others dropped from status
	f.ix.Upsert(ak)
	if c := Check(f.ix, f.clk.Now(), Request{Key: f.revoked}).Code; c != CodeNotFound {
		t.Fatalf("dropped key still indexed: %s", c)
	}
	e, _ := f.ix.Lookup(keys.Sum(f.active))
	if e.lastUsed.used.Load() != t0.Unix() {
		t.Fatal("last use lost when the ApiKey was updated")
	}
}

func TestScope(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	sel, _ := labels.Parse("team=payments")
	ix := NewMemoryIndex(Scope{Namespaces: []string{"pay"}, Selector: sel}, clk, func() bool { return true }, time.Minute)
	k := gen(t)
	ak := &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: "pay", Name: "a", Labels: map[string]string{"team": "payments"}},
		Spec: v1alpha1.ApiKeySpec{Scopes: []string{"users:read"}}, Status: v1alpha1.ApiKeyStatus{Keys: []v1alpha1.IssuedKey{issued(k, v1alpha1.KeyActive, t0.Add(time.Hour))}}}
	ix.Upsert(ak)
	if Check(ix, clk.Now(), Request{Key: k}).Code != CodeValid {
		t.Fatal("in-scope key refused")
	}
	other := ak.DeepCopy()
	other.Namespace = "elsewhere"
	other.Status.Keys = []v1alpha1.IssuedKey{issued(gen(t), v1alpha1.KeyActive, t0.Add(time.Hour))}
	ix.Upsert(other)
	unlabelled := ak.DeepCopy()
	unlabelled.Name, unlabelled.Labels = "b", nil
	unlabelledKey := gen(t)
	unlabelled.Status.Keys = []v1alpha1.IssuedKey{issued(unlabelledKey, v1alpha1.KeyActive, t0.Add(time.Hour))}
	ix.Upsert(unlabelled)
	if ix.Len() != 1 || Check(ix, clk.Now(), Request{Key: unlabelledKey}).Code != CodeNotFound {
		t.Fatalf("out-of-scope ApiKeys indexed: %d", ix.Len())
	}
	// Leaving the scope removes the keys.
	ak.Labels = nil
	ix.Upsert(ak)
	if Check(ix, clk.Now(), Request{Key: k}).Code != CodeNotFound {
		t.Fatal("key kept after its ApiKey left the scope")
	}
}

func TestReadyFailsClosed(t *testing.T) {
	f := newFixture(t)
	f.synced = false
	if f.ix.Ready() != ErrNotSynced || Check(f.ix, f.clk.Now(), Request{Key: f.active}).Code != CodeUnavailable {
		t.Fatal("unsynced index answered")
	}
	f.synced = true
	f.ix.WatchBroken()
	f.clk.Step(30 * time.Second)
	if Check(f.ix, f.clk.Now(), Request{Key: f.active}).Code != CodeValid {
		t.Fatal("refused within the staleness bound")
	}
	f.clk.Step(time.Second)
	if f.ix.Ready() != ErrStale || Check(f.ix, f.clk.Now(), Request{Key: f.active}).Code != CodeUnavailable {
		t.Fatal("answered past the staleness bound")
	}
	f.ix.WatchBroken() // a second error does not restart the clock
	if f.ix.Ready() != ErrStale {
		t.Fatal("a repeated watch error reset the staleness clock")
	}
	f.ix.Upsert(f.apiKey()) // an event proves the watch delivers again
	if f.ix.Ready() != nil {
		t.Fatal("still stale after an event")
	}
}

// eventually waits up to a second for cond (Probe runs on a real ticker).
func eventually(cond func() bool) bool {
	deadline := time.Now().Add(time.Second)
	for !cond() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	return cond()
}

func TestProbe(t *testing.T) {
	f := newFixture(t)
	var rv atomic.Value
	rv.Store("10")
	f.ix.TrackReflector(func() string { return rv.Load().(string) })
	var apiDown atomic.Bool
	var lists atomic.Int64
	down := errors.New("connection refused")
	ping := func(context.Context) error {
		if apiDown.Load() {
			return down
		}
		return nil
	}
	fresh := gen(t)
	// While the reflector backs off, the API server already answers lists: the billing ApiKey is gone
	// and another one exists.
	other := &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: "pay", Name: "new"}, Spec: v1alpha1.ApiKeySpec{Scopes: []string{"users:read"}},
		Status: v1alpha1.ApiKeyStatus{Keys: []v1alpha1.IssuedKey{issued(fresh, v1alpha1.KeyActive, t0.Add(time.Hour))}}}
	list := func(context.Context) ([]v1alpha1.ApiKey, string, error) {
		if apiDown.Load() {
			return nil, "", down
		}
		lists.Add(1)
		return []v1alpha1.ApiKey{*other}, "", nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.ix.Probe(ctx, time.Millisecond, ping, list)

	// A dead API server is noticed by the ping although no watch error is reported.
	apiDown.Store(true)
	if !eventually(func() bool { return f.ix.brokenSince.Load() != 0 }) {
		t.Fatal("a failing ping did not start the staleness clock")
	}
	f.clk.Step(31 * time.Second)
	if f.ix.Ready() != ErrStale {
		t.Fatal("answered past the staleness bound with the API server down")
	}
	// The API server answers again: the index is replaced by a list and current as of it, even
	// though the reflector has not synced yet.
	apiDown.Store(false)
	if !eventually(func() bool { return f.ix.Ready() == nil }) {
		t.Fatal("still stale although the API server answers lists")
	}
	if Check(f.ix, f.clk.Now(), Request{Key: f.active}).Code == CodeValid || Check(f.ix, f.clk.Now(), Request{Key: fresh}).Code != CodeValid {
		t.Fatal("the index does not hold what the list returned")
	}
	if f.ix.brokenSince.Load() == 0 {
		t.Fatal("healthy before the reflector synced")
	}
	// Listing goes on until the reflector has synced; then it stops.
	n := lists.Load()
	if !eventually(func() bool { return lists.Load() > n }) {
		t.Fatal("listing stopped before the reflector synced")
	}
	rv.Store("11")
	if !eventually(func() bool { return f.ix.brokenSince.Load() == 0 }) {
		t.Fatal("the reflector synced but the watch still counts as broken")
	}
	time.Sleep(20 * time.Millisecond)
	n = lists.Load()
	time.Sleep(20 * time.Millisecond)
	if lists.Load() != n {
		t.Fatal("still listing with a healthy watch")
	}
}

func newService(t testing.TB, f *fixture, audit io.Writer) *Service {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, func() float64 { return float64(f.ix.Len()) })
	s := &Service{Index: f.ix, Clock: f.clk, Metrics: m}
	if audit != nil {
		s.Audit = NewAuditor(audit, AuditOptions{Queue: 1024, Log: logr.Discard(), Metrics: m})
	}
	return s
}

func TestVerifyEndpoint(t *testing.T) {
	f := newFixture(t)
	h := newService(t, f, nil).Handler()
	body := func(v any) io.Reader { b, _ := json.Marshal(v); return bytes.NewReader(b) }
	for _, tc := range []struct {
		name       string
		method     string
		body       io.Reader
		wantStatus int
		wantCode   string
		wantValid  bool
	}{
		{"valid", "POST", body(VerifyRequest{Key: f.active, Scopes: []string{"users:read"}}), 200, "VALID", true},
		{"scope", "POST", body(VerifyRequest{Key: f.active, Scopes: []string{"users:write"}}), 200, "INSUFFICIENT_SCOPE", false},
		{"revoked", "POST", body(VerifyRequest{Key: f.revoked}), 200, "REVOKED", false},
		{"expired", "POST", body(VerifyRequest{Key: f.expired}), 200, "EXPIRED", false},
		{"unknown", "POST", body(VerifyRequest{Key: gen(t)}), 200, "NOT_FOUND", false},
		{"malformed key", "POST", body(VerifyRequest{Key: "nope"}), 200, "MALFORMED", false},
		{"not JSON", "POST", strings.NewReader("key=" + f.active), 400, "BAD_REQUEST", false},
		{"unknown field", "POST", strings.NewReader(`{"key":"x","scope":["a:b"]}`), 400, "BAD_REQUEST", false},
		{"wrong type", "POST", strings.NewReader(`{"key":1}`), 400, "BAD_REQUEST", false},
		{"two objects", "POST", strings.NewReader(`{"key":"a"}{"key":"b"}`), 400, "BAD_REQUEST", false},
		{"empty", "POST", strings.NewReader(``), 400, "BAD_REQUEST", false},
		{"too large", "POST", strings.NewReader(`{"key":"` + strings.Repeat("a", MaxBodyBytes) + `"}`), 400, "BAD_REQUEST", false},
		{"GET", "GET", nil, 405, "METHOD_NOT_ALLOWED", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, "/v1/verify", tc.body))
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d", rec.Code, tc.wantStatus)
			}
			if rec.Header().Get("Cache-Control") != "no-store" {
				t.Fatal("missing Cache-Control: no-store")
			}
			var got map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("response is not JSON: %v", err)
			}
			if got["code"] != tc.wantCode {
				t.Fatalf("code %v, want %s", got["code"], tc.wantCode)
			}
			if tc.wantStatus == 200 && got["valid"] != tc.wantValid {
				t.Fatalf("valid %v", got["valid"])
			}
			if strings.Contains(rec.Body.String(), f.active) {
				t.Fatal("response contains the key")
			}
			if tc.wantCode == "VALID" {
				var r VerifyResponse
				_ = json.Unmarshal(rec.Body.Bytes(), &r)
				if r.KeyID != keys.ID(f.active) || r.ApiKey.Namespace != "pay" || r.ApiKey.Name != "billing" || len(r.Scopes) != 2 || !r.ExpiresAt.Equal(t0.Add(24*time.Hour)) {
					t.Fatalf("response %+v", r)
				}
			}
		})
	}
}

func TestVerifyEndpointUnavailable(t *testing.T) {
	f := newFixture(t)
	f.synced = false
	rec := httptest.NewRecorder()
	newService(t, f, nil).Handler().ServeHTTP(rec, httptest.NewRequest("POST", "/v1/verify", strings.NewReader(`{"key":"`+f.active+`"}`)))
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), `"UNAVAILABLE"`) {
		t.Fatalf("got %d %s", rec.Code, rec.Body.String())
	}
}

func TestAuthzContract(t *testing.T) {
	f := newFixture(t)
	h := newService(t, f, nil).Handler()
	for _, tc := range []struct {
		name       string
		method     string
		target     string
		headers    map[string]string
		wantStatus int
		wantAuth   string // substring of WWW-Authenticate
	}{
		{"bearer", "GET", "/authz", map[string]string{"Authorization": "Bearer " + f.active}, 200, ""},
		{"bearer, lowercase scheme", "POST", "/authz", map[string]string{"Authorization": "bearer " + f.active}, 200, ""},
		{"x-api-key", "DELETE", "/authz/any/sub/path", map[string]string{"X-Api-Key": f.active}, 200, ""},
		{"basic auth falls back to x-api-key", "GET", "/authz", map[string]string{"Authorization": "Basic Zm9vOmJhcg==", "X-Api-Key": f.active}, 200, ""},
		{"scopes from the query", "GET", "/authz?scopes=users:read,roles:manage", map[string]string{"X-Api-Key": f.active}, 200, ""},
		{"scopes from the header", "GET", "/authz", map[string]string{"X-Api-Key": f.active, "X-Required-Scopes": "users:read, roles:manage"}, 200, ""},
		{"insufficient scope (query)", "GET", "/authz?scopes=users:write", map[string]string{"X-Api-Key": f.active}, 403, `error="insufficient_scope"`},
		{"header and query both apply", "GET", "/authz?scopes=users:read", map[string]string{"X-Api-Key": f.active, "X-Required-Scopes": "audit:read"}, 403, `scope="users:read audit:read"`},
		{"missing key", "GET", "/authz", nil, 401, `Bearer realm="keysmith"`},
		{"empty bearer", "GET", "/authz", map[string]string{"Authorization": "Bearer "}, 401, `Bearer`},
		{"malformed", "GET", "/authz", map[string]string{"Authorization": "Bearer hello"}, 401, `error="invalid_token"`},
		{"unknown", "GET", "/authz", map[string]string{"Authorization": "Bearer " + gen(t)}, 401, `error="invalid_token"`},
		{"expired", "GET", "/authz", map[string]string{"Authorization": "Bearer " + f.expired}, 401, `error="invalid_token"`},
		{"revoked", "GET", "/authz", map[string]string{"Authorization": "Bearer " + f.revoked}, 401, `error="invalid_token"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.target, nil)
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d", rec.Code, tc.wantStatus)
			}
			if rec.Header().Get("Cache-Control") != "no-store" {
				t.Fatal("missing Cache-Control: no-store")
			}
			if got := rec.Header().Get("WWW-Authenticate"); !strings.Contains(got, tc.wantAuth) || (tc.wantAuth == "") != (got == "") {
				t.Fatalf("WWW-Authenticate %q, want %q", got, tc.wantAuth)
			}
			if tc.wantStatus == 200 {
				if rec.Header().Get("X-ApiKey-Id") != keys.ID(f.active) || rec.Header().Get("X-ApiKey-Name") != "pay/billing" || rec.Header().Get("X-ApiKey-Scopes") != "users:read,roles:manage" {
					t.Fatalf("identity headers %v", rec.Header())
				}
			}
		})
	}
	f.synced = false
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/authz", nil)
	req.Header.Set("X-Api-Key", f.active)
	h.ServeHTTP(rec, req)
	if rec.Code != 503 {
		t.Fatalf("unsynced: %d", rec.Code)
	}
}

func TestExtAuthzGRPC(t *testing.T) {
	f := newFixture(t)
	x := &ExtAuthz{Service: newService(t, f, nil)}
	req := func(headers map[string]string, scopes string) *authv3.CheckRequest {
		return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request:           &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/orders", Headers: headers}},
			ContextExtensions: map[string]string{"scopes": scopes},
		}}
	}
	for _, tc := range []struct {
		name     string
		headers  map[string]string
		scopes   string
		wantCode code.Code
		wantHTTP int32
	}{
		{"valid bearer", map[string]string{"authorization": "Bearer " + f.active}, "users:read", code.Code_OK, 0},
		{"valid x-api-key", map[string]string{"x-api-key": f.active}, "", code.Code_OK, 0},
		{"scope from context extensions", map[string]string{"x-api-key": f.active}, "users:write", code.Code_PERMISSION_DENIED, 403},
		{"scope from header", map[string]string{"x-api-key": f.active, "x-required-scopes": "audit:read"}, "", code.Code_PERMISSION_DENIED, 403},
		{"missing", nil, "", code.Code_UNAUTHENTICATED, 401},
		{"revoked", map[string]string{"x-api-key": f.revoked}, "", code.Code_UNAUTHENTICATED, 401},
		{"expired", map[string]string{"x-api-key": f.expired}, "", code.Code_UNAUTHENTICATED, 401},
		{"unknown", map[string]string{"x-api-key": gen(t)}, "", code.Code_UNAUTHENTICATED, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := x.Check(context.Background(), req(tc.headers, tc.scopes))
			if err != nil {
				t.Fatal(err)
			}
			if code.Code(resp.GetStatus().GetCode()) != tc.wantCode {
				t.Fatalf("grpc code %v, want %v", resp.GetStatus().GetCode(), tc.wantCode)
			}
			if tc.wantCode == code.Code_OK {
				hs := map[string]string{}
				for _, h := range resp.GetOkResponse().GetHeaders() {
					hs[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
				}
				if hs["x-apikey-id"] != keys.ID(f.active) || hs["x-apikey-name"] != "pay/billing" {
					t.Fatalf("ok headers %v", hs)
				}
				return
			}
			if int32(resp.GetDeniedResponse().GetStatus().GetCode()) != tc.wantHTTP {
				t.Fatalf("http status %v, want %d", resp.GetDeniedResponse().GetStatus().GetCode(), tc.wantHTTP)
			}
		})
	}
	f.synced = false
	resp, _ := x.Check(context.Background(), req(map[string]string{"x-api-key": f.active}, ""))
	if code.Code(resp.GetStatus().GetCode()) != code.Code_UNAVAILABLE || resp.GetDeniedResponse().GetStatus().GetCode() != 503 {
		t.Fatalf("unsynced: %v", resp)
	}
}

func TestAuditRecords(t *testing.T) {
	f := newFixture(t)
	var buf bytes.Buffer
	s := newService(t, f, &buf)
	// httptest's requests come from 192.0.2.1: a proxy, in front of another at 10.0.0.1.
	var err error
	if s.TrustedProxies, err = ParseTrustedProxies("192.0.2.1, 10.0.0.0/8"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Audit.Run(ctx) }()
	unknown := gen(t)
	h := s.Handler()
	for _, key := range []string{f.active, f.revoked, unknown, "garbage"} {
		req := httptest.NewRequest("GET", "/authz/orders/42?scopes=users:read", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("X-Forwarded-For", "203.0.113.7, 10.0.0.1")
		req.Header.Set("X-Forwarded-Method", "PUT")
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d audit lines, want 4", len(lines))
	}
	for _, k := range []string{f.active, f.revoked, unknown} {
		if strings.Contains(buf.String(), k) || strings.Contains(buf.String(), k[8:]) {
			t.Fatal("audit trail contains key material")
		}
	}
	var recs []AuditRecord
	for _, l := range lines {
		var r AuditRecord
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	if recs[0].Code != CodeValid || recs[0].KeyID != keys.ID(f.active) || recs[0].Namespace != "pay" || recs[0].Name != "billing" ||
		recs[0].Caller != "203.0.113.7" || recs[0].Method != "PUT" || recs[0].Path != "/orders/42" || len(recs[0].Scopes) != 1 {
		t.Fatalf("valid record %+v", recs[0])
	}
	if recs[1].Code != CodeRevoked || recs[1].KeyID != keys.ID(f.revoked) {
		t.Fatalf("revoked record %+v", recs[1])
	}
	if recs[2].Code != CodeNotFound || recs[2].Fingerprint != keys.ID(unknown) || recs[2].KeyID != "" {
		t.Fatalf("not-found record %+v", recs[2])
	}
	if recs[3].Code != CodeMalformed || recs[3].Fingerprint != "" {
		t.Fatalf("malformed record %+v", recs[3])
	}
}

// blockingWriter never returns, so the audit queue fills up.
type blockingWriter struct{ release chan struct{} }

func (b blockingWriter) Write(p []byte) (int, error) { <-b.release; return len(p), nil }

func TestAuditOverflowIsCounted(t *testing.T) {
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, func() float64 { return 0 })
	bw := blockingWriter{release: make(chan struct{})}
	a := NewAuditor(bw, AuditOptions{Queue: 4, Log: logr.Discard(), Metrics: m})
	for i := 0; i < 10; i++ {
		a.Record(f.clk.Now(), Result{Code: CodeValid}, Request{}, RequestInfo{}, 0)
	}
	if a.Dropped() != 6 {
		t.Fatalf("dropped %d, want 6", a.Dropped())
	}
	if got := testCounter(t, reg, "keysmith_verify_audit_dropped_total"); got != 6 {
		t.Fatalf("metric %v, want 6", got)
	}
	close(bw.release)
}

func testCounter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func TestMetricsCountCodes(t *testing.T) {
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	s := &Service{Index: f.ix, Clock: f.clk, Metrics: NewMetrics(reg, func() float64 { return float64(f.ix.Len()) })}
	h := s.Handler()
	for _, k := range []string{f.active, f.active, f.revoked} {
		req := httptest.NewRequest("GET", "/authz", nil)
		req.Header.Set("X-Api-Key", k)
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	if got := testCounter(t, reg, "keysmith_verifications_total"); got != 3 {
		t.Fatalf("verifications %v", got)
	}
	mfs, _ := reg.Gather()
	found := map[string]bool{}
	for _, mf := range mfs {
		found[mf.GetName()] = true
		if mf.GetName() == "keysmith_verify_index_keys" && mf.GetMetric()[0].GetGauge().GetValue() != 5 {
			t.Fatalf("index size %v", mf.GetMetric()[0].GetGauge().GetValue())
		}
	}
	for _, n := range []string{"keysmith_verifications_total", "keysmith_verification_duration_seconds", "keysmith_verify_index_keys", "keysmith_verify_audit_dropped_total"} {
		if !found[n] {
			t.Errorf("metric %s missing", n)
		}
	}
}

func TestCheckDoesNotAllocate(t *testing.T) {
	f := newFixture(t)
	now := f.clk.Now()
	required := []string{"users:read"}
	if n := testing.AllocsPerRun(1000, func() { Check(f.ix, now, Request{Key: f.active, Scopes: required}) }); n != 0 {
		t.Fatalf("Check allocates %v times per hit", n)
	}
}

func FuzzAuthzHeaders(f *testing.F) {
	fx := newFixture(f)
	h := newService(f, fx, nil).Handler()
	f.Add("Bearer "+fx.active, "", "users:read", "users:read", "")
	f.Add("", fx.revoked, "", "", "")
	f.Add("bearer", "x", ",,,", "a:b,", "")
	f.Add("Bearer "+fx.active, "", "users:read", "", "namespaces=pay,other&environment=live")
	f.Add("Bearer "+fx.active, "", "", "", "namespaces=other")
	f.Add("Bearer "+fx.active, "", "", "", "namespaces=pay&namespaces=pay")
	f.Add("Bearer "+fx.active, "", "", "", "environment=test&path=/orders?x=1")
	f.Add("Bearer "+fx.active, "", "", strings.Repeat("a:b,", MaxRequiredScopes+1), "")
	f.Add("", fx.active, "Users:Read", "", "namespaces=Bad_Label")
	f.Fuzz(func(t *testing.T, authz, apiKey, query, header, rawQuery string) {
		req := httptest.NewRequest("GET", "/authz", nil)
		q := url.Values{"scopes": {query}}
		req.URL.RawQuery = q.Encode() + "&" + rawQuery
		req.Header["Authorization"] = []string{authz}
		req.Header["X-Api-Key"] = []string{apiKey}
		req.Header["X-Required-Scopes"] = []string{header}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		want := expectAuthz(fx, req)
		switch {
		case rec.Code == 200:
			// Only the valid keys, with scopes they carry, inside the constraints, may pass.
			if want != 200 {
				t.Fatalf("accepted, want %d", want)
			}
		case rec.Code == 400:
			var body ErrorResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || (body.Code != ErrorInvalidScopes && body.Code != ErrorInvalidConstraints) {
				t.Fatalf("400 without a code: %q", rec.Body.String())
			}
			if !knownMessage(body.Error) {
				t.Fatalf("400 message %q is not one of the fixed ones (it may echo the input)", body.Error)
			}
			if rec.Header().Get("WWW-Authenticate") != invalidRequestChallenge {
				t.Fatalf("400 challenge %q", rec.Header().Get("WWW-Authenticate"))
			}
			if want != 400 {
				t.Fatalf("400 (%s), want %d", body.Code, want)
			}
		case rec.Code == 401, rec.Code == 403:
			if want == 200 || want == 400 {
				t.Fatalf("status %d, want %d", rec.Code, want)
			}
			a := rec.Header().Get("WWW-Authenticate")
			if i := strings.Index(a, `scope="`); i >= 0 {
				for _, sc := range strings.Fields(strings.TrimSuffix(a[i+len(`scope="`):], `"`)) {
					if !ValidScope(sc) {
						t.Fatalf("the challenge lists %q, not a validated scope", sc)
					}
				}
			}
		default:
			t.Fatalf("status %d: proxies only understand 200, 400, 401, 403", rec.Code)
		}
		if rec.Header().Get("Cache-Control") != "no-store" {
			t.Fatal("missing no-store")
		}
		size := 0
		for k, vs := range rec.Header() {
			for _, v := range vs {
				size += len(k) + len(v)
			}
		}
		if size > MaxRequiredScopes*(MaxScopeLength+1)+1024 {
			t.Fatalf("%d bytes of response headers", size)
		}
	})
}

// expectAuthz is the reference answer of /authz for the fixture, computed independently of the parser:
// 400 for invalid scopes or constraints, 200 for a valid key that satisfies them, else 401 or 403.
func expectAuthz(fx *fixture, req *http.Request) int {
	q := req.URL.Query()
	var scopes []string
	for _, list := range append(q["scopes"], req.Header.Values("X-Required-Scopes")...) {
		for _, s := range strings.Split(list, ",") {
			if s = strings.TrimSpace(s); s != "" {
				scopes = append(scopes, s)
			}
		}
	}
	if len(scopes) > MaxRequiredScopes {
		return 400
	}
	for _, s := range scopes {
		if errs := (&v1alpha1.ApiKeySpec{Scopes: []string{s}, SecretName: "s"}).Validate(); len(errs) > 0 {
			return 400
		}
	}
	inNamespaces := true
	switch ns := q["namespaces"]; len(ns) {
	case 0:
	case 1:
		var names []string
		for _, n := range strings.Split(ns[0], ",") {
			if n = strings.TrimSpace(n); n != "" {
				names = append(names, n)
			}
		}
		if len(names) == 0 || len(names) > MaxNamespaces {
			return 400
		}
		for _, n := range names {
			if len(validation.IsDNS1123Label(n)) > 0 {
				return 400
			}
		}
		inNamespaces = slices.Contains(names, "pay")
	default:
		return 400
	}
	live := true
	switch env := q["environment"]; len(env) {
	case 0:
	case 1:
		switch strings.TrimSpace(env[0]) {
		case "live":
		case "test":
			live = false
		default:
			return 400
		}
	default:
		return 400
	}
	key := presentedKey(req.Header)
	if key != fx.active && key != fx.retiring {
		return 401
	}
	for _, s := range scopes {
		if s != "users:read" && s != "roles:manage" {
			return 403
		}
	}
	if !inNamespaces || !live {
		return 403
	}
	return 200
}

// knownMessage reports whether an error message is one of the fixed texts (digits aside): the answers to
// invalid input never repeat it.
var (
	digitRuns      = regexp.MustCompile(`[0-9]+`)
	wrongTypeField = regexp.MustCompile(`^field (key|scopes|namespaces|environment)? ?has the wrong type$`)
)

func knownMessage(msg string) bool {
	m := digitRuns.ReplaceAllString(msg, "N")
	for _, known := range []string{
		"at most N required scopes",
		"required scope N is not resource:action in lowercase (at most N characters, for example users:read)",
		"namespaces: at most N",
		"namespaces: item N is not a namespace name (a DNS-N label)",
		"namespaces lists no namespace",
		"namespaces given more than once",
		"environment must be live or test",
		"environment given more than once",
		"body must hold a single JSON object",
	} {
		if m == known {
			return true
		}
	}
	prefix := `body must be JSON {"key": string, "scopes": [string], "namespaces": [string], "environment": "live"|"test"} of at most N KiB: `
	if rest, ok := strings.CutPrefix(m, prefix); ok {
		return slices.Contains([]string{"syntax error", "empty or truncated body", "unknown field", "invalid body"}, rest) ||
			wrongTypeField.MatchString(rest)
	}
	return false
}

func FuzzVerifyBody(f *testing.F) {
	fx := newFixture(f)
	h := newService(f, fx, nil).Handler()
	f.Add(`{"key":"` + fx.active + `","scopes":["users:read"]}`)
	f.Add(`{"key":"` + fx.revoked + `"}`)
	f.Add(`{"key":1}`)
	f.Add(`[]`)
	f.Add(`{"key":"` + fx.active + `","namespaces":["pay","other"],"environment":"live"}`)
	f.Add(`{"key":"` + fx.active + `","namespaces":["other"]}`)
	f.Add(`{"key":"` + fx.revoked + `","namespaces":["other"]}`)
	f.Add(`{"key":"` + fx.active + `","namespaces":[]}`)
	f.Add(`{"key":"` + fx.active + `","environment":"staging"}`)
	f.Add(`{"key":"` + fx.active + `","scopes":["Users:Read"]}`)
	f.Add(`{"key":"` + fx.active + `","scopes":[` + strings.TrimSuffix(strings.Repeat(`"a:b",`, MaxRequiredScopes+1), ",") + `]}`)
	f.Fuzz(func(t *testing.T, body string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/verify", strings.NewReader(body)))
		if rec.Code != 200 && rec.Code != 400 {
			t.Fatalf("status %d", rec.Code)
		}
		var req VerifyRequest
		decoded := json.Unmarshal([]byte(body), &req) == nil
		if rec.Code == 400 {
			var e ErrorResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || !slices.Contains([]ErrorCode{ErrorBadRequest, ErrorInvalidScopes, ErrorInvalidConstraints}, e.Code) {
				t.Fatalf("400 without a code: %q", rec.Body.String())
			}
			if !knownMessage(e.Error) {
				t.Fatalf("400 message %q is not one of the fixed ones (it may echo the input)", e.Error)
			}
			return
		}
		var resp VerifyResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatalf("response is not JSON")
		}
		if !decoded {
			t.Fatalf("answered %s to a body that is not a VerifyRequest", resp.Code)
		}
		if len(req.Scopes) > MaxRequiredScopes || req.Namespaces != nil && len(req.Namespaces) == 0 {
			t.Fatalf("answered %s to an invalid request", resp.Code)
		}
		outside := req.Namespaces != nil && !slices.Contains(req.Namespaces, "pay") || req.Environment != "" && req.Environment != "live"
		if outside && resp.ApiKey != nil {
			t.Fatalf("disclosed the ApiKey of a key outside the constraints (%s)", resp.Code)
		}
		if resp.Valid {
			if req.Key != fx.active && req.Key != fx.retiring || outside {
				t.Fatalf("accepted something that is not a valid key inside the constraints")
			}
			for _, s := range req.Scopes {
				if s != "users:read" && s != "roles:manage" {
					t.Fatalf("accepted without scope %q", s)
				}
			}
		}
	})
}

func BenchmarkCheck(b *testing.B) {
	f := newFixture(b)
	// A realistic index: 10,000 other keys.
	for i := 0; i < 2000; i++ {
		ak := f.apiKey()
		ak.Name = "other-" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)
		ak.Status.Keys = nil
		for j := 0; j < 5; j++ {
			ak.Status.Keys = append(ak.Status.Keys, issued(gen(b), v1alpha1.KeyActive, t0.Add(time.Hour)))
		}
		f.ix.Upsert(ak)
	}
	now := f.clk.Now()
	required := []string{"users:read"}
	b.ReportAllocs()
	for b.Loop() {
		if Check(f.ix, now, Request{Key: f.active, Scopes: required}).Code != CodeValid {
			b.Fatal("not valid")
		}
	}
}

func BenchmarkAuthzHandler(b *testing.B) {
	f := newFixture(b)
	h := newService(b, f, nil).Handler()
	req := httptest.NewRequest("GET", "/authz?scopes=users:read", nil)
	req.Header.Set("Authorization", "Bearer "+f.active)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
}
