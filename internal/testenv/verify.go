package testenv

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/keysmith-dev/keysmith/internal/verify"
)

// Verdict is a verifier's answer about one key, as the harnesses see it.
type Verdict int

const (
	Accepted Verdict = iota
	Refused
	// Unavailable is a 503, a failed request or an unreadable answer: not a decision.
	Unavailable
)

// VerifyKey asks the verification API at base (http://host:port) about key with POST /v1/verify.
func VerifyKey(cl *http.Client, base, key string) Verdict {
	b, _ := json.Marshal(verify.VerifyRequest{Key: key})
	resp, err := cl.Post(base+"/v1/verify", "application/json", bytes.NewReader(b))
	if err != nil {
		return Unavailable
	}
	defer resp.Body.Close()
	var out verify.VerifyResponse
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil {
		return Unavailable
	}
	if out.Valid {
		return Accepted
	}
	return Refused
}
