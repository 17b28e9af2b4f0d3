package verify

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"k8s.io/utils/clock"
)

// MaxBodyBytes bounds a /v1/verify request body.
const MaxBodyBytes = 16 << 10

// Service is the verification service: the decision, the audit trail and the metrics, behind HTTP and
// gRPC front ends.
type Service struct {
	Index   Index
	Clock   clock.PassiveClock
	Audit   *Auditor
	Metrics *Metrics
}

// decide runs Check and records the outcome (metrics, audit). req describes the caller for the audit.
func (s *Service) decide(key string, required []string, req RequestInfo) Result {
	start := time.Now()
	now := s.Clock.Now()
	r := Check(s.Index, now, key, required)
	elapsed := time.Since(start)
	if s.Metrics != nil {
		s.Metrics.observe(r.Code, elapsed)
	}
	if s.Audit != nil {
		s.Audit.Record(now, r, key, required, req, elapsed)
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

// ErrorResponse is the body of a 400, 405 or 503.
type ErrorResponse struct {
	Code  string `json:"code"`
	Error string `json:"error"`
}

func (s *Service) serveVerify(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, ErrorResponse{Code: "METHOD_NOT_ALLOWED", Error: "use POST"})
		return
	}
	var req VerifyRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, MaxBodyBytes+1))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, ErrorResponse{Code: "BAD_REQUEST", Error: "body must be JSON {\"key\": string, \"scopes\": [string]} of at most 16 KiB: " + jsonProblem(err)})
		return
	}
	if dec.More() {
		writeJSON(w, http.StatusBadRequest, ErrorResponse{Code: "BAD_REQUEST", Error: "body must hold a single JSON object"})
		return
	}
	res := s.decide(req.Key, req.Scopes, RequestInfo{Caller: callerOf(r), Method: r.Method, Path: r.URL.Path})
	if res.Code == CodeUnavailable {
		writeJSON(w, http.StatusServiceUnavailable, ErrorResponse{Code: string(CodeUnavailable), Error: "the verifier is not ready; treat as a denial"})
		return
	}
	out := VerifyResponse{Valid: res.Valid(), Code: res.Code, Missing: res.Missing}
	if e := res.Entry; e != nil {
		out.KeyID = e.KeyID
		out.ApiKey = &ObjectRef{Namespace: e.Namespace, Name: e.Name}
		out.Scopes = e.Scopes
		t := e.NotAfter.UTC()
		out.ExpiresAt = &t
	}
	writeJSON(w, http.StatusOK, out)
}

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
// required scopes from ?scopes= and X-Required-Scopes (both apply). 200 with identity headers, 401 with
// WWW-Authenticate for missing, malformed, unknown, expired or revoked keys, 403 for a missing scope,
// 503 when not ready. Never 404 or 429: nginx turns any status other than 2xx, 401 and 403 into a 500.
func (s *Service) serveAuthz(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	key := presentedKey(r.Header)
	required := requiredScopes(r)
	info := RequestInfo{Caller: callerOf(r), Method: forwardedMethod(r), Path: forwardedPath(r)}
	res := s.decide(key, required, info)
	switch res.Code {
	case CodeValid:
		e := res.Entry
		h.Set("X-ApiKey-Id", e.KeyID)
		h.Set("X-ApiKey-Name", e.Namespace+"/"+e.Name)
		h.Set("X-ApiKey-Scopes", strings.Join(e.Scopes, ","))
		w.WriteHeader(http.StatusOK)
	case CodeInsufficientScope:
		h.Set("X-ApiKey-Id", res.Entry.KeyID)
		h.Set("WWW-Authenticate", `Bearer realm="keysmith", error="insufficient_scope", scope="`+strings.Join(required, " ")+`"`)
		w.WriteHeader(http.StatusForbidden)
	case CodeUnavailable:
		w.WriteHeader(http.StatusServiceUnavailable)
	default:
		h.Set("WWW-Authenticate", challenge(key))
		w.WriteHeader(http.StatusUnauthorized)
	}
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

// requiredScopes joins ?scopes= and X-Required-Scopes (comma separated). Both apply, so a client that adds
// either can only ask for more, never for less than the proxy configured.
func requiredScopes(r *http.Request) []string {
	var out []string
	add := func(list string) {
		for _, s := range strings.Split(list, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	for _, v := range r.URL.Query()["scopes"] {
		add(v)
	}
	for _, v := range r.Header.Values("X-Required-Scopes") {
		add(v)
	}
	return out
}

func callerOf(r *http.Request) string {
	if f := r.Header.Get("X-Forwarded-For"); f != "" {
		return strings.TrimSpace(strings.Split(f, ",")[0])
	}
	if ip := r.Header.Get("X-Real-Ip"); ip != "" {
		return ip
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// forwardedMethod and forwardedPath recover the original request: Traefik sends X-Forwarded-Method/-Uri,
// nginx configurations conventionally X-Original-Method/-URI, Envoy appends the original path to /authz.
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
	if p := strings.TrimPrefix(r.URL.Path, "/authz"); p != "" {
		return p
	}
	return ""
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
