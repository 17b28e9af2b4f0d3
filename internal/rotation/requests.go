package rotation

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"

	"github.com/keysmith-dev/keysmith/internal/keys"
)

// Requests are annotations (keysmith.dev/rotate, keysmith.dev/revoke) whose every new value is acted on
// once. Status records a digest of the value handled, never the value itself: whatever a person pastes
// into an annotation (a key, by mistake) is never repeated in status, events, conditions or logs.

// RequestDigest is what status records for a handled request value: "sha256:<hex>" of it, "" for "".
func RequestDigest(v string) string {
	if v == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(v))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// RequestHandled reports whether the request value v needs no action: it is empty, or status records it
// as handled (as a digest, or, as releases before digests recorded it, verbatim).
func RequestHandled(v, handled string) bool {
	return v == "" || handled == RequestDigest(v) || handled == v
}

// MaxRevokeEntries bounds the entries of a keysmith.dev/revoke value (status lists at most 16 keys).
const MaxRevokeEntries = 64

var keyIDPattern = regexp.MustCompile(`^[0-9a-f]{12}$`)

// ParseRevokeRequest reads a keysmith.dev/revoke value: "all", or entries separated by commas, each a
// 12-hex-digit key id or a whole key (pasted by mistake instead of its id: it is taken as its id, so the
// leaked key is revoked). problem is set, and nothing should be revoked, when the value is malformed; it
// never repeats the value.
func ParseRevokeRequest(v string) (ids []string, all bool, problem string) {
	parts := strings.SplitN(v, ",", MaxRevokeEntries+1)
	if len(parts) > MaxRevokeEntries {
		return nil, false, fmt.Sprintf("keysmith.dev/revoke has more than %d entries; no key was revoked", MaxRevokeEntries)
	}
	for i, part := range parts {
		part = strings.TrimSpace(part)
		switch {
		case part == "":
		case part == "all":
			all = true
		case keyIDPattern.MatchString(part):
			ids = append(ids, part)
		case keys.Valid(part):
			ids = append(ids, keys.ID(part))
		default:
			return nil, false, fmt.Sprintf("keysmith.dev/revoke entry %d is not \"all\", a 12-hex-digit key id or a key; no key was revoked", i+1)
		}
	}
	if !all && len(ids) == 0 {
		return nil, false, "keysmith.dev/revoke is empty; no key was revoked"
	}
	return ids, all, ""
}
