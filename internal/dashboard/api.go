package dashboard

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/actions"
	"github.com/keysmith-dev/keysmith/internal/inventory"
	"github.com/keysmith-dev/keysmith/internal/keys"
)

// ChartDays is the span of the chart of expiries and rotations.
const ChartDays = 90

// Columns are the table's columns, those of `kubectl apikey list`.
var Columns = []string{"NAMESPACE", "NAME", "READY", "SCOPES", "KEY", "NEXT ROTATION", "EXPIRES", "LAST USED", "WARNINGS"}

// Snapshot is what the page shows, sent whole on every change.
type Snapshot struct {
	Version uint64 `json:"version"`
	Now     string `json:"now"`
	// Namespace is the namespace shown, "" for every namespace.
	Namespace string `json:"namespace"`
	// Notice says why the scope is narrower than asked (a Forbidden list across namespaces).
	Notice string `json:"notice,omitempty"`
	// Synced is true once a list succeeded; Live while the watch is open.
	Synced  bool      `json:"synced"`
	Live    bool      `json:"live"`
	Error   *Problem  `json:"error,omitempty"`
	Columns []string  `json:"columns"`
	Rows    []RowView `json:"rows"`
	Chart   ChartView `json:"chart"`
}

// Problem is an error to show: Forbidden means the API server refused the user (their RBAC).
type Problem struct {
	Message   string `json:"message"`
	Forbidden bool   `json:"forbidden,omitempty"`
}

// RowView is one table row: the inventory Row, its cells as list prints them, and its warnings.
type RowView struct {
	Namespace string        `json:"namespace"`
	Name      string        `json:"name"`
	Cells     []string      `json:"cells"`
	CellClass []string      `json:"cellClass"`
	Warnings  []WarningView `json:"warnings,omitempty"`
	Row       inventory.Row `json:"row"`
}

// WarningView is a warning at the top of the page (severity "warning" only; info such as Disabled stays
// in the row).
type WarningView struct {
	Kind string `json:"kind"`
	Text string `json:"text"`
}

// ChartView lists what happens in the next ChartDays days.
type ChartView struct {
	From   string       `json:"from"`
	Days   int          `json:"days"`
	Events []ChartEvent `json:"events"`
}

// ChartEvent is a scheduled rotation, or the expiry of a current key that no rotation replaces before.
type ChartEvent struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Kind      string `json:"kind"` // "rotation" or "expiry"
	At        string `json:"at"`
	KeyID     string `json:"keyID,omitempty"`
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func when(t *time.Time, rel string) string {
	if t == nil {
		return ""
	}
	return rfc3339(*t) + " (" + rel + ")"
}

// rowView turns an ApiKey into its table row.
func rowView(a *v1alpha1.ApiKey, now time.Time) RowView {
	r := inventory.Compute(a, now, nil)
	v := RowView{Namespace: r.Namespace, Name: r.Name, Row: r}
	ready := r.Ready
	if ready == "" {
		ready = "-"
	} else if r.Reason != "" && r.Ready != "True" {
		ready += " (" + r.Reason + ")"
	}
	v.Cells = []string{r.Namespace, r.Name, ready, strings.Join(r.Scopes, ","), r.CurrentKeyID,
		when(r.NextRotationAt, r.NextRotation), when(r.ExpiresAt, r.Expires), r.LastUsed, r.WarningsText()}
	v.CellClass = make([]string, len(v.Cells))
	if r.Ready == "False" {
		v.CellClass[2] = "bad"
	}
	if r.Flagged() {
		v.CellClass[8] = "warn"
	}
	for _, w := range r.Warnings {
		if w.Kind == inventory.WarnExpiring || w.Kind == inventory.WarnExpired {
			v.CellClass[6] = "warn"
		}
		if w.Kind == inventory.WarnUnused {
			v.CellClass[7] = "warn"
		}
		if w.Severity != inventory.SeverityWarning {
			continue
		}
		text := w.Label
		if w.Message != "" {
			text += ": " + w.Message
		}
		v.Warnings = append(v.Warnings, WarningView{Kind: strings.ToLower(string(w.Kind)), Text: text})
	}
	return v
}

// chartEvents are the scheduled rotations and the expiries no scheduled rotation comes before, in
// [now, now+ChartDays days).
func chartEvents(rows []RowView, now time.Time) []ChartEvent {
	end := now.Add(ChartDays * 24 * time.Hour)
	in := func(t *time.Time) bool { return t != nil && !t.Before(now) && t.Before(end) }
	out := []ChartEvent{}
	for _, v := range rows {
		r := v.Row
		if in(r.NextRotationAt) && !r.Disabled && !r.Deleting {
			out = append(out, ChartEvent{Namespace: r.Namespace, Name: r.Name, Kind: "rotation", At: rfc3339(*r.NextRotationAt), KeyID: r.CurrentKeyID})
		}
		if in(r.ExpiresAt) && (r.NextRotationAt == nil || !r.NextRotationAt.Before(*r.ExpiresAt)) {
			out = append(out, ChartEvent{Namespace: r.Namespace, Name: r.Name, Kind: "expiry", At: rfc3339(*r.ExpiresAt), KeyID: r.CurrentKeyID})
		}
	}
	return out
}

func problem(err error) *Problem {
	if err == nil {
		return nil
	}
	return &Problem{Message: err.Error(), Forbidden: apierrors.IsForbidden(err)}
}

// buildSnapshot is the page's content at now.
func buildSnapshot(st state, now time.Time) Snapshot {
	s := Snapshot{
		Version: st.version, Now: rfc3339(now), Namespace: st.namespace, Notice: st.notice,
		Synced: st.synced, Live: st.live, Error: problem(st.err), Columns: Columns, Rows: []RowView{},
	}
	for _, a := range st.items {
		s.Rows = append(s.Rows, rowView(a, now))
	}
	s.Chart = ChartView{From: rfc3339(now), Days: ChartDays, Events: chartEvents(s.Rows, now)}
	return s
}

func (s *Server) snapshot(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, buildSnapshot(s.store.state(), s.now()))
}

// Detail is one ApiKey: facts from its spec and status, its keys, the timeline and its conditions.
type Detail struct {
	Namespace    string            `json:"namespace"`
	Name         string            `json:"name"`
	SecretName   string            `json:"secretName"`
	CurrentKeyID string            `json:"currentKeyID"`
	Disabled     bool              `json:"disabled"`
	Deleting     bool              `json:"deleting"`
	Facts        [][2]string       `json:"facts"`
	Keys         []KeyView         `json:"keys"`
	Timeline     []inventory.Event `json:"timeline"`
	Conditions   []ConditionView   `json:"conditions"`
	Row          inventory.Row     `json:"row"`
}

// KeyView is one key of status.keys (ids and times only: status holds no key).
type KeyView struct {
	ID       string `json:"id"`
	State    string `json:"state"`
	Current  bool   `json:"current"`
	IssuedAt string `json:"issuedAt"`
	NotAfter string `json:"notAfter"`
	Reason   string `json:"reason,omitempty"`
}

// ConditionView is one condition.
type ConditionView struct {
	Type    string `json:"type"`
	Status  string `json:"status"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
	Since   string `json:"since"`
}

func detail(a *v1alpha1.ApiKey, now time.Time) Detail {
	r := inventory.Compute(a, now, nil)
	d := Detail{
		Namespace: a.Namespace, Name: a.Name, SecretName: a.Spec.SecretName, CurrentKeyID: a.Status.CurrentKeyID,
		Disabled: a.Spec.Disabled, Deleting: a.DeletionTimestamp != nil, Row: r,
		Timeline: inventory.Timeline(a, now), Keys: []KeyView{}, Conditions: []ConditionView{},
	}
	if d.Timeline == nil {
		d.Timeline = []inventory.Event{}
	}
	rot := "none"
	if a.Spec.Rotation != nil {
		rot = "every " + a.Spec.Rotation.Period.Duration.String()
		if a.Status.Effective != nil && a.Status.Effective.Overlap != nil {
			rot += ", overlap " + a.Status.Effective.Overlap.Duration.String()
		}
	}
	policies := "none"
	if len(r.Policies) > 0 {
		policies = strings.Join(r.Policies, ", ")
	}
	expires := "2160h (default)"
	if e := a.Status.Effective; e != nil {
		expires = e.ExpiresAfter.Duration.String()
	} else if a.Spec.ExpiresAfter != nil {
		expires = a.Spec.ExpiresAfter.Duration.String()
	}
	ready := r.Ready
	if r.Reason != "" {
		ready += " (" + r.Reason + ")"
	}
	d.Facts = [][2]string{
		{"Ready", ready},
		{"Scopes", strings.Join(r.Scopes, ", ")},
		{"Environment", string(r.Environment)},
		{"Secret", a.Spec.SecretName},
		{"Current key", r.CurrentKeyID},
		{"Rotation", rot},
		{"Next rotation", when(r.NextRotationAt, r.NextRotation)},
		{"Expires after", expires},
		{"Expiry warning", r.ExpiryWarning},
		{"Unused window", r.UnusedWindow},
		{"Last used", r.LastUsed},
		{"Policies", policies},
		{"Disabled", fmt.Sprint(a.Spec.Disabled)},
	}
	for _, k := range a.Status.Keys {
		d.Keys = append(d.Keys, KeyView{ID: k.ID, State: string(k.State), Current: k.ID == a.Status.CurrentKeyID,
			IssuedAt: rfc3339(k.IssuedAt.Time), NotAfter: rfc3339(k.NotAfter.Time), Reason: k.Reason})
	}
	for _, c := range a.Status.Conditions {
		d.Conditions = append(d.Conditions, ConditionView{Type: c.Type, Status: string(c.Status), Reason: c.Reason,
			Message: c.Message, Since: inventory.Relative(c.LastTransitionTime.Time, now)})
	}
	return d
}

// target validates the namespace and name of the request's path.
func target(w http.ResponseWriter, r *http.Request) (ns, name string, ok bool) {
	ns, name = r.PathValue("namespace"), r.PathValue("name")
	if err := actions.ValidateName(ns, name); err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), "")
		return "", "", false
	}
	return ns, name, true
}

func (s *Server) detail(w http.ResponseWriter, r *http.Request) {
	ns, name, ok := target(w, r)
	if !ok {
		return
	}
	a := s.store.get(ns, name)
	if a == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no ApiKey %s/%s among those you can see", ns, name), "NotFound")
		return
	}
	writeJSON(w, http.StatusOK, detail(a, s.now()))
}

// marshal encodes v and, as a last line of defence, replaces anything shaped like a key with
// "<redacted>" (keys.RedactBytes): the dashboard reads no Secret and sends ids only, but condition
// messages, names and annotation values it relays are written by others. The key alphabet needs no JSON
// escaping, so the replacement cannot break the encoding.
func marshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return redactJSON(b), nil
}

// redactJSON is marshal's filter; tests turn it off to check what the dashboard would send without it.
var redactJSON = keys.RedactBytes

// writeJSON writes v.
func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"encoding the response failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// writeError writes {"error": msg, "reason": reason}.
func writeError(w http.ResponseWriter, code int, msg, reason string) {
	writeJSON(w, code, map[string]string{"error": msg, "reason": reason})
}

// apiError maps an error of the API server to its status (a Forbidden stays a Forbidden, with the API
// server's message), and a refused action to 409.
func apiError(w http.ResponseWriter, err error) {
	var st apierrors.APIStatus
	switch {
	case errors.As(err, &st):
		s := st.Status()
		code := int(s.Code)
		if code < 400 || code > 599 {
			code = http.StatusBadGateway
		}
		writeError(w, code, err.Error(), string(s.Reason))
	case actions.IsRefused(err):
		writeError(w, http.StatusConflict, err.Error(), "Refused")
	default:
		writeError(w, http.StatusBadGateway, err.Error(), "")
	}
}
