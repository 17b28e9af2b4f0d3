package dashboard

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"k8s.io/apimachinery/pkg/types"

	"github.com/keysmith-dev/keysmith/internal/actions"
)

// actionBody is an action's request body. Revoke names the key the person confirmed (the current key
// the page showed), so that a rotation between the dialog and the click never revokes another key.
type actionBody struct {
	KeyID string `json:"keyID,omitempty"`
}

// ActionResponse answers an action: what happened, or that keysmith has not confirmed it yet (Pending).
// It carries no annotation value and nothing else a person typed beyond the messages of internal/actions
// (which name key ids only), and those pass through the key filter of marshal like every response.
//
// For a revoke or a disable, Enforced says that the API server, read back, holds the revocation (every
// verifier refuses the keys from their next request on, with or without keysmith), and Recorded that
// keysmith recorded it; Warning is set when only the first happened within the wait (is the operator
// running?).
type ActionResponse struct {
	Message      string `json:"message"`
	Pending      bool   `json:"pending,omitempty"`
	Unchanged    bool   `json:"unchanged,omitempty"`
	CurrentKeyID string `json:"currentKeyID,omitempty"`
	Enforced     bool   `json:"enforced,omitempty"`
	Recorded     bool   `json:"recorded,omitempty"`
	Warning      string `json:"warning,omitempty"`
}

// action performs rotate, revoke (one key id), disable or enable as the user, then waits for keysmith's
// confirmation for at most WaitTimeout.
func (s *Server) action(w http.ResponseWriter, r *http.Request) {
	ns, name, ok := target(w, r)
	if !ok {
		return
	}
	kind := actions.Kind(r.PathValue("action"))
	switch kind {
	case actions.KindRotate, actions.KindRevoke, actions.KindDisable, actions.KindEnable:
	default:
		writeError(w, http.StatusNotFound, "unknown action: rotate, revoke, disable or enable", "")
		return
	}
	var body actionBody
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "request body too large", "")
			return
		}
		writeError(w, http.StatusBadRequest, "the body is a JSON object: {} or, to revoke, {\"keyID\":\"<12 hex digits>\"}", "")
		return
	}
	if _, err := dec.Token(); err != io.EOF {
		writeError(w, http.StatusBadRequest, "the body is a single JSON object", "")
		return
	}
	if (kind == actions.KindRevoke) != (body.KeyID != "") {
		writeError(w, http.StatusBadRequest, "keyID is required to revoke, and only then", "")
		return
	}
	if kind == actions.KindRevoke {
		// An id only: a key pasted here is refused rather than reduced to its id, as the page never sends one.
		if id, isKey, err := actions.ParseKeyID(body.KeyID); err != nil || isKey || id != body.KeyID {
			writeError(w, http.StatusBadRequest, "a key id is 12 lowercase hex digits", "")
			return
		}
	}

	ctx := r.Context()
	key := types.NamespacedName{Namespace: ns, Name: name}
	var req *actions.Request
	var err error
	switch kind {
	case actions.KindRotate:
		req, err = actions.Rotate(ctx, s.opts.Client, key)
	case actions.KindRevoke:
		req, err = actions.Revoke(ctx, s.opts.Client, key, []string{body.KeyID}, false)
	case actions.KindDisable:
		req, err = actions.Disable(ctx, s.opts.Client, key)
	case actions.KindEnable:
		req, err = actions.Enable(ctx, s.opts.Client, key)
	}
	if err != nil {
		apiError(w, err)
		return
	}
	if req.Unchanged && req.Kind != actions.KindRevoke && req.Kind != actions.KindDisable {
		writeJSON(w, http.StatusOK, ActionResponse{Message: req.Message, Unchanged: true})
		return
	}
	// A revoke or a disable (unchanged ones too: a pending revocation may not be recorded yet) waits for
	// both steps: the API server holding it, then keysmith's record.
	res, err := actions.Wait(ctx, s.opts.Client, req, s.opts.WaitTimeout)
	var timeout *actions.TimeoutError
	switch {
	case errors.As(err, &timeout):
		writeJSON(w, http.StatusAccepted, ActionResponse{Message: req.Message + "; " + err.Error(), Pending: true, Unchanged: req.Unchanged})
	case err != nil:
		apiError(w, err)
	case res.Warning != "":
		writeJSON(w, http.StatusOK, ActionResponse{Message: req.Message + "; " + res.Message, Warning: res.Warning, Enforced: true,
			Unchanged: req.Unchanged, CurrentKeyID: res.CurrentKeyID})
	default:
		// What was written (or found pending), then what confirmed it.
		writeJSON(w, http.StatusOK, ActionResponse{Message: req.Message + "; " + res.Message, CurrentKeyID: res.CurrentKeyID,
			Unchanged: req.Unchanged, Enforced: res.Enforced, Recorded: res.Recorded})
	}
}
