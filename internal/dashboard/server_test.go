package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/actions"
	"github.com/keysmith-dev/keysmith/internal/keys"
)

// now is the real time (internal/actions reads the real clock), to the second.
var now = time.Now().UTC().Truncate(time.Second)

func scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	_ = corev1.AddToScheme(s)
	_ = v1alpha1.AddToScheme(s)
	return s
}

// apiKey is an ApiKey with one Active key issued at issued, lasting life, and Ready.
func apiKey(ns, name, id string, issued time.Time, life time.Duration, rotation *time.Duration) *v1alpha1.ApiKey {
	a := &v1alpha1.ApiKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(issued)},
		Spec:       v1alpha1.ApiKeySpec{Scopes: []string{"users:read"}, SecretName: name + "-key", ExpiresAfter: &metav1.Duration{Duration: life}},
		Status: v1alpha1.ApiKeyStatus{
			CurrentKeyID: id,
			Keys: []v1alpha1.IssuedKey{{ID: id, Hash: "sha256:" + strings.Repeat("0", 64), State: v1alpha1.KeyActive,
				IssuedAt: metav1.NewTime(issued), NotAfter: metav1.NewTime(issued.Add(life)), Scopes: []string{"users:read"}}},
			Conditions: []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonKeyActive,
				Message: "the Secret holds the current key", LastTransitionTime: metav1.NewTime(issued)}},
		},
	}
	if rotation != nil {
		a.Spec.Rotation = &v1alpha1.RotationSpec{Period: metav1.Duration{Duration: *rotation}}
		t := metav1.NewTime(issued.Add(*rotation))
		a.Status.NextRotationAt = &t
	}
	return a
}

// calls counts what the dashboard asked the API server, by verb and kind.
type calls struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *calls) add(verb string, obj any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	kind := strings.TrimPrefix(strings.TrimPrefix(strings.TrimSuffix(typeName(obj), "List"), "*v1."), "*v1alpha1.")
	c.n[verb+" "+kind]++
}

func (c *calls) get(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[key]
}

func (c *calls) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.n {
		n += v
	}
	return n
}

func (c *calls) secrets() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for k, v := range c.n {
		if strings.Contains(k, "Secret") {
			n += v
		}
	}
	return n
}

func typeName(v any) string { return fmt.Sprintf("%T", v) }

type fixture struct {
	s     *Server
	c     client.WithWatch // the underlying fake, unintercepted
	calls *calls
	// forbid makes the API server refuse these verbs ("list-all", "list", "patch", "get") with Forbidden.
	forbid map[string]bool
	mu     sync.Mutex
}

func forbidden(verb, resource string) error {
	return apierrors.NewForbidden(schema.GroupResource{Group: "keysmith.dev", Resource: resource}, "",
		errorString(`User "dashboard-user" cannot `+verb+` resource "`+resource+`" in API group "keysmith.dev"`))
}

type errorString string

func (e errorString) Error() string { return string(e) }

func (f *fixture) forbids(verb string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.forbid[verb]
}

func newFixture(t *testing.T, o Options, objs ...client.Object) *fixture {
	t.Helper()
	f := &fixture{calls: &calls{n: map[string]int{}}, forbid: map[string]bool{}}
	f.c = fake.NewClientBuilder().WithScheme(scheme()).WithObjects(objs...).WithStatusSubresource(&v1alpha1.ApiKey{}).Build()
	intercepted := interceptor.NewClient(f.c, interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			f.calls.add("get", obj)
			if f.forbids("get") {
				return forbidden("get", "apikeys")
			}
			return c.Get(ctx, key, obj, opts...)
		},
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			f.calls.add("list", list)
			lo := (&client.ListOptions{}).ApplyOptions(opts)
			if f.forbids("list") || (lo.Namespace == "" && f.forbids("list-all")) {
				return forbidden("list", "apikeys")
			}
			return c.List(ctx, list, opts...)
		},
		Watch: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) (watch.Interface, error) {
			f.calls.add("watch", list)
			return c.Watch(ctx, list, opts...)
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			f.calls.add("patch", obj)
			if f.forbids("patch") {
				return forbidden("patch", "apikeys")
			}
			return c.Patch(ctx, obj, patch, opts...)
		},
	})
	o.Client = intercepted
	if o.Now == nil {
		o.Now = func() time.Time { return now }
	}
	if o.WaitTimeout == 0 {
		o.WaitTimeout = 300 * time.Millisecond
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	f.s = s
	return f
}

// sync runs the store's list and watch until the test ends and waits for the first list.
func (f *fixture) sync(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go f.s.store.run(ctx)
	deadline := time.Now().Add(5 * time.Second)
	for !f.s.store.state().synced || !f.s.store.state().live {
		if time.Now().After(deadline) {
			t.Fatalf("the store did not sync: %v", f.s.store.state().err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// request builds a request as the page sends it: the right Host, the session cookie and the token
// header (and for a POST, the Origin and a JSON body). mutate then plays the attacker.
func (f *fixture) request(method, target, body string, mutate ...func(*http.Request)) *httptest.ResponseRecorder {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, target, rd)
	r.Host = f.s.host
	r.AddCookie(&http.Cookie{Name: f.s.cookie, Value: f.s.session})
	r.Header.Set(TokenHeader, f.s.token)
	if method == http.MethodPost {
		r.Header.Set("Origin", f.s.origin)
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	for _, m := range mutate {
		m(r)
	}
	w := httptest.NewRecorder()
	f.s.ServeHTTP(w, r)
	return w
}

func withoutCookie(r *http.Request) { r.Header.Del("Cookie") }
func withoutToken(r *http.Request)  { r.Header.Del(TokenHeader) }
func header(k, v string) func(*http.Request) {
	return func(r *http.Request) {
		if v == "" {
			r.Header.Del(k)
		} else {
			r.Header.Set(k, v)
		}
	}
}

func decode[T any](t *testing.T, w *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatalf("decoding %q: %v", w.Body.String(), err)
	}
	return v
}

func rot(d time.Duration) *time.Duration { return &d }

// ---- listening --------------------------------------------------------------------------------------

// Another machine on the network must not reach the dashboard: only loopback addresses are accepted.
func TestListensOnLoopbackOnly(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(scheme()).Build()
	for _, addr := range []string{"0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "example.com", "127.0.0.1.nip.io", ""} {
		s, err := New(Options{Client: c, Address: addr})
		if addr == "" {
			if err != nil {
				t.Fatalf("default address: %v", err)
			}
			if host, _, _ := net.SplitHostPort(s.listener.Addr().String()); host != "127.0.0.1" {
				t.Errorf("default address listens on %s, want 127.0.0.1", host)
			}
			_ = s.Close()
			continue
		}
		if err == nil {
			_ = s.Close()
			t.Errorf("--address %q accepted; only loopback addresses may be", addr)
		} else if !strings.Contains(err.Error(), "loopback") {
			t.Errorf("--address %q: %v", addr, err)
		}
	}
	s, err := New(Options{Client: c, Address: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.URL(), "http://127.0.0.1:") {
		t.Errorf("localhost listens at %s", s.URL())
	}
}

// Each run has its own unguessable token, and the cookie's value is another secret.
func TestTokensAreRandomPerRun(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(scheme()).Build()
	a, err := New(Options{Client: c})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := New(Options{Client: c})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if a.token == b.token || len(a.token) < 43 || a.session == a.token || a.session == b.session {
		t.Fatalf("tokens not random per run: %d characters, equal across runs %t, cookie == token %t", len(a.token), a.token == b.token, a.session == a.token)
	}
	if !strings.Contains(a.URL(), "token="+a.token) {
		t.Fatalf("URL %s lacks the token", a.URL())
	}
}

// ---- the token --------------------------------------------------------------------------------------

// Another local user (or any process) who connects without the token gets nothing: not the page, not
// the script, not a byte of data.
func TestEveryRequestNeedsTheToken(t *testing.T) {
	f := newFixture(t, Options{}, apiKey("team-a", "billing", "0123456789ab", now.Add(-time.Hour), 90*24*time.Hour, nil))
	f.sync(t)
	for _, tc := range []struct {
		name, method, target, body string
		mutate                     []func(*http.Request)
	}{
		{"page without cookie or token", "GET", "/", "", []func(*http.Request){withoutCookie}},
		{"page with a wrong token", "GET", "/?token=" + strings.Repeat("A", 43), "", []func(*http.Request){withoutCookie}},
		{"page with the token's prefix", "GET", "/?token=" + f.s.token[:20], "", []func(*http.Request){withoutCookie}},
		{"page with a forged cookie", "GET", "/", "", []func(*http.Request){withoutCookie, func(r *http.Request) { r.AddCookie(&http.Cookie{Name: f.s.cookie, Value: f.s.token}) }}},
		{"script without cookie", "GET", "/assets/app.js", "", []func(*http.Request){withoutCookie}},
		{"script with the token in the URL only", "GET", "/assets/app.js?token=" + f.s.token, "", []func(*http.Request){withoutCookie}},
		{"data without cookie or token", "GET", "/api/apikeys", "", []func(*http.Request){withoutCookie, withoutToken}},
		{"data with the cookie only (a leaked cookie)", "GET", "/api/apikeys", "", []func(*http.Request){withoutToken}},
		{"data with the token only", "GET", "/api/apikeys", "", []func(*http.Request){withoutCookie}},
		{"data with the token in the URL", "GET", "/api/apikeys?token=" + f.s.token, "", []func(*http.Request){withoutCookie, withoutToken}},
		{"data with a wrong token", "GET", "/api/apikeys", "", []func(*http.Request){header(TokenHeader, strings.Repeat("A", 43))}},
		{"detail without token", "GET", "/api/apikeys/team-a/billing", "", []func(*http.Request){withoutToken}},
		{"events without token", "GET", "/api/events", "", []func(*http.Request){withoutToken}},
		{"revoke without token", "POST", "/api/apikeys/team-a/billing/revoke", `{"keyID":"0123456789ab"}`, []func(*http.Request){withoutToken}},
		{"revoke without cookie", "POST", "/api/apikeys/team-a/billing/revoke", `{"keyID":"0123456789ab"}`, []func(*http.Request){withoutCookie}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := f.request(tc.method, tc.target, tc.body, tc.mutate...)
			if w.Code != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401: %s", w.Code, w.Body.String())
			}
			if b := w.Body.String(); strings.Contains(b, "billing") || strings.Contains(b, "<script") || strings.Contains(b, "0123456789ab") {
				t.Fatalf("the refusal leaks content: %s", b)
			}
			if len(w.Result().Cookies()) > 0 {
				t.Fatal("a refused request got a session cookie")
			}
		})
	}
	if n := f.calls.get("patch ApiKey"); n != 0 {
		t.Fatalf("%d patches sent for requests without the token", n)
	}
}

// The token in the URL opens the page and sets an HttpOnly, SameSite=Strict cookie that is not the token.
func TestTheTokenSetsAStrictCookie(t *testing.T) {
	f := newFixture(t, Options{})
	w := f.request("GET", "/?token="+f.s.token, "", withoutCookie, withoutToken)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `<script src="/assets/app.js"`) {
		t.Fatalf("status %d: %s", w.Code, w.Body.String())
	}
	cs := w.Result().Cookies()
	if len(cs) != 1 {
		t.Fatalf("cookies %v", cs)
	}
	c := cs[0]
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Value != f.s.session || c.Value == f.s.token || c.Domain != "" {
		t.Fatalf("cookie %+v: want HttpOnly, SameSite=Strict, Path=/, host-only, value not the token", c)
	}
	if !strings.HasSuffix(c.Name, "_"+strings.Split(f.s.host, ":")[1]) {
		t.Fatalf("cookie name %s is not per port", c.Name)
	}
	// With the cookie, the page and its assets load without the token in the URL.
	for _, p := range []string{"/", "/assets/app.js", "/assets/app.css"} {
		if w := f.request("GET", p, "", withoutToken); w.Code != http.StatusOK {
			t.Errorf("%s with the cookie: %d", p, w.Code)
		}
	}
	for p, ct := range map[string]string{"/": "text/html", "/assets/app.js": "text/javascript", "/assets/app.css": "text/css"} {
		if got := f.request("GET", p, "").Header().Get("Content-Type"); !strings.HasPrefix(got, ct) {
			t.Errorf("%s: Content-Type %s", p, got)
		}
	}
	for _, p := range []string{"/assets/index.html.bak", "/assets/..%2fserver.go", "/assets/../server.go", "/server.go", "/api/nothing"} {
		if w := f.request("GET", p, ""); w.Code != http.StatusNotFound && w.Code/100 != 3 && w.Code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 404", p, w.Code)
		}
	}
}

// ---- DNS rebinding ----------------------------------------------------------------------------------

// A page of evil.example whose name the attacker's DNS now resolves to 127.0.0.1 reaches the port, but
// its requests say Host: evil.example. They are refused, even with a valid token and cookie.
func TestDNSRebindingIsRefused(t *testing.T) {
	f := newFixture(t, Options{}, apiKey("team-a", "billing", "0123456789ab", now.Add(-time.Hour), 90*24*time.Hour, nil))
	f.sync(t)
	_, port, _ := net.SplitHostPort(f.s.host)
	for _, host := range []string{"evil.example:" + port, "evil.example", "localhost:" + port, "127.0.0.1", "127.0.0.1:1", "127.0.0.2:" + port, "[::1]:" + port, "", "127.0.0.1:" + port + ".evil.example"} {
		for _, target := range []string{"/?token=" + f.s.token, "/api/apikeys", "/api/events", "/assets/app.js"} {
			w := f.request("GET", target, "", func(r *http.Request) { r.Host = host })
			if w.Code != http.StatusMisdirectedRequest {
				t.Errorf("Host %q %s: %d, want 421", host, target, w.Code)
			}
			if strings.Contains(w.Body.String(), "billing") || len(w.Result().Cookies()) > 0 {
				t.Errorf("Host %q %s leaked: %s", host, target, w.Body.String())
			}
		}
		w := f.request("POST", "/api/apikeys/team-a/billing/disable", `{}`, func(r *http.Request) { r.Host = host; r.Header.Set("Origin", "http://"+host) })
		if w.Code != http.StatusMisdirectedRequest {
			t.Errorf("Host %q POST: %d, want 421", host, w.Code)
		}
	}
	if n := f.calls.get("patch ApiKey"); n != 0 {
		t.Fatalf("%d patches sent from a rebound name", n)
	}
}

// ---- cross-site request forgery -----------------------------------------------------------------------

// A web page in the user's browser (another site, or another server on 127.0.0.1 that got hold of the
// cookie) posts to the action URL: refused unless the Origin is the dashboard's, the token header is
// there, the body is JSON and the browser does not call it cross-site.
func TestCrossSiteActionsAreRefused(t *testing.T) {
	f := newFixture(t, Options{}, apiKey("team-a", "billing", "0123456789ab", now.Add(-time.Hour), 90*24*time.Hour, nil))
	f.sync(t)
	revoke := "/api/apikeys/team-a/billing/revoke"
	body := `{"keyID":"0123456789ab"}`
	for _, tc := range []struct {
		name   string
		code   int
		mutate []func(*http.Request)
	}{
		{"an Origin of another site", 403, []func(*http.Request){header("Origin", "http://evil.example")}},
		{"an Origin of another port of 127.0.0.1", 403, []func(*http.Request){header("Origin", "http://127.0.0.1:9")}},
		{"an Origin of https on the same port", 403, []func(*http.Request){header("Origin", "https://"+f.s.host)}},
		{"an Origin null (sandboxed frame, file://)", 403, []func(*http.Request){header("Origin", "null")}},
		{"no Origin", 403, []func(*http.Request){header("Origin", "")}},
		{"Sec-Fetch-Site cross-site", 403, []func(*http.Request){header("Sec-Fetch-Site", "cross-site")}},
		{"Sec-Fetch-Site same-site (another port)", 403, []func(*http.Request){header("Sec-Fetch-Site", "same-site")}},
		{"a form post (text/plain, no token header: the cookie is SameSite=Strict anyway)", 401, []func(*http.Request){header("Content-Type", "text/plain"), withoutToken}},
		{"a form post with the cookie and a foreign Origin", 403, []func(*http.Request){header("Content-Type", "application/x-www-form-urlencoded"), withoutToken, header(TokenHeader, f.s.token), header("Origin", "http://evil.example")}},
		{"a simple request (text/plain) from the right origin", 415, []func(*http.Request){header("Content-Type", "text/plain")}},
		{"multipart", 415, []func(*http.Request){header("Content-Type", "multipart/form-data; boundary=x")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := f.request("POST", revoke, body, tc.mutate...)
			if w.Code != tc.code {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.code, w.Body.String())
			}
		})
	}
	// Actions are POST only: a link or an image (GET) does nothing.
	for _, m := range []string{"GET", "PUT", "DELETE", "PATCH"} {
		if w := f.request(m, revoke, ""); w.Code != http.StatusMethodNotAllowed {
			t.Errorf("%s %s: %d, want 405", m, revoke, w.Code)
		}
	}
	if n := f.calls.get("patch ApiKey") + f.calls.get("get ApiKey"); n != 0 {
		t.Fatalf("%d requests reached the API server", n)
	}
	var a v1alpha1.ApiKey
	_ = f.c.Get(context.Background(), client.ObjectKey{Namespace: "team-a", Name: "billing"}, &a)
	if _, ok := a.Annotations[v1alpha1.AnnotationRevoke]; ok {
		t.Fatal("the ApiKey was revoked by a forged request")
	}
	// The same request from the page itself is carried out: with no keysmith running here, the API
	// server holding the annotation is what every verifier follows, so it succeeds with a warning.
	w := f.request("POST", revoke, body)
	res := decode[ActionResponse](t, w)
	if w.Code != http.StatusOK || !res.Enforced || res.Recorded || !strings.HasPrefix(res.Warning, actions.NotRecordedWarning) ||
		res.Message != "revocation of key 0123456789ab requested (keysmith.dev/revoke=0123456789ab); every verifier refuses key 0123456789ab from its next request on (the API server holds keysmith.dev/revoke naming it)" {
		t.Fatalf("the page's own revoke: %d %s", w.Code, w.Body.String())
	}
	_ = f.c.Get(context.Background(), client.ObjectKey{Namespace: "team-a", Name: "billing"}, &a)
	if a.Annotations[v1alpha1.AnnotationRevoke] != "0123456789ab" {
		t.Fatalf("revoke annotation %q", a.Annotations[v1alpha1.AnnotationRevoke])
	}
}

// No CORS: a preflight gets no Access-Control-Allow-* header, so a browser never lets another origin
// send the token header or read a response.
func TestNoCORS(t *testing.T) {
	f := newFixture(t, Options{})
	f.sync(t)
	pre := f.request("OPTIONS", "/api/apikeys/team-a/billing/revoke", "", withoutCookie, withoutToken,
		header("Origin", "http://evil.example"), header("Access-Control-Request-Method", "POST"), header("Access-Control-Request-Headers", "x-keysmith-token,content-type"))
	get := f.request("GET", "/api/apikeys", "", header("Origin", "http://evil.example"))
	for name, w := range map[string]*httptest.ResponseRecorder{"preflight": pre, "GET with a foreign Origin": get} {
		for k := range w.Header() {
			if strings.HasPrefix(strings.ToLower(k), "access-control-") {
				t.Errorf("%s: CORS header %s: %s", name, k, w.Header().Get(k))
			}
		}
	}
	if pre.Code != http.StatusMethodNotAllowed && pre.Code != http.StatusUnauthorized {
		t.Errorf("preflight: %d", pre.Code)
	}
}

// ---- headers ----------------------------------------------------------------------------------------

// Every response, refusals included, forbids framing (clickjacking: a page framing the dashboard under a
// fake button), sniffing, referrers, and any script, style or connection not from the dashboard itself.
func TestSecurityHeadersOnEveryResponse(t *testing.T) {
	f := newFixture(t, Options{})
	f.sync(t)
	for name, w := range map[string]*httptest.ResponseRecorder{
		"page":         f.request("GET", "/?token="+f.s.token, ""),
		"script":       f.request("GET", "/assets/app.js", ""),
		"data":         f.request("GET", "/api/apikeys", ""),
		"401":          f.request("GET", "/", "", withoutCookie),
		"404":          f.request("GET", "/nothing", ""),
		"421":          f.request("GET", "/", "", func(r *http.Request) { r.Host = "evil.example" }),
		"403":          f.request("POST", "/api/apikeys/a/b/rotate", "{}", header("Origin", "http://evil.example")),
		"405":          f.request("GET", "/api/apikeys/a/b/rotate", ""),
		"action error": f.request("POST", "/api/apikeys/a/b/rotate", "{}"),
	} {
		h := w.Header()
		for k, want := range map[string]string{
			"Content-Security-Policy": ContentSecurityPolicy, "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
			"Referrer-Policy": "no-referrer", "Cache-Control": "no-store", "Cross-Origin-Resource-Policy": "same-origin",
		} {
			if got := h.Get(k); got != want {
				t.Errorf("%s (%d): %s = %q, want %q", name, w.Code, k, got, want)
			}
		}
	}
	for _, d := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "connect-src 'self'"} {
		if !strings.Contains(ContentSecurityPolicy, d) {
			t.Errorf("CSP lacks %s", d)
		}
	}
	if strings.Contains(ContentSecurityPolicy, "unsafe") || strings.Contains(ContentSecurityPolicy, "http") || strings.Contains(ContentSecurityPolicy, "*") {
		t.Errorf("CSP allows too much: %s", ContentSecurityPolicy)
	}
}

// The page complies with its own policy and loads nothing from elsewhere: no inline script or style, no
// event handler attribute, no external URL, no HTML built from strings (so names and condition messages
// written by others cannot become markup), no eval.
func TestAssetsNeedNoInlineScriptAndNoOtherOrigin(t *testing.T) {
	page, _ := assets.ReadFile("assets/index.html")
	js, _ := assets.ReadFile("assets/app.js")
	css, _ := assets.ReadFile("assets/app.css")
	for _, s := range regexp.MustCompile(`(?is)<script\b[^>]*>`).FindAllString(string(page), -1) {
		if !strings.Contains(s, `src="/assets/`) {
			t.Errorf("inline script element: %s", s)
		}
	}
	if regexp.MustCompile(`(?is)<script\b[^>]*>\s*[^<\s]`).Match(page) || regexp.MustCompile(`(?i)<style|\sstyle=|\son[a-z]+=|javascript:`).Match(page) {
		t.Error("index.html has inline script, style or event handlers")
	}
	for name, b := range map[string][]byte{"index.html": page, "app.js": js, "app.css": css} {
		for _, u := range regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}[^\s'"]*`).FindAllString(string(b), -1) {
			if u != "http://www.w3.org/2000/svg" {
				t.Errorf("%s refers to another origin: %s", name, u)
			}
		}
		if bytes := regexp.MustCompile(`@import|url\(`).Find(b); bytes != nil && name == "app.css" {
			t.Errorf("app.css loads %s", bytes)
		}
	}
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setAttribute('style'", "setAttribute(\"style\"", ".style.cssText"} {
		if strings.Contains(string(js), bad) {
			t.Errorf("app.js uses %s", bad)
		}
	}
}

// ---- bounds and validation -----------------------------------------------------------------------------

// A huge body is refused before it is read whole.
func TestRequestBodiesAreBounded(t *testing.T) {
	f := newFixture(t, Options{}, apiKey("team-a", "billing", "0123456789ab", now.Add(-time.Hour), 90*24*time.Hour, nil))
	big := `{"keyID":"0123456789ab","x":"` + strings.Repeat("a", 1<<20) + `"}`
	if w := f.request("POST", "/api/apikeys/team-a/billing/revoke", big); w.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("1 MiB body with Content-Length: %d", w.Code)
	}
	chunked := f.request("POST", "/api/apikeys/team-a/billing/revoke", "", func(r *http.Request) {
		r.Body = io.NopCloser(strings.NewReader(big))
		r.ContentLength = -1
	})
	if chunked.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("1 MiB chunked body: %d %s", chunked.Code, chunked.Body.String())
	}
	if n := f.calls.total(); n != 0 {
		t.Fatalf("%d requests reached the API server", n)
	}
}

// Namespaces, names, actions and key ids are checked before anything is sent to the API server, and the
// error does not repeat them.
func TestNamesAndIDsAreValidated(t *testing.T) {
	k, err := keys.Generate("ks", "live")
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, Options{}, apiKey("team-a", "billing", "0123456789ab", now.Add(-time.Hour), 90*24*time.Hour, nil))
	for _, tc := range []struct{ target, body string }{
		{"/api/apikeys/Team_A/billing/rotate", `{}`},
		{"/api/apikeys/team-a/Billing/rotate", `{}`},
		{"/api/apikeys/team-a/" + strings.Repeat("a", 64) + "/rotate", `{}`},
		{"/api/apikeys/team-a/..%2f..%2fsecrets/rotate", `{}`},
		{"/api/apikeys/team-a/bill%00ing/rotate", `{}`},
		{"/api/apikeys/team-a/billing/revoke", `{"keyID":"0123456789AB"}`},
		{"/api/apikeys/team-a/billing/revoke", `{"keyID":"0123456789ab,all"}`},
		{"/api/apikeys/team-a/billing/revoke", `{"keyID":"all"}`},
		{"/api/apikeys/team-a/billing/revoke", `{"keyID":"` + k.Plaintext() + `"}`},
		{"/api/apikeys/team-a/billing/revoke", `{}`},
		{"/api/apikeys/team-a/billing/rotate", `{"keyID":"0123456789ab"}`},
		{"/api/apikeys/team-a/billing/rotate", `{"disabled":true}`},
		{"/api/apikeys/team-a/billing/rotate", `{} {}`},
		{"/api/apikeys/team-a/billing/rotate", `[]`},
		{"/api/apikeys/team-a/billing/rotate", ``},
		{"/api/apikeys/team-a/billing/delete", `{}`},
		{"/api/apikeys/team-a/billing/annotate", `{}`},
	} {
		w := f.request("POST", tc.target, tc.body)
		if w.Code != http.StatusBadRequest && w.Code != http.StatusNotFound {
			t.Errorf("POST %s %s: %d, want 400 or 404", tc.target, tc.body, w.Code)
		}
		if strings.Contains(w.Body.String(), k.Plaintext()) || strings.Contains(w.Body.String(), k.Body) {
			t.Errorf("POST %s: the refusal repeats the key", tc.target)
		}
	}
	for _, p := range []string{"/api/apikeys/Team_A/billing", "/api/apikeys/team-a/" + strings.Repeat("b", 64)} {
		if w := f.request("GET", p, ""); w.Code != http.StatusBadRequest {
			t.Errorf("GET %s: %d", p, w.Code)
		}
	}
	if n := f.calls.get("patch ApiKey") + f.calls.get("get ApiKey"); n != 0 {
		t.Fatalf("%d requests reached the API server", n)
	}
}

// ---- what the dashboard reads and sends -------------------------------------------------------------

// It reads no Secret, and no response holds a key: not the Secret's (never read), not one a person pasted
// into keysmith.dev/revoke (annotations are dropped from what the store keeps; the revoke's message
// relays the annotation value, whose pending entries internal/actions writes as key ids), not one in a
// condition message (written by others: marshal's filter is the last line of defence for those).
//
// The data is checked before that filter too (with it off): only the condition's key may be there, so
// the test fails if strip() or the key-id conversion goes, and not only if the filter does.
func TestNoKeyInAnyResponseAndNoSecretRead(t *testing.T) {
	k, _ := keys.Generate("ks", "live")
	pasted := apiKey("team-a", "billing", keys.ID(k.Plaintext()), now.Add(-time.Hour), 90*24*time.Hour, nil)
	pasted.Annotations = map[string]string{v1alpha1.AnnotationRevoke: k.Plaintext()} // pasted, not handled yet
	pasted.Status.Keys = append(pasted.Status.Keys, v1alpha1.IssuedKey{ID: "0123456789ab", Hash: "sha256:" + strings.Repeat("1", 64), State: v1alpha1.KeyRetiring,
		IssuedAt: metav1.NewTime(now.Add(-48 * time.Hour)), NotAfter: metav1.NewTime(now.Add(time.Hour))})
	other, _ := keys.Generate("ks", "test")
	leaky := apiKey("team-a", "leaky", "abcdefabcdef", now.Add(-time.Hour), 90*24*time.Hour, nil)
	leaky.Status.Conditions = append(leaky.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionStalled, Status: metav1.ConditionTrue,
		Reason: v1alpha1.ReasonSecretWriteFailed, Message: "refused: " + other.Plaintext(), LastTransitionTime: metav1.NewTime(now)})
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "billing-key"}, Data: map[string][]byte{"api-key": []byte(k.Plaintext())}}
	f := newFixture(t, Options{}, pasted, leaky, secret)
	f.sync(t)
	holds := func(s string, key keys.Key) bool {
		return strings.Contains(s, key.Body[:16]) || strings.Contains(s, key.Plaintext())
	}
	// What the store keeps while the API server's ApiKey holds the pasted key.
	if kept, _ := json.Marshal(f.s.store.state().items); holds(string(kept), k) {
		t.Error("the store keeps the key pasted into keysmith.dev/revoke")
	}
	responses := func() string {
		var all strings.Builder
		for _, w := range []*httptest.ResponseRecorder{
			f.request("GET", "/?token="+f.s.token, ""),
			f.request("GET", "/api/apikeys", ""),
			f.request("GET", "/api/apikeys/team-a/billing", ""),
			f.request("GET", "/api/apikeys/team-a/leaky", ""),
			f.request("POST", "/api/apikeys/team-a/billing/revoke", `{"keyID":"0123456789ab"}`), // appends to the pending value
			f.request("GET", "/api/apikeys/team-a/billing", ""),
		} {
			all.WriteString(w.Body.String())
		}
		return all.String()
	}

	// Before the filter: what the store keeps and what the handlers build.
	redactJSON = func(b []byte) []byte { return b }
	raw := responses()
	redactJSON = keys.RedactBytes
	st := f.s.store.state()
	kept, _ := json.Marshal(st.items)
	built, _ := json.Marshal(buildSnapshot(st, now))
	for _, a := range st.items {
		d, _ := json.Marshal(detail(a, now))
		built = append(built, d...)
	}
	for what, s := range map[string]string{"the store's ApiKeys": string(kept), "the snapshot and details": string(built), "the responses": raw} {
		if holds(s, k) {
			t.Errorf("%s hold the key pasted into keysmith.dev/revoke, before marshal's filter", what)
		}
	}
	if !holds(raw, other) || !strings.Contains(raw, "keysmith.dev/revoke="+keys.ID(k.Plaintext())+",0123456789ab") {
		t.Fatal("without the filter, the condition's key and the revoke's value should be there: the check above would prove nothing")
	}

	// With it: nothing shaped like a key at all.
	out := responses()
	if holds(out, k) || holds(out, other) || keys.HasKeyShape(out) {
		t.Fatal("a response holds a key")
	}
	if !strings.Contains(out, "<redacted>") {
		t.Fatal("expected the condition to be redacted")
	}
	if n := f.calls.secrets(); n != 0 {
		t.Fatalf("the dashboard read Secrets %d times", n)
	}
}

// ---- RBAC is the user's ------------------------------------------------------------------------------

// What the API server forbids the user is shown as Forbidden with its message, never papered over.
func TestForbiddenIsShownAsSuch(t *testing.T) {
	f := newFixture(t, Options{FallbackNamespace: "team-a"}, apiKey("team-a", "billing", "0123456789ab", now.Add(-time.Hour), 90*24*time.Hour, nil),
		apiKey("team-b", "ci", "abcdefabcdef", now.Add(-time.Hour), 90*24*time.Hour, nil))
	f.forbid["list-all"] = true
	f.forbid["patch"] = true
	f.sync(t)
	snap := decode[Snapshot](t, f.request("GET", "/api/apikeys", ""))
	if snap.Namespace != "team-a" || len(snap.Rows) != 1 || snap.Rows[0].Name != "billing" || !strings.Contains(snap.Notice, "forbidden") {
		t.Fatalf("fallback to the context namespace: namespace %q, %d rows, notice %q", snap.Namespace, len(snap.Rows), snap.Notice)
	}
	w := f.request("POST", "/api/apikeys/team-a/billing/rotate", `{}`)
	e := decode[map[string]string](t, w)
	if w.Code != http.StatusForbidden || e["reason"] != "Forbidden" || !strings.Contains(e["error"], `cannot patch resource "apikeys"`) {
		t.Fatalf("forbidden patch: %d %v", w.Code, e)
	}

	g := newFixture(t, Options{Namespace: "team-b"})
	g.forbid["list"] = true
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go g.s.store.run(ctx)
	deadline := time.Now().Add(5 * time.Second)
	for g.s.store.state().err == nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	snap = decode[Snapshot](t, g.request("GET", "/api/apikeys", ""))
	if snap.Error == nil || !snap.Error.Forbidden || snap.Namespace != "team-b" || snap.Synced {
		t.Fatalf("a forbidden list: %+v", snap)
	}
}

// ---- content ----------------------------------------------------------------------------------------

func TestSnapshotFlagsAndCharts(t *testing.T) {
	f := newFixture(t, Options{},
		apiKey("team-a", "expiring", "111111111111", now.Add(-70*time.Hour), 72*time.Hour, nil),                   // expires in 2h, no rotation
		apiKey("team-a", "rotating", "222222222222", now.Add(-24*time.Hour), 90*24*time.Hour, rot(720*time.Hour)), // rotates in 29d
		apiKey("team-b", "fine", "333333333333", now, 90*24*time.Hour, nil),                                       // expires in 90d: just outside the window
	)
	f.sync(t)
	snap := decode[Snapshot](t, f.request("GET", "/api/apikeys", ""))
	if len(snap.Rows) != 3 || strings.Join(snap.Columns, ",") != strings.Join(Columns, ",") {
		t.Fatalf("rows %d columns %v", len(snap.Rows), snap.Columns)
	}
	byName := map[string]RowView{}
	for _, r := range snap.Rows {
		byName[r.Name] = r
		if len(r.Cells) != len(Columns) {
			t.Fatalf("%s: %d cells", r.Name, len(r.Cells))
		}
	}
	exp := byName["expiring"]
	if len(exp.Warnings) == 0 || exp.Warnings[0].Kind != "expiring" || !strings.Contains(exp.Warnings[0].Text, "expires in 2h") {
		t.Fatalf("expiring: %+v", exp.Warnings)
	}
	if exp.Cells[6] != rfc3339(now.Add(2*time.Hour))+" (in 2h)" || exp.CellClass[6] != "warn" {
		t.Fatalf("expires cell %q %q", exp.Cells[6], exp.CellClass[6])
	}
	if len(byName["rotating"].Warnings) != 0 || len(byName["fine"].Warnings) != 0 {
		t.Fatalf("unexpected warnings: %+v %+v", byName["rotating"].Warnings, byName["fine"].Warnings)
	}
	var got []string
	for _, e := range snap.Chart.Events {
		got = append(got, e.Name+" "+e.Kind+" "+e.At)
	}
	want := []string{"expiring expiry " + rfc3339(now.Add(2*time.Hour)), "rotating rotation " + rfc3339(now.Add(29*24*time.Hour))}
	if strings.Join(got, "; ") != strings.Join(want, "; ") || snap.Chart.Days != 90 {
		t.Fatalf("chart events %q, want %q", got, want)
	}

	d := decode[Detail](t, f.request("GET", "/api/apikeys/team-a/rotating", ""))
	if d.CurrentKeyID != "222222222222" || len(d.Keys) != 1 || len(d.Timeline) < 2 || d.Timeline[0].Kind != "Issued" {
		t.Fatalf("detail: %+v", d)
	}
	if w := f.request("GET", "/api/apikeys/team-a/nothing", ""); w.Code != http.StatusNotFound {
		t.Fatalf("missing ApiKey: %d", w.Code)
	}
}

// ---- the live stream ----------------------------------------------------------------------------------

// The event stream sends a snapshot at once and another when the watch sees a new ApiKey.
func TestEventsFollowTheWatch(t *testing.T) {
	f := newFixture(t, Options{}, apiKey("team-a", "billing", "0123456789ab", now.Add(-time.Hour), 90*24*time.Hour, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f.s.Run(ctx) }()
	req, _ := http.NewRequestWithContext(ctx, "GET", f.s.Origin()+"/api/events", nil)
	req.AddCookie(&http.Cookie{Name: f.s.cookie, Value: f.s.session})
	req.Header.Set(TokenHeader, f.s.token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); res.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("%d %s", res.StatusCode, ct)
	}
	events := make(chan Snapshot, 16)
	go func() {
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var s Snapshot
				if json.Unmarshal([]byte(data), &s) == nil {
					events <- s
				}
			}
		}
	}()
	waitFor := func(what string, ok func(Snapshot) bool) {
		t.Helper()
		timeout := time.After(5 * time.Second)
		for {
			select {
			case s := <-events:
				if ok(s) {
					return
				}
			case <-timeout:
				t.Fatalf("no snapshot with %s", what)
			}
		}
	}
	waitFor("billing", func(s Snapshot) bool { return s.Synced && len(s.Rows) == 1 })
	if err := f.c.Create(ctx, apiKey("team-a", "new-one", "aaaaaaaaaaaa", now, 90*24*time.Hour, nil)); err != nil {
		t.Fatal(err)
	}
	waitFor("new-one", func(s Snapshot) bool { return len(s.Rows) == 2 && s.Rows[1].Name == "new-one" })
	if err := f.c.Delete(ctx, &v1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "billing"}}); err != nil {
		t.Fatal(err)
	}
	waitFor("billing deleted", func(s Snapshot) bool { return len(s.Rows) == 1 && s.Rows[0].Name == "new-one" })

	// The number of open streams is bounded.
	var open []*http.Response
	for range maxStreams - 1 {
		r2, err := http.DefaultClient.Do(req.Clone(ctx))
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, r2)
	}
	extra, err := http.DefaultClient.Do(req.Clone(ctx))
	if err != nil {
		t.Fatal(err)
	}
	extra.Body.Close()
	if extra.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("stream %d: %d, want 503", maxStreams+1, extra.StatusCode)
	}
	for _, r := range open {
		r.Body.Close()
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// ---- the browser ------------------------------------------------------------------------------------

// The URL, token included, never appears on a command line (every local user can read
// /proc/PID/cmdline): the browser is given a file only the user can read, which forwards to the URL.
func TestOpenBrowserKeepsTheTokenOffTheCommandLine(t *testing.T) {
	var args []string
	old := BrowserCommand
	defer func() { BrowserCommand = old }()
	BrowserCommand = func(target string) *exec.Cmd {
		cmd := exec.Command("true", target)
		args = cmd.Args
		return cmd
	}
	url := "http://127.0.0.1:4242/?token=s3cr3t-t0ken"
	cleanup, err := OpenBrowser(url)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.Join(args, " "), "s3cr3t") {
		t.Fatalf("the token is on the command line: %q", args)
	}
	file := args[len(args)-1]
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	di, _ := os.Stat(filepath.Dir(file))
	if fi.Mode().Perm() != 0o600 || di.Mode().Perm() != 0o700 {
		t.Fatalf("file %v, directory %v: want 0600 and 0700", fi.Mode(), di.Mode())
	}
	b, _ := os.ReadFile(file)
	if !strings.Contains(string(b), `content="0;url=`+url+`"`) {
		t.Fatalf("the page does not forward to the URL: %s", b)
	}
	cleanup()
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatal("cleanup left the file holding the token")
	}
}

// A revoke or a disable is confirmed in two steps: the API server holding it (what every verifier
// follows), then keysmith's record. Without keysmith the first is a success with a warning; with it, the
// record's message.
func TestRevokeAndDisableConfirmedInTwoSteps(t *testing.T) {
	f := newFixture(t, Options{WaitTimeout: 5 * time.Second},
		apiKey("team-a", "billing", "0123456789ab", now.Add(-time.Hour), 90*24*time.Hour, nil),
		apiKey("team-a", "other", "abcdefabcdef", now.Add(-time.Hour), 90*24*time.Hour, nil))
	// keysmith, for billing only: it records a revocation as soon as it sees the annotation.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			var a v1alpha1.ApiKey
			if f.c.Get(ctx, client.ObjectKey{Namespace: "team-a", Name: "billing"}, &a) == nil && a.Annotations[v1alpha1.AnnotationRevoke] != "" && a.Status.Keys[0].State == v1alpha1.KeyActive {
				a.Status.Keys[0].State, a.Status.Keys[0].Reason = v1alpha1.KeyRevoked, v1alpha1.RevokedManual
				a.Status.HandledRevokeRequest = "sha256:x"
				_ = f.c.Status().Update(ctx, &a)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	w := f.request("POST", "/api/apikeys/team-a/billing/revoke", `{"keyID":"0123456789ab"}`)
	res := decode[ActionResponse](t, w)
	if w.Code != http.StatusOK || !res.Recorded || !res.Enforced || res.Warning != "" || !strings.HasPrefix(res.Message, "revocation of key 0123456789ab requested (keysmith.dev/revoke=0123456789ab); revoked: key 0123456789ab revoked (Manual)") {
		t.Fatalf("recorded revoke: %d %s", w.Code, w.Body.String())
	}

	f.s.opts.WaitTimeout = 200 * time.Millisecond
	w = f.request("POST", "/api/apikeys/team-a/other/disable", `{}`)
	res = decode[ActionResponse](t, w)
	if w.Code != http.StatusOK || !res.Enforced || res.Recorded || !strings.HasPrefix(res.Warning, actions.NotRecordedWarning) ||
		!strings.Contains(res.Message, "the API server holds spec.disabled: true") {
		t.Fatalf("disable without keysmith: %d %s", w.Code, w.Body.String())
	}
}
