// Package dashboard serves `kubectl apikey dashboard`: a web page on the loopback interface that shows
// the ApiKeys the user can see, flags the ones that need attention, draws the expiries and rotations of
// the next 90 days, follows a watch and pushes every change with Server-Sent Events, and rotates,
// revokes, disables and enables ApiKeys. Everything runs with the user's own client (their kubeconfig,
// credentials and RBAC); nothing is installed in the cluster and no Secret is ever read.
//
// The server holds the user's cluster credentials, so it treats every request as hostile until proven
// otherwise (docs/cli.md (dashboard), "Security model"):
//
//   - it listens on a loopback address only;
//   - every request must carry a secret: the per-run token in the URL of the first request, which sets
//     an HttpOnly, SameSite=Strict session cookie (a different random value, so that the cookie, which
//     browsers send to every port of the host, never reveals the token); every API request needs the
//     cookie and the token in the X-Keysmith-Token header, which only the page's script holds (in
//     origin-scoped storage);
//   - the Host header must name the address and port it listens on (DNS rebinding);
//   - actions are POST only, with a JSON body, the token header, and an Origin of the server itself
//     (cross-site request forgery); no CORS header is ever sent;
//   - every response carries a strict Content-Security-Policy (scripts and styles from the server only,
//     no inline script, no other origin), X-Frame-Options DENY, nosniff and no-referrer;
//   - request bodies and headers are bounded; namespaces, names and key ids are validated before use.
package dashboard

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TokenHeader carries the per-run token on every API request.
const TokenHeader = "X-Keysmith-Token"

// Limits of what a request may send.
const (
	maxBodyBytes   = 1 << 10 // an action's JSON body: {"keyID":"0123456789ab"} is 24 bytes
	maxHeaderBytes = 16 << 10
	maxStreams     = 8 // concurrent event streams (one per open tab)
)

// ContentSecurityPolicy is sent with every response: nothing but the server's own scripts, styles and
// connections, no inline script or style element, no plugin, no frame, no form target, no base URL.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Options configure a Server.
type Options struct {
	// Client reads, watches and patches ApiKeys with the user's credentials.
	Client client.WithWatch
	// Namespace limits the dashboard to one namespace; empty means every namespace, falling back to
	// FallbackNamespace when the user may not list ApiKeys across namespaces.
	Namespace string
	// FallbackNamespace is the kubeconfig context's namespace.
	FallbackNamespace string
	// Address is the loopback IP address to listen on (default 127.0.0.1); anything else is refused.
	Address string
	// Port to listen on; 0 picks a free one.
	Port int
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
	// WaitTimeout bounds how long an action waits for keysmith to confirm it before answering that it
	// is still pending (default 20s).
	WaitTimeout time.Duration
	// Token fixes the per-run token (tests); empty means a random one.
	Token string
	// OnRequest, if set, is told of every request once it is answered, with its status (tests and
	// debugging; the URL's query, which may hold the token, is the caller's to leave out).
	OnRequest func(r *http.Request, status int)
}

// Server is one run of the dashboard.
type Server struct {
	opts     Options
	now      func() time.Time
	token    string
	session  string // the cookie's value, a different random secret
	listener net.Listener
	host     string // the only Host header accepted: "127.0.0.1:port"
	origin   string // the only Origin accepted on POST: "http://" + host
	cookie   string // the cookie's name (per port, as browsers share cookies across ports)
	store    *store
	streams  chan struct{}
	mux      *http.ServeMux
}

// New listens on the loopback address and port of o and prepares the handlers; Run serves them.
func New(o Options) (*Server, error) {
	if o.Client == nil {
		return nil, errors.New("dashboard: no client")
	}
	if o.Address == "" {
		o.Address = "127.0.0.1"
	}
	ip := net.ParseIP(o.Address)
	if o.Address == "localhost" {
		ip = net.IPv4(127, 0, 0, 1)
	}
	if ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("--address %q is not a loopback IP address: the dashboard holds your cluster credentials and serves only this machine (use 127.0.0.1 or ::1)", o.Address)
	}
	if o.Port < 0 || o.Port > 65535 {
		return nil, fmt.Errorf("--port %d is not a port number", o.Port)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.WaitTimeout == 0 {
		o.WaitTimeout = 20 * time.Second
	}
	s := &Server{opts: o, now: o.Now, token: o.Token, streams: make(chan struct{}, maxStreams)}
	if s.token == "" {
		s.token = randomSecret()
	}
	s.session = randomSecret()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip.String(), strconv.Itoa(o.Port)))
	if err != nil {
		return nil, err
	}
	s.listener = ln
	s.host = ln.Addr().String() // 127.0.0.1:port or [::1]:port
	s.origin = "http://" + s.host
	s.cookie = "keysmith_dashboard_" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	s.store = newStore(o.Client, o.Namespace, o.FallbackNamespace)
	s.routes()
	return s, nil
}

func randomSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// URL is the address to open, with the token: the only way in.
func (s *Server) URL() string { return s.origin + "/?token=" + s.token }

// Origin is the server's origin, http://127.0.0.1:port.
func (s *Server) Origin() string { return s.origin }

// Token is the per-run token.
func (s *Server) Token() string { return s.token }

// Handler is the dashboard's handler with every defence in front of it.
func (s *Server) Handler() http.Handler { return s }

// Close stops listening (for a Server that is never Run).
func (s *Server) Close() error { return s.listener.Close() }

// Run watches the ApiKeys and serves the dashboard until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go s.store.run(ctx)
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    maxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          nil,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.listener) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, done := context.WithTimeout(context.Background(), 2*time.Second)
	defer done()
	_ = srv.Shutdown(shutdown) // event streams end with ctx
	return nil
}

// ServeHTTP checks the Host header, sets the security headers and dispatches.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.opts.OnRequest != nil {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		defer func() { s.opts.OnRequest(r, rec.status) }()
		w = rec
	}
	h := w.Header()
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
	h.Set("Cache-Control", "no-store")
	// DNS rebinding: a page of evil.example whose name now resolves to 127.0.0.1 sends Host: evil.example.
	if r.Host != s.host {
		http.Error(w, "misdirected request: this server answers only to "+s.host, http.StatusMisdirectedRequest)
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", s.page)
	m.HandleFunc("GET /assets/{file}", s.asset)
	m.HandleFunc("GET /api/apikeys", s.api(s.snapshot))
	m.HandleFunc("GET /api/apikeys/{namespace}/{name}", s.api(s.detail))
	m.HandleFunc("GET /api/events", s.api(s.events))
	m.HandleFunc("POST /api/apikeys/{namespace}/{name}/{action}", s.api(s.action))
	s.mux = m
}

// equal compares secrets in constant time.
func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// hasSession is true when the request carries the session cookie.
func (s *Server) hasSession(r *http.Request) bool {
	for _, c := range r.CookiesNamed(s.cookie) {
		if equal(c.Value, s.session) {
			return true
		}
	}
	return false
}

func (s *Server) setSession(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name: s.cookie, Value: s.session, Path: "/",
		HttpOnly: true, SameSite: http.SameSiteStrictMode,
	})
}

// page serves the HTML page to a request with the token in its URL (and sets the cookie) or with the
// cookie.
func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	if t := r.URL.Query().Get("token"); t != "" && equal(t, s.token) {
		s.setSession(w)
	} else if !s.hasSession(r) {
		unauthorized(w)
		return
	}
	serveAsset(w, r, "index.html")
}

// asset serves the page's script and style sheet to a request with the cookie.
func (s *Server) asset(w http.ResponseWriter, r *http.Request) {
	if !s.hasSession(r) {
		unauthorized(w)
		return
	}
	serveAsset(w, r, r.PathValue("file"))
}

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	fmt.Fprintln(w, "This is kubectl apikey dashboard. Open the URL it printed (with its token): each run has a new one.")
}

// api guards the API: the session cookie and the token header on every request; on a POST also an
// Origin of the server itself, a JSON body and Sec-Fetch-Site same-origin when the browser sends it.
func (s *Server) api(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.hasSession(r) || !equal(r.Header.Get(TokenHeader), s.token) {
			writeError(w, http.StatusUnauthorized, "missing or wrong token: open the URL kubectl apikey dashboard printed", "")
			return
		}
		if r.Method == http.MethodPost {
			if r.Header.Get("Origin") != s.origin {
				writeError(w, http.StatusForbidden, "cross-origin request refused", "")
				return
			}
			if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
				writeError(w, http.StatusForbidden, "cross-site request refused", "")
				return
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/json" && !strings.HasPrefix(ct, "application/json;") {
				writeError(w, http.StatusUnsupportedMediaType, "actions take a JSON body (Content-Type: application/json)", "")
				return
			}
			if r.ContentLength > maxBodyBytes {
				writeError(w, http.StatusRequestEntityTooLarge, "request body too large", "")
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(10 * time.Second))
		}
		next(w, r)
	}
}

// statusRecorder keeps the status a handler wrote; Unwrap lets http.ResponseController flush the event
// stream through it.
type statusRecorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
