package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/keysmith-dev/keysmith/api/v1alpha1"
	"github.com/keysmith-dev/keysmith/internal/actions"
	"github.com/keysmith-dev/keysmith/internal/inventory"
	"github.com/keysmith-dev/keysmith/internal/keys"
)

func init() { commands = append(commands, newListCommand) }

// now is the plugin's clock (tests of the plugin run the binary, so it is the real one).
var now = time.Now

// inventoryList is what list -o json|yaml prints.
type inventoryList struct {
	Items []inventory.Row `json:"items"`
}

func newListCommand(e *env) *cobra.Command {
	var (
		allNamespaces bool
		output        string
		selector      string
		noHeaders     bool
	)
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List ApiKeys with their current key, expiry, last use and warnings",
		Long: `List the ApiKeys of a namespace (-A: of every namespace) with their Ready status, scopes, current key id,
next rotation, expiry, last use and warnings: expiring (within the ApiKey's expiry warning, 14 days by
default), expired, unused (for revokeUnusedAfter, else 30 days), stalled with its reason, policy violation.
Keys are never shown: only their public ids.`,
		Example: `  kubectl apikey list
  kubectl apikey list -A -o wide
  kubectl apikey list -n payments -o json | jq '.items[] | select(.warnings) | .name'`,
		Args:              cobra.NoArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output, "wide"); err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			var opts []client.ListOption
			ns := ""
			if !allNamespaces {
				if ns, err = e.namespace(); err != nil {
					return err
				}
				if err := actions.ValidateNamespace(ns); err != nil {
					return &exitError{code: 1, msg: err.Error()}
				}
				opts = append(opts, client.InNamespace(ns))
			}
			if keys.HasKeyShape(selector) {
				return &exitError{code: 1, msg: "--selector: that looks like an API key: it was not sent anywhere (remove it from your shell history)"}
			}
			if selector != "" {
				sel, err := labels.Parse(selector)
				if err != nil {
					return &exitError{code: 1, msg: "--selector: " + err.Error()}
				}
				opts = append(opts, client.MatchingLabelsSelector{Selector: sel})
			}
			list := &v1alpha1.ApiKeyList{}
			if err := c.List(cmd.Context(), list, opts...); err != nil {
				return err
			}
			t := now()
			rows := make([]inventory.Row, 0, len(list.Items))
			for i := range list.Items {
				rows = append(rows, inventory.Compute(&list.Items[i], t, nil))
			}
			switch output {
			case "json", "yaml":
				return printStructured(e.streams.Out, output, inventoryList{Items: rows})
			}
			if len(rows) == 0 {
				if allNamespaces {
					fmt.Fprintln(e.streams.ErrOut, "No ApiKeys found")
				} else {
					fmt.Fprintf(e.streams.ErrOut, "No ApiKeys found in %s namespace.\n", ns)
				}
				return nil
			}
			return printTable(e.streams.Out, rows, allNamespaces, output == "wide", noHeaders)
		},
	}
	cmd.Flags().BoolVarP(&allNamespaces, "all-namespaces", "A", false, "List the ApiKeys of every namespace (needs list rights at the cluster scope)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "Output format: wide, json or yaml")
	cmd.Flags().StringVarP(&selector, "selector", "l", "", "Label selector, as kubectl's (-l team=payments)")
	cmd.Flags().BoolVar(&noHeaders, "no-headers", false, "Print no header line")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"wide", "json", "yaml"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// checkOutput accepts "", json, yaml and the extra formats given.
func checkOutput(output string, extra ...string) error {
	switch output {
	case "", "json", "yaml":
		return nil
	}
	for _, x := range extra {
		if output == x {
			return nil
		}
	}
	return &exitError{code: 1, msg: fmt.Sprintf("unable to match a printer suitable for the output format %q, allowed formats are: %s",
		output, strings.Join(append(extra, "json", "yaml"), ","))}
}

func printStructured(w io.Writer, format string, v any) error {
	b, err := json.MarshalIndent(v, "", "    ")
	if err != nil {
		return err
	}
	if format == "yaml" {
		if b, err = yaml.JSONToYAML(b); err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func none(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

// instant is "2027-02-25T07:42:30Z (in 89d)".
func instant(t *time.Time, rel string) string {
	if t == nil {
		return "<none>"
	}
	return t.UTC().Format(time.RFC3339) + " (" + rel + ")"
}

// scopesColumn shows at most three scopes in the table, all of them in wide.
func scopesColumn(scopes []string, wide bool) string {
	if wide || len(scopes) <= 3 {
		return none(strings.Join(scopes, ","))
	}
	return fmt.Sprintf("%s,+%d", strings.Join(scopes[:3], ","), len(scopes)-3)
}

func printTable(w io.Writer, rows []inventory.Row, withNamespace, wide, noHeaders bool) error {
	tw := newTabWriter(w)
	header := []string{"NAME", "READY", "SCOPES", "KEY", "NEXT ROTATION", "EXPIRES", "LAST USED", "WARNINGS"}
	if wide {
		header = append(header, "REASON", "SECRET", "VALID KEYS", "POLICIES")
	}
	if withNamespace {
		header = append([]string{"NAMESPACE"}, header...)
	}
	if !noHeaders {
		fmt.Fprintln(tw, strings.Join(header, "\t"))
	}
	for _, r := range rows {
		rotation := none(r.NextRotation)
		if wide {
			rotation = instant(r.NextRotationAt, r.NextRotation)
		}
		cols := []string{r.Name, none(r.Ready), scopesColumn(r.Scopes, wide), none(r.CurrentKeyID), rotation,
			instant(r.ExpiresAt, r.Expires), r.LastUsed, r.WarningsText()}
		if wide {
			cols = append(cols, none(r.Reason), r.SecretName, fmt.Sprint(r.ValidKeys), none(strings.Join(r.Policies, ",")))
		}
		if withNamespace {
			cols = append([]string{r.Namespace}, cols...)
		}
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	return tw.Flush()
}

// trimmed is a tab writer whose output has no trailing spaces (the padding of an empty last column): it
// buffers the table and writes it to w, line by line, on Flush.
type trimmed struct {
	tab interface {
		io.Writer
		Flush() error
	}
	buf *bytes.Buffer
	w   io.Writer
}

func newTabWriter(w io.Writer) *trimmed {
	buf := &bytes.Buffer{}
	return &trimmed{tab: printers.GetNewTabWriter(buf), buf: buf, w: w}
}

func (t *trimmed) Write(p []byte) (int, error) { return t.tab.Write(p) }

func (t *trimmed) Flush() error {
	if err := t.tab.Flush(); err != nil {
		return err
	}
	var b strings.Builder
	for _, l := range strings.SplitAfter(t.buf.String(), "\n") {
		if strings.HasSuffix(l, "\n") {
			l = strings.TrimRight(l[:len(l)-1], " ") + "\n"
		}
		b.WriteString(l)
	}
	t.buf.Reset()
	_, err := io.WriteString(t.w, b.String())
	return err
}
