// Package verify is keysmith's verification service: it answers "is this key valid, and does it carry
// these scopes?" for APIs (a JSON endpoint) and proxies (Envoy ext_authz over HTTP and gRPC, nginx
// auth_request, Traefik ForwardAuth). Decisions come from an in-memory index of key hashes fed by the
// ApiKey informer, so a revocation is refused as soon as its watch event arrives.
package verify

import (
	"slices"
	"time"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/keys"
)

// Code is the outcome of a verification.
type Code string

const (
	CodeValid             Code = "VALID"
	CodeMalformed         Code = "MALFORMED"
	CodeNotFound          Code = "NOT_FOUND"
	CodeExpired           Code = "EXPIRED"
	CodeRevoked           Code = "REVOKED"
	CodeInsufficientScope Code = "INSUFFICIENT_SCOPE"
	// CodeNotAccepted: a valid key, but not one the protected API accepts (its ApiKey is in a namespace, or
	// of an environment, outside the request's constraints).
	CodeNotAccepted Code = "NOT_ACCEPTED"
	// CodeUnavailable: the verifier cannot vouch for its index (not synced, or its watch broken for longer
	// than the staleness bound). Every caller must treat it as a denial.
	CodeUnavailable Code = "UNAVAILABLE"
)

// Codes lists every code, for metrics and tests.
var Codes = []Code{CodeValid, CodeMalformed, CodeNotFound, CodeExpired, CodeRevoked, CodeInsufficientScope, CodeNotAccepted, CodeUnavailable}

// Entry is what the index knows about one issued key.
type Entry struct {
	Digest    keys.Digest
	KeyID     string
	Namespace string
	Name      string
	// Environment is the ApiKey's environment (live or test).
	Environment v1alpha1.Environment
	State       v1alpha1.KeyState
	// Scopes are the ApiKey's scopes (shared, never modified).
	Scopes   []string
	NotAfter time.Time
	// Deleting is set once the ApiKey has a deletionTimestamp: refused before the finalizer even runs.
	Deleting bool

	lastUsed lastUsed
}

// Index finds entries by key digest.
type Index interface {
	// Lookup returns the entry for d.
	Lookup(d keys.Digest) (*Entry, bool)
	// Ready returns nil when the index can be trusted, else why not.
	Ready() error
}

// Request is one question to Check: is Key valid, does it carry every one of Scopes, and is it a key that
// Accept allows? The front ends fill it only with input they have validated and bounded (at most
// MaxRequiredScopes scopes of ApiKey shape, at most MaxNamespaces namespace names).
type Request struct {
	Key string
	// Scopes are the required scopes: the key must carry each one.
	Scopes []string
	// Accept are the protected API's constraints on whose keys it accepts.
	Accept Constraints
}

// Constraints say whose keys a protected API accepts. The zero value accepts every key the verifier
// serves; each field that is set narrows that.
type Constraints struct {
	// Namespaces, when not empty, are the only namespaces whose ApiKeys are accepted.
	Namespaces []string
	// Environment, when set, is the only environment accepted (live or test).
	Environment v1alpha1.Environment
}

// Accepts reports whether a key of e satisfies c.
func (c Constraints) Accepts(e *Entry) bool {
	if c.Environment != "" && e.Environment != c.Environment {
		return false
	}
	return len(c.Namespaces) == 0 || slices.Contains(c.Namespaces, e.Namespace)
}

// Result is a decision. Entry is set whenever the key was found.
type Result struct {
	Code  Code
	Entry *Entry
	// Missing is the first required scope the key lacks (CodeInsufficientScope).
	Missing string
}

// Valid reports whether the key was accepted.
func (r Result) Valid() bool { return r.Code == CodeValid }

// Check decides on req at now: format and checksum (no lookup for garbage), one SHA-256, one map lookup, a
// constant-time comparison of the digests, then state and expiry, the constraints (NOT_ACCEPTED) and the
// scopes. It does not allocate.
func Check(ix Index, now time.Time, req Request) Result {
	if ix.Ready() != nil {
		return Result{Code: CodeUnavailable}
	}
	if !keys.Valid(req.Key) {
		return Result{Code: CodeMalformed}
	}
	d := keys.Sum(req.Key)
	e, ok := ix.Lookup(d)
	if !ok || !e.Digest.Equal(d) {
		return Result{Code: CodeNotFound}
	}
	switch {
	case e.Deleting || e.State == v1alpha1.KeyRevoked:
		return Result{Code: CodeRevoked, Entry: e}
	case e.State == v1alpha1.KeyExpired || !now.Before(e.NotAfter):
		return Result{Code: CodeExpired, Entry: e}
	case e.State != v1alpha1.KeyActive && e.State != v1alpha1.KeyRetiring:
		return Result{Code: CodeRevoked, Entry: e}
	}
	if !req.Accept.Accepts(e) {
		return Result{Code: CodeNotAccepted, Entry: e}
	}
	if len(e.Scopes) == 0 {
		// keysmith granted this key nothing (a policy forbids every scope, --require-policy, or no grant
		// recorded yet): it opens nothing, not even a check that requires no scope.
		missing := ""
		if len(req.Scopes) > 0 {
			missing = req.Scopes[0]
		}
		return Result{Code: CodeInsufficientScope, Entry: e, Missing: missing}
	}
	for _, want := range req.Scopes {
		if !slices.Contains(e.Scopes, want) {
			return Result{Code: CodeInsufficientScope, Entry: e, Missing: want}
		}
	}
	e.lastUsed.record(now)
	return Result{Code: CodeValid, Entry: e}
}
