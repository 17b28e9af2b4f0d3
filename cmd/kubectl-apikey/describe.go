package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/inventory"
	"github.com/keysmith-dev/keysmith/internal/policy"
	"github.com/keysmith-dev/keysmith/internal/rotation"
)

func init() { commands = append(commands, newDescribeCommand) }

// description is what describe shows, and prints with -o json|yaml.
type description struct {
	Row        inventory.Row        `json:"row"`
	Keys       []v1alpha1.IssuedKey `json:"keys"`
	Timeline   []inventory.Event    `json:"timeline"`
	Conditions []metav1.Condition   `json:"conditions"`
	Secret     inventory.SecretInfo `json:"secret"`
	Policies   policiesInfo         `json:"policies"`
	Events     []eventInfo          `json:"events,omitempty"`
	// EventsError is why events could not be listed.
	EventsError string `json:"eventsError,omitempty"`
	// Pending lists the keysmith.dev/rotate and keysmith.dev/revoke values keysmith has not handled yet.
	Pending []string `json:"pending,omitempty"`
}

type policiesInfo struct {
	// Applied are the ApiKeyPolicies that select the namespace.
	Applied []string `json:"applied"`
	// Source is "cluster" when they were read and evaluated here, "status" when taken from
	// status.effective.policies because the user may not read policies or namespaces (Error says why).
	Source     string   `json:"source"`
	Error      string   `json:"error,omitempty"`
	Violations []string `json:"violations,omitempty"`
	// Settings are the merged values that apply (status.effective).
	Settings *v1alpha1.EffectiveSettings `json:"settings,omitempty"`
}

type eventInfo struct {
	Type    string    `json:"type"`
	Reason  string    `json:"reason"`
	Last    time.Time `json:"last"`
	Count   int32     `json:"count"`
	Message string    `json:"message"`
}

func newDescribeCommand(e *env) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "describe NAME",
		Short: "Show one ApiKey: its keys as a timeline, conditions, Secret, policies and events",
		Long: `Show one ApiKey: its warnings, its keys (ids, states, lifetimes, last use) and their timeline (issued,
rotated, retiring until, revoked and why, expired, last used, what is scheduled), its conditions, its
Secret (whether it exists, its data keys and the length of each value: never a value), the
ApiKeyPolicies that apply, and its recent events. Parts you may not read (Secrets, policies, events)
are shown as such.`,
		Example: `  kubectl apikey describe billing-api -n payments
  kubectl apikey describe billing-api -o json | jq .timeline`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeApiKeyNames(e),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			ns, err := e.validTarget(args[0])
			if err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			d, err := describe(cmd.Context(), c, types.NamespacedName{Namespace: ns, Name: args[0]})
			if err != nil {
				return err
			}
			if output != "" {
				return printStructured(e.streams.Out, output, d)
			}
			return printDescription(e.streams.Out, d)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "Output format: json or yaml (default: text)")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"json", "yaml"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func describe(ctx context.Context, c client.Client, key types.NamespacedName) (*description, error) {
	ak := &v1alpha1.ApiKey{}
	if err := c.Get(ctx, key, ak); err != nil {
		return nil, err
	}
	t := now()
	d := &description{Keys: ak.Status.Keys, Conditions: ak.Status.Conditions}
	if d.Keys == nil {
		d.Keys = []v1alpha1.IssuedKey{}
	}

	// Policies: read and evaluated when the user may list them and read the namespace, else status's.
	d.Policies.Settings = ak.Status.Effective
	var selected []v1alpha1.ApiKeyPolicy
	if sel, err := selectPolicies(ctx, c, ak.Namespace); err != nil {
		d.Policies.Source, d.Policies.Error = "status", shortError(err)
		if ak.Status.Effective != nil {
			d.Policies.Applied = ak.Status.Effective.Policies
		}
	} else {
		selected = sel
		res := policy.Evaluate(sel, &ak.Spec)
		d.Policies.Source, d.Policies.Applied, d.Policies.Violations = "cluster", res.Applied, res.Violations
	}
	if d.Policies.Applied == nil {
		d.Policies.Applied = []string{}
	}
	d.Row = inventory.Compute(ak, t, selected)
	d.Timeline = inventory.Timeline(ak, t)

	// The Secret: data keys and lengths only.
	s := &corev1.Secret{}
	switch err := c.Get(ctx, types.NamespacedName{Namespace: ak.Namespace, Name: ak.Spec.SecretName}, s); {
	case err == nil:
		d.Secret = inventory.SummarizeSecret(ak.Spec.SecretName, s)
	case apierrors.IsNotFound(err):
		d.Secret = inventory.SummarizeSecret(ak.Spec.SecretName, nil)
	default:
		d.Secret = inventory.SecretInfo{Name: ak.Spec.SecretName, Error: shortError(err)}
	}

	// Events about the ApiKey, newest last.
	evs := &corev1.EventList{}
	if err := c.List(ctx, evs, client.InNamespace(ak.Namespace), client.MatchingFields{
		"involvedObject.kind": "ApiKey", "involvedObject.name": ak.Name, "involvedObject.uid": string(ak.UID),
	}); err != nil {
		d.EventsError = shortError(err)
	} else {
		for _, ev := range evs.Items {
			last := ev.LastTimestamp.Time
			if last.IsZero() {
				last = ev.EventTime.Time
			}
			if last.IsZero() {
				last = ev.CreationTimestamp.Time
			}
			count := ev.Count
			if ev.Series != nil {
				count = ev.Series.Count
			}
			d.Events = append(d.Events, eventInfo{Type: ev.Type, Reason: ev.Reason, Last: last, Count: max(count, 1), Message: ev.Message})
		}
		sort.SliceStable(d.Events, func(i, j int) bool { return d.Events[i].Last.Before(d.Events[j].Last) })
	}

	if v := ak.Annotations[v1alpha1.AnnotationRotate]; v != "" && !rotation.RequestHandled(v, ak.Status.HandledRotateRequest) {
		d.Pending = append(d.Pending, "rotation requested ("+v1alpha1.AnnotationRotate+"), not handled yet")
	}
	if v := ak.Annotations[v1alpha1.AnnotationRevoke]; v != "" && !rotation.RequestHandled(v, ak.Status.HandledRevokeRequest) {
		d.Pending = append(d.Pending, "revocation requested ("+v1alpha1.AnnotationRevoke+"), not recorded yet; verifiers refuse the keys it names already")
	}
	return d, nil
}

// selectPolicies lists the ApiKeyPolicies and returns those that select namespace ns (its labels are
// read too).
func selectPolicies(ctx context.Context, c client.Client, ns string) ([]v1alpha1.ApiKeyPolicy, error) {
	list := &v1alpha1.ApiKeyPolicyList{}
	if err := c.List(ctx, list); err != nil {
		return nil, err
	}
	n := &corev1.Namespace{}
	if err := c.Get(ctx, types.NamespacedName{Name: ns}, n); err != nil {
		return nil, err
	}
	return policy.Select(list.Items, n.Labels)
}

// shortError is an API error's message (which names the user and the verb it was refused), else the error.
func shortError(err error) string {
	var s apierrors.APIStatus
	if errors.As(err, &s) && s.Status().Message != "" {
		return s.Status().Message
	}
	return err.Error()
}

func printDescription(w io.Writer, d *description) error {
	r := d.Row
	t := now()
	tw := newTabWriter(w)
	p := func(label, value string) { fmt.Fprintf(tw, "%s:\t%s\n", label, value) }
	p("Name", r.Name)
	p("Namespace", r.Namespace)
	p("Created", r.Created.UTC().Format(time.RFC3339)+" ("+inventory.Relative(r.Created, t)+")")
	p("Scopes", strings.Join(r.Scopes, ", "))
	p("Environment", string(r.Environment))
	p("Disabled", fmt.Sprint(r.Disabled))
	ready := none(r.Ready)
	if r.Reason != "" {
		ready += " (" + r.Reason + ")"
	}
	if r.Message != "" {
		ready += ": " + r.Message
	}
	p("Ready", ready)
	cur := none(r.CurrentKeyID)
	if r.ExpiresAt != nil {
		cur += ", expires " + instant(r.ExpiresAt, r.Expires)
	}
	p("Current key", cur)
	p("Next rotation", instant(r.NextRotationAt, r.NextRotation))
	lastUsed := r.LastUsed
	if r.LastUsedAt != nil {
		lastUsed += " (" + r.LastUsedAt.UTC().Format(time.RFC3339) + ")"
	}
	p("Last used", lastUsed)
	p("Settings", settingsText(d.Policies.Settings, r))
	for _, pending := range d.Pending {
		p("Pending", pending)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w, "Warnings:")
	if len(r.Warnings) == 0 {
		fmt.Fprintln(w, "  <none>")
	}
	for _, wn := range r.Warnings {
		fmt.Fprintf(w, "  %s: %s\n", wn.Label, wn.Message)
	}

	keyRows := make([][]string, 0, len(d.Keys))
	for _, k := range d.Keys {
		used := "never"
		if k.LastUsedAt != nil {
			used = inventory.Relative(k.LastUsedAt.Time, t)
		}
		keyRows = append(keyRows, []string{k.ID, string(k.State), k.IssuedAt.UTC().Format(time.RFC3339),
			k.NotAfter.UTC().Format(time.RFC3339) + " (" + inventory.Relative(k.NotAfter.Time, t) + ")", used, none(k.Reason), none(strings.Join(k.Scopes, ","))})
	}
	if err := section(w, "Keys", "ID\tSTATE\tISSUED\tNOT AFTER\tLAST USED\tREASON\tSCOPES", keyRows); err != nil {
		return err
	}
	events := make([][]string, 0, len(d.Timeline))
	for _, ev := range d.Timeline {
		events = append(events, []string{ev.At.UTC().Format(time.RFC3339), ev.When, string(ev.Kind), ev.Message})
	}
	if err := section(w, "Timeline", "", events); err != nil {
		return err
	}
	conditions := make([][]string, 0, len(d.Conditions))
	for _, c := range d.Conditions {
		conditions = append(conditions, []string{c.Type, string(c.Status), c.Reason, inventory.Human(t.Sub(c.LastTransitionTime.Time)), c.Message})
	}
	if err := section(w, "Conditions", "TYPE\tSTATUS\tREASON\tSINCE\tMESSAGE", conditions); err != nil {
		return err
	}

	s := d.Secret
	fmt.Fprintf(w, "Secret: %s\n", s.Name)
	switch {
	case s.Error != "":
		fmt.Fprintf(w, "  cannot read it: %s\n", s.Error)
	case !s.Exists:
		fmt.Fprintln(w, "  does not exist")
	default:
		owner := "not managed by keysmith"
		if s.ManagedByKeysmith {
			owner = "managed by keysmith"
		}
		if s.Owner != "" {
			owner += ", controlled by ApiKey " + s.Owner
		}
		fmt.Fprintf(w, "  Type: %s, %s\n", s.Type, owner)
		fmt.Fprintln(w, "  Data (lengths only):")
		for _, e := range s.Data {
			fmt.Fprintf(w, "    %s: %d bytes\n", e.Key, e.Length)
		}
	}

	pol := d.Policies
	fmt.Fprintln(w, "Policies:")
	applied := "<none>"
	if len(pol.Applied) > 0 {
		applied = strings.Join(pol.Applied, ", ")
	}
	if pol.Source == "status" {
		fmt.Fprintf(w, "  %s (from status.effective: cannot read policies: %s)\n", applied, pol.Error)
	} else {
		fmt.Fprintf(w, "  %s\n", applied)
	}
	for _, v := range pol.Violations {
		fmt.Fprintf(w, "  violation: %s\n", v)
	}

	if d.EventsError != "" {
		fmt.Fprintf(w, "Events:\n  cannot list them: %s\n", d.EventsError)
		return nil
	}
	evRows := make([][]string, 0, len(d.Events))
	for _, ev := range d.Events {
		evRows = append(evRows, []string{ev.Type, ev.Reason, inventory.Human(t.Sub(ev.Last)), fmt.Sprint(ev.Count), ev.Message})
	}
	return section(w, "Events", "TYPE\tREASON\tAGE\tCOUNT\tMESSAGE", evRows)
}

// section prints "title:" and its rows as a table indented by two spaces under header (tab-separated
// column names; none when ""), or "  <none>" when there is no row.
func section(w io.Writer, title, header string, rows [][]string) error {
	fmt.Fprintf(w, "%s:\n", title)
	if len(rows) == 0 {
		fmt.Fprintln(w, "  <none>")
		return nil
	}
	tw := newTabWriter(w)
	if header != "" {
		fmt.Fprintln(tw, "  "+header)
	}
	for _, r := range rows {
		fmt.Fprintln(tw, "  "+strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func settingsText(e *v1alpha1.EffectiveSettings, r inventory.Row) string {
	if e == nil {
		return fmt.Sprintf("not recorded yet; expiry warning %s, unused window %s", r.ExpiryWarning, r.UnusedWindow)
	}
	parts := []string{"lifetime " + e.ExpiresAfter.Duration.String()}
	if e.RotationPeriod != nil {
		parts = append(parts, fmt.Sprintf("rotation every %s with %s overlap", e.RotationPeriod.Duration, v1alpha1.Get(e.Overlap)))
	} else {
		parts = append(parts, "no scheduled rotation")
	}
	if e.RevokeUnusedAfter != nil {
		parts = append(parts, "revoke unused after "+e.RevokeUnusedAfter.Duration.String())
	} else {
		parts = append(parts, "unused after "+r.UnusedWindow+" (warning only)")
	}
	parts = append(parts, "expiry warning "+r.ExpiryWarning)
	return strings.Join(parts, ", ")
}
