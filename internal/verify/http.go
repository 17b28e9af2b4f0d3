package verify

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/clock"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
)

// Limits of what one request may ask. MaxRequiredScopes and MaxScopeLength are those of an ApiKey's
// spec.scopes (api/v1alpha1): a required scope that no ApiKey could carry is refused, not looked up.
const (
	// MaxBodyBytes bounds a /v1/verify request body.
	MaxBodyBytes      = 16 << 10
	MaxRequiredScopes = 64
	MaxScopeLength    = 128
	// MaxNamespaces bounds the namespaces constraint.
	MaxNamespaces = 64
)

// Service is the verification service: the decision, the audit trail and the metrics, behind HTTP and
// gRPC front ends.
type Service struct {
	Index   Index
	Clock   clock.PassiveClock
	Audit   *Auditor
	Metrics *Metrics
	// TrustedProxies are the peers whose forwarding headers (X-Forwarded-For, X-Real-Ip,
	// X-Forwarded-Method/-Uri, X-Original-*) and Envoy source attributes the audit trail believes. Empty
	// trusts none: the audit records the peer's address and the request's own method and path.
	TrustedProxies []netip.Prefix
}

// decide runs Check and records the outcome (metrics, audit). info describes the caller for the audit.
func (s *Service) decide(req Request, info RequestInfo) Result {
	start := time.Now()
	now := s.Clock.Now()
	r := Check(s.Index, now, req)
	elapsed := time.Since(start)
	if s.Metrics != nil {
		s.Metrics.observe(r.Code, elapsed)
	}
	if s.Audit != nil {
		s.Audit.Record(now, r, req, info, elapsed)
	}
	return r
}

// RequestInfo describes who asked, for the audit trail.
type RequestInfo struct {
	Caller string
	Method string
	Path   string
}

// Handler returns the HTTP front end: POST /v1/verify (JSON) and /authz, /authz/... (proxies).
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/verify", s.serveVerify)
	mux.HandleFunc("/authz", s.serveAuthz)
	mux.HandleFunc("/authz/", s.serveAuthz)
	return mux
}

// VerifyRequest is the body of POST /v1/verify.
type VerifyRequest struct {
	Key    string   `json:"key"`
	Scopes []string `json:"scopes,omitempty"`
	// Namespaces and Environment are the constraints: whose keys the API accepts.
	Namespaces  []string             `json:"namespaces,omitempty"`
	Environment v1alpha1.Environment `json:"environment,omitempty"`
}

// VerifyResponse is the answer of POST /v1/verify.
type VerifyResponse struct {
	Valid     bool       `json:"valid"`
	Code      Code       `json:"code"`
	KeyID     string     `json:"keyId,omitempty"`
	ApiKey    *ObjectRef `json:"apiKey,omitempty"`
	Scopes    []string   `json:"scopes,omitempty"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	// Missing is the first required scope the key lacks.
	Missing string `json:"missingScope,omitempty"`
}

// ObjectRef names an ApiKey.
type ObjectRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// ErrorCode says why a request got no decision (the code of an ErrorResponse).
type ErrorCode string

const (
	ErrorBadRequest       ErrorCode = "BAD_REQUEST"
	ErrorMethodNotAllowed ErrorCode = "METHOD_NOT_ALLOWED"
	// ErrorInvalidScopes: more than MaxRequiredScopes required scopes, or one that is not resource:action.
	ErrorInvalidScopes ErrorCode = "INVALID_SCOPES"
	// ErrorInvalidConstraints: a namespaces or environment constraint that is malformed or given twice.
	ErrorInvalidConstraints ErrorCode = "INVALID_CONSTRAINTS"
)

// ErrorCodes lists the codes of requests refused before a decision, for metrics and tests.
var ErrorCodes = []ErrorCode{ErrorBadRequest, ErrorInvalidScopes, ErrorInvalidConstraints}

// ErrorResponse is the body of a 400, 405 or 503.
type ErrorResponse struct {
	Code  ErrorCode `json:"code"`
	Error string    `json:"error"`
}

// requestError is a request refused before any decision. Its message never repeats the input.
type requestError struct {
	code ErrorCode
	msg  string
}

func invalidScopes(msg string) *requestError { return &requestError{ErrorInvalidScopes, msg} }
func invalidConstraints(msg string) *requestError {
	return &requestError{ErrorInvalidConstraints, msg}
}

var errTooManyScopes = invalidScopes(fmt.Sprintf("at most %d required scopes", MaxRequiredScopes))

func badScope(n int) *requestError {
	return invalidScopes(fmt.Sprintf("required scope %d is not resource:action in lowercase (at most %d characters, for example users:read)", n, MaxScopeLength))
}

// parseScopes appends the scopes of a comma-separated list to dst (blanks around them and empty items are
// ignored). It checks each scope as it reaches it and stops at the first that is not resource:action and
// at the first beyond MaxRequiredScopes: no input makes it hold more than MaxRequiredScopes strings, which
// are substrings of list.
func parseScopes(dst []string, list string) ([]string, *requestError) {
	for list != "" {
		item, rest, _ := strings.Cut(list, ",")
		list = rest
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		if len(dst) == MaxRequiredScopes {
			return dst, errTooManyScopes
		}
		if !ValidScope(item) {
			return dst, badScope(len(dst) + 1)
		}
		dst = append(dst, item)
	}
	return dst, nil
}

// checkScopes validates a list of required scopes that is already split (the JSON API's).
func checkScopes(scopes []string) *requestError {
	if len(scopes) > MaxRequiredScopes {
		return errTooManyScopes
	}
	for i, sc := range scopes {
		if !ValidScope(sc) {
			return badScope(i + 1)
		}
	}
	return nil
}

// ValidScope reports whether s has the shape of an ApiKey's scope: at most MaxScopeLength characters
// matching ^[a-z0-9]+([._-][a-z0-9]+)*:[a-z0-9]+([._-][a-z0-9]+)*$ (checked without a regular expression,
// so that it does not allocate; FuzzScopeShape compares it with the ApiKey validation).
func ValidScope(s string) bool {
	if len(s) > MaxScopeLength {
		return false
	}
	resource, action, ok := strings.Cut(s, ":")
	return ok && scopeWord(resource) && scopeWord(action)
}

// scopeWord matches [a-z0-9]+([._-][a-z0-9]+)*.
func scopeWord(w string) bool {
	afterSeparator := true // a word starts like after a separator: with a letter or a digit
	for i := 0; i < len(w); i++ {
		switch c := w[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
			afterSeparator = false
		case c == '.' || c == '_' || c == '-':
			if afterSeparator {
				return false
			}
			afterSeparator = true
		default:
			return false
		}
	}
	return !afterSeparator
}

// parseNamespaces reads the namespaces constraint, a comma-separated list of at most MaxNamespaces
// DNS-1123 labels (blanks and empty items ignored). A list naming none is refused: an empty constraint
// would accept every namespace.
func parseNamespaces(list string) ([]string, *requestError) {
	var out []string
	for list != "" {
		item, rest, _ := strings.Cut(list, ",")
		list = rest
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		if len(out) == MaxNamespaces {
			return nil, invalidConstraints(fmt.Sprintf("namespaces: at most %d", MaxNamespaces))
		}
		if len(validation.IsDNS1123Label(item)) > 0 {
			return nil, invalidConstraints(fmt.Sprintf("namespaces: item %d is not a namespace name (a DNS-1123 label)", len(out)+1))
		}
		out = append(out, item)
	}
	if len(out) == 0 {
		return nil, invalidConstraints("namespaces lists no namespace")
	}
	return out, nil
}

// checkNamespaces validates a namespaces constraint that is already split (the JSON API's); nil means
// none was given.
func checkNamespaces(namespaces []string) *requestError {
	if namespaces == nil {
		return nil
	}
	switch {
	case len(namespaces) == 0:
		return invalidConstraints("namespaces lists no namespace")
	case len(namespaces) > MaxNamespaces:
		return invalidConstraints(fmt.Sprintf("namespaces: at most %d", MaxNamespaces))
	}
	for i, ns := range namespaces {
		if len(validation.IsDNS1123Label(ns)) > 0 {
			return invalidConstraints(fmt.Sprintf("namespaces: item %d is not a namespace name (a DNS-1123 label)", i+1))
		}
	}
	return nil
}

func parseEnvironment(v string) (v1alpha1.Environment, *requestError) {
	switch env := v1alpha1.Environment(strings.TrimSpace(v)); env {
	case v1alpha1.EnvironmentLive, v1alpha1.EnvironmentTest:
		return env, nil
	}
	return "", invalidConstraints("environment must be live or test")
}

// parseConstraints reads the constraints from the values given for namespaces and for environment (the
// query parameters of /authz, the context_extensions of gRPC). Each may be given once: a second value
// could only be an attempt to change what the proxy configured.
func parseConstraints(namespaces, environment []string) (Constraints, *requestError) {
	var c Constraints
	var err *requestError
	switch len(namespaces) {
	case 0:
	case 1:
		if c.Namespaces, err = parseNamespaces(namespaces[0]); err != nil {
			return Constraints{}, err
		}
	default:
		return Constraints{}, invalidConstraints("namespaces given more than once")
	}
	switch len(environment) {
	case 0:
	case 1:
		if c.Environment, err = parseEnvironment(environment[0]); err != nil {
			return Constraints{}, err
		}
	default:
		return Constraints{}, invalidConstraints("environment given more than once")
	}
	return c, nil
}

// request validates the JSON API's question.
func (b *VerifyRequest) request() (Request, *requestError) {
	if err := checkScopes(b.Scopes); err != nil {
		return Request{}, err
	}
	if err := checkNamespaces(b.Namespaces); err != nil {
		return Request{}, err
	}
	req := Request{Key: b.Key, Scopes: b.Scopes, Accept: Constraints{Namespaces: b.Namespaces}}
	if b.Environment != "" {
		env, err := parseEnvironment(string(b.Environment))
		if err != nil {
			return Request{}, err
		}
		req.Accept.Environment = env
	}
	return req, nil
}

// authzRequest reads the proxy contract's question: the key from the headers, the required scopes from
// ?scopes= and X-Required-Scopes (both apply), the constraints from the query only (the auth URL the proxy
// operator configures; a client cannot set it).
func authzRequest(r *http.Request) (Request, *requestError) {
	q := r.URL.Query()
	req := Request{Key: presentedKey(r.Header)}
	var err *requestError
	for _, list := range q["scopes"] {
		if req.Scopes, err = parseScopes(req.Scopes, list); err != nil {
			return Request{}, err
		}
	}
	for _, list := range r.Header.Values("X-Required-Scopes") {
		if req.Scopes, err = parseScopes(req.Scopes, list); err != nil {
			return Request{}, err
		}
	}
	if req.Accept, err = parseConstraints(q["namespaces"], q["environment"]); err != nil {
		return Request{}, err
	}
	return req, nil
}

func (s *Service) serveVerify(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, ErrorResponse{Code: ErrorMethodNotAllowed, Error: "use POST"})
		return
	}
	var body VerifyRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, MaxBodyBytes+1))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		s.refuse(w, &requestError{ErrorBadRequest, `body must be JSON {"key": string, "scopes": [string], "namespaces": [string], "environment": "live"|"test"} of at most 16 KiB: ` + jsonProblem(err)}, false)
		return
	}
	if dec.More() {
		s.refuse(w, &requestError{ErrorBadRequest, "body must hold a single JSON object"}, false)
		return
	}
	req, bad := body.request()
	if bad != nil {
		s.refuse(w, bad, false)
		return
	}
	res := s.decide(req, s.requestInfo(r, false))
	if res.Code == CodeUnavailable {
		writeJSON(w, http.StatusServiceUnavailable, ErrorResponse{Code: ErrorCode(CodeUnavailable), Error: "the verifier is not ready; treat as a denial"})
		return
	}
	out := VerifyResponse{Valid: res.Valid(), Code: res.Code, Missing: res.Missing}
	// Nothing is disclosed about a key outside the constraints, whatever its state.
	if e := res.Entry; e != nil && req.Accept.Accepts(e) {
		out.KeyID = e.KeyID
		out.ApiKey = &ObjectRef{Namespace: e.Namespace, Name: e.Name}
		out.Scopes = e.Scopes
		t := e.NotAfter.UTC()
		out.ExpiresAt = &t
	}
	writeJSON(w, http.StatusOK, out)
}

// refuse answers 400 to a request that gets no decision, counted but not audited (nothing in it was
// checked). The proxy contract adds the RFC 6750 challenge for a malformed request.
func (s *Service) refuse(w http.ResponseWriter, e *requestError, challenge bool) {
	if s.Metrics != nil {
		s.Metrics.invalid(e.code)
	}
	if challenge {
		w.Header().Set("WWW-Authenticate", invalidRequestChallenge)
	}
	writeJSON(w, http.StatusBadRequest, ErrorResponse{Code: e.code, Error: e.msg})
}

// The WWW-Authenticate challenges (RFC 6750 section 3). A key outside the constraints is valid but lacks
// what this API requires of the keys it accepts: 403 with insufficient_scope, and no scope attribute,
// since no scope would help.
const (
	invalidRequestChallenge = `Bearer realm="keysmith", error="invalid_request"`
	notAcceptedChallenge    = `Bearer realm="keysmith", error="insufficient_scope", error_description="the key is not accepted here"`
)

// jsonProblem describes a decoding error without echoing the input (which may hold a key).
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return "syntax error"
	case errors.As(err, &typ):
		return "field " + typ.Field + " has the wrong type"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "empty or truncated body"
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return "unknown field"
	}
	return "invalid body"
}

// serveAuthz is the proxy contract: any method, the key from Authorization: Bearer or X-Api-Key,
// required scopes from ?scopes= and X-Required-Scopes (both apply), constraints from ?namespaces= and
// ?environment=. 200 with identity headers, 401 with WWW-Authenticate for missing, malformed, unknown,
// expired or revoked keys, 403 for a missing scope or a key outside the constraints, 400 for invalid
// scopes or constraints, 503 when not ready. Never 404 or 429: nginx turns any status other than 2xx, 401
// and 403 into a 500.
func (s *Service) serveAuthz(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	req, bad := authzRequest(r)
	if bad != nil {
		s.refuse(w, bad, true)
		return
	}
	res := s.decide(req, s.requestInfo(r, true))
	switch res.Code {
	case CodeValid:
		e := res.Entry
		h.Set("X-ApiKey-Id", e.KeyID)
		h.Set("X-ApiKey-Name", e.Namespace+"/"+e.Name)
		h.Set("X-ApiKey-Scopes", strings.Join(e.Scopes, ","))
		w.WriteHeader(http.StatusOK)
	case CodeInsufficientScope:
		h.Set("X-ApiKey-Id", res.Entry.KeyID)
		h.Set("WWW-Authenticate", insufficientScopeChallenge(req.Scopes))
		w.WriteHeader(http.StatusForbidden)
	case CodeNotAccepted:
		h.Set("WWW-Authenticate", notAcceptedChallenge)
		w.WriteHeader(http.StatusForbidden)
	case CodeUnavailable:
		w.WriteHeader(http.StatusServiceUnavailable)
	default:
		h.Set("WWW-Authenticate", challenge(req.Key))
		w.WriteHeader(http.StatusUnauthorized)
	}
}

// insufficientScopeChallenge lists the required scopes, all validated (resource:action, no quote).
func insufficientScopeChallenge(required []string) string {
	return `Bearer realm="keysmith", error="insufficient_scope", scope="` + strings.Join(required, " ") + `"`
}

// challenge is the WWW-Authenticate value of a 401: no error code when no key was presented (RFC 6750
// section 3.1), invalid_token otherwise.
func challenge(key string) string {
	if key == "" {
		return `Bearer realm="keysmith"`
	}
	return `Bearer realm="keysmith", error="invalid_token"`
}

// presentedKey reads the key from "Authorization: Bearer <key>", else from X-Api-Key.
func presentedKey(h http.Header) string {
	if a := h.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return strings.TrimSpace(h.Get("X-Api-Key"))
}

// requestInfo describes the caller for the audit trail. Forwarding headers are believed only from a
// trusted proxy; anyone else's are ignored, and the record holds the peer's address and the request's own
// method and path. forwarded says whether the original method and path may be taken from them (the proxy
// contract).
func (s *Service) requestInfo(r *http.Request, forwarded bool) RequestInfo {
	info := RequestInfo{Caller: hostOf(r.RemoteAddr), Method: r.Method, Path: r.URL.Path}
	peer, ok := parseAddr(info.Caller)
	if !ok || !s.trusts(peer) {
		return info
	}
	info.Caller = s.clientOf(peer, r.Header)
	if forwarded {
		info.Method, info.Path = forwardedMethod(r), forwardedPath(r)
	}
	return info
}

// maxForwardedHops bounds the X-Forwarded-For entries examined.
const maxForwardedHops = 32

// clientOf returns the client behind the trusted peer: the last X-Forwarded-For address that was not
// appended by a trusted proxy itself (entries further left are whatever the client sent), else X-Real-Ip,
// else the peer.
func (s *Service) clientOf(peer netip.Addr, h http.Header) string {
	client := peer
	lists := h.Values("X-Forwarded-For")
	if len(lists) == 0 {
		if a, ok := parseAddr(strings.TrimSpace(h.Get("X-Real-Ip"))); ok {
			return a.String()
		}
		return client.String()
	}
	hops := 0
	for i := len(lists) - 1; i >= 0; i-- {
		list := lists[i]
		for list != "" {
			if !s.trusts(client) || hops == maxForwardedHops {
				return client.String()
			}
			item := list
			if j := strings.LastIndexByte(list, ','); j >= 0 {
				item, list = list[j+1:], list[:j]
			} else {
				list = ""
			}
			if item = strings.TrimSpace(item); item == "" {
				continue
			}
			hops++
			a, ok := parseAddr(item)
			if !ok {
				// Not an address: the hop that wrote it is the last one known.
				return client.String()
			}
			client = a
		}
	}
	return client.String()
}

func (s *Service) trusts(a netip.Addr) bool {
	for _, p := range s.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseAddr parses an IP address (IPv4-mapped IPv6 addresses as IPv4).
func parseAddr(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// hostOf returns the host of a host:port address, else the address itself.
func hostOf(hostport string) string {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport
	}
	return host
}

// forwardedMethod and forwardedPath recover the original request from a trusted proxy: Traefik sends
// X-Forwarded-Method/-Uri, nginx configurations conventionally X-Original-Method/-URI, ingress-nginx
// X-Original-URL; Envoy appends the original path to its path_prefix (after /authz, or after a final
// path= parameter when the prefix carries constraints).
func forwardedMethod(r *http.Request) string {
	for _, h := range []string{"X-Forwarded-Method", "X-Original-Method"} {
		if v := r.Header.Get(h); v != "" {
			return v
		}
	}
	return r.Method
}

func forwardedPath(r *http.Request) string {
	for _, h := range []string{"X-Forwarded-Uri", "X-Original-Uri", "X-Original-URL"} {
		if v := r.Header.Get(h); v != "" {
			return v
		}
	}
	if p, ok := strings.CutPrefix(r.URL.Path, "/authz"); ok && p != "" {
		return p
	}
	q := r.URL.RawQuery
	if strings.HasPrefix(q, "path=") {
		return q[len("path="):]
	}
	if i := strings.Index(q, "&path="); i >= 0 {
		return q[i+len("&path="):]
	}
	return ""
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
