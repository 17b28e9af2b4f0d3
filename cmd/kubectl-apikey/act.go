package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keysmith-dev/keysmith/internal/actions"
	"github.com/keysmith-dev/keysmith/internal/keys"
	"github.com/keysmith-dev/keysmith/internal/rotation"
)

func init() {
	commands = append(commands, newRotateCommand, newRevokeCommand, newDisableCommand, newEnableCommand)
}

// waitFlags are the flags every action has.
type waitFlags struct {
	wait    bool
	timeout time.Duration
}

func (w *waitFlags) add(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&w.wait, "wait", true, "Wait until keysmith confirms in the ApiKey's status; --wait=false returns once the change is accepted")
	cmd.Flags().DurationVar(&w.timeout, "timeout", 60*time.Second, "How long to wait for keysmith's confirmation")
}

// doFunc sends one action's patch with the client c (built once, with the user's credentials).
type doFunc func(ctx context.Context, c client.Client, key types.NamespacedName) (*actions.Request, error)

// action runs one action on the ApiKey name in the namespace of -n: the name is checked before anything
// is sent, do patches, the request is printed, then (unless --wait=false) the confirmation. A revoke or a
// disable is confirmed in two steps: once the API server, read back, holds the revocation (every
// verifier refuses the keys from then on, operator or not), then once keysmith records it; when only the
// first happened within --timeout, it says so in a warning and succeeds.
func (e *env) action(cmd *cobra.Command, name string, w waitFlags, do doFunc) error {
	ns, err := e.validTarget(name)
	if err != nil {
		return err
	}
	if w.timeout <= 0 {
		return &exitError{code: 1, msg: "--timeout must be positive"}
	}
	c, err := e.client()
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	req, err := do(ctx, c, types.NamespacedName{Namespace: ns, Name: name})
	if err != nil {
		if actions.IsRefused(err) {
			return &exitError{code: 1, msg: err.Error()}
		}
		return err
	}
	out := e.streams.Out
	ref := "apikey.keysmith.dev/" + name
	if req.Unchanged {
		fmt.Fprintf(out, "%s unchanged: %s\n", ref, req.Message)
	} else {
		fmt.Fprintf(out, "%s %s\n", ref, req.Message)
	}
	if req.Unchanged && req.Kind == actions.KindEnable {
		return nil // nothing was asked of keysmith: the message says whether the ApiKey is Ready
	}
	if !w.wait {
		fmt.Fprintf(out, "%s not waiting for keysmith's confirmation (--wait=false)\n", ref)
		return nil
	}
	enforced := func(r actions.Result) {
		when := "after " + r.Waited.Round(time.Millisecond).String()
		if r.Waited < time.Millisecond {
			when = "at once"
		}
		fmt.Fprintf(out, "%s %s (read back from the API server %s)\n", ref, r.Message, when)
	}
	var res actions.Result
	switch req.Kind {
	case actions.KindRevoke:
		res, err = actions.WaitRevocation(ctx, c, req, w.timeout, enforced)
	case actions.KindDisable:
		res, err = actions.WaitDisable(ctx, c, req, w.timeout, enforced)
	default:
		res, err = actions.Wait(ctx, c, req, w.timeout)
	}
	if err != nil {
		var te *actions.TimeoutError
		if errors.As(err, &te) {
			return &exitError{code: 1, msg: te.Error()}
		}
		return err
	}
	if res.Warning != "" {
		fmt.Fprintf(e.streams.ErrOut, "Warning: %s\n", res.Warning)
		return nil
	}
	fmt.Fprintf(out, "%s %s (confirmed by keysmith in %s)\n", ref, res.Message, res.Waited.Round(10*time.Millisecond))
	return nil
}

// validTarget returns the namespace of -n once it and name are valid: nothing is sent before, and an
// invalid name (a key pasted as NAME) is never repeated.
func (e *env) validTarget(name string) (string, error) {
	ns, err := e.namespace()
	if err != nil {
		return "", err
	}
	if err := e.validName(ns, name); err != nil {
		return "", err
	}
	return ns, nil
}

// validName checks a namespace and an ApiKey name before anything is sent (actions.ValidateName, which
// refuses a key, and never repeats what it refuses).
func (e *env) validName(ns, name string) error {
	if err := actions.ValidateName(ns, name); err != nil {
		return &exitError{code: 1, msg: err.Error()}
	}
	return nil
}

func newRotateCommand(e *env) *cobra.Command {
	return newSimpleCommand(e, "rotate NAME", "Issue a new key now; the previous key stays valid for the overlap",
		`Issue a new key now, as kubectl annotate apikey NAME keysmith.dev/rotate=<time> --overwrite does: keysmith
writes a new key to the Secret and keeps the previous one valid for the overlap. Also the way to get a
fresh key after an expiry without rotation or a revocation for not being used. Waits until keysmith has
handled the request and a new key is current.`,
		"  kubectl apikey rotate billing-api -n payments", actions.Rotate)
}

// newSimpleCommand is a command NAME that performs one action of internal/actions on the ApiKey and waits
// as waitFlags say: rotate, disable and enable.
func newSimpleCommand(e *env, use, short, long, example string, do func(context.Context, client.Client, types.NamespacedName) (*actions.Request, error)) *cobra.Command {
	var w waitFlags
	cmd := &cobra.Command{
		Use:               use,
		Short:             short,
		Long:              long,
		Example:           example,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeApiKeyNames(e),
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.action(cmd, args[0], w, do)
		},
	}
	w.add(cmd)
	return cmd
}

func newRevokeCommand(e *env) *cobra.Command {
	var (
		w   waitFlags
		ids []string
		all bool
	)
	cmd := &cobra.Command{
		Use:   "revoke NAME (--key ID... | --key - | --all)",
		Short: "Revoke keys at once: every verifier refuses them on its next request",
		Long: `Revoke keys at once, as kubectl annotate apikey NAME keysmith.dev/revoke=<ids> does (the emergency runbook
of docs/lifecycle.md): every verifier refuses them from its next request on, with or without keysmith
running, because it reads the annotation itself. keysmith then records them (state Revoked, reason
Manual) and, if the current key was among them, writes a fresh key to the Secret with no overlap.
A revocation keysmith has not recorded yet is kept and the new ids added to it.

It waits for two confirmations: the ApiKey read back from the API server holds the revocation (from then
on every verifier refuses the keys), then keysmith's record in status. If keysmith has not recorded it
within --timeout while the API server holds it, it warns (is the operator running?) and exits 0.

--key takes key ids (12 hex digits; kubectl apikey describe lists them). A leaked key given instead is
reduced to its id on this machine and never sent. --key - reads ids or keys from standard input, one per
line (blank lines and lines starting with # are skipped), so that a leaked key is neither in your shell
history nor, for the whole wait, in the process's command line (/proc/PID/cmdline, which every local
user can read).`,
		Example: `  kubectl apikey revoke billing-api --key d5e0c8e0a160
  kubectl apikey revoke billing-api --key d5e0c8e0a160,7f3c21aa09b4
  kubectl apikey revoke billing-api --all
  kubectl apikey revoke billing-api --key - < leaked-keys.txt
  printf '%s\n' "$LEAKED_KEY" | kubectl apikey revoke billing-api --key -`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeApiKeyNames(e),
		RunE: func(cmd *cobra.Command, args []string) error {
			if all == (len(ids) > 0) {
				return &exitError{code: 1, msg: "revoke needs --key ID (one or more), --key - or --all"}
			}
			var parsed []string
			stdin := false
			for i, s := range ids {
				if s == "-" {
					if stdin {
						return &exitError{code: 1, msg: "--key - is given twice"}
					}
					stdin = true
					read, err := readKeyIDs(e.streams.In)
					if err != nil {
						return &exitError{code: 1, msg: err.Error()}
					}
					parsed = append(parsed, read...)
					continue
				}
				id, isKey, err := actions.ParseKeyID(s)
				if err != nil {
					return &exitError{code: 1, msg: fmt.Sprintf("--key entry %d: %s", i+1, err)}
				}
				if isKey {
					fmt.Fprintf(e.streams.ErrOut, "Warning: --key entry %d is a key, not a key id: revoking it by its id %s (the key is not sent anywhere; remove it from your shell history, and use --key - to read keys from standard input)\n", i+1, id)
				}
				parsed = append(parsed, id)
			}
			return e.action(cmd, args[0], w, func(ctx context.Context, c client.Client, key types.NamespacedName) (*actions.Request, error) {
				return actions.Revoke(ctx, c, key, parsed, all)
			})
		},
	}
	cmd.Flags().StringSliceVar(&ids, "key", nil, "Key ids to revoke (repeat the flag or separate them by commas); - reads ids or keys from standard input, one per line")
	cmd.Flags().BoolVar(&all, "all", false, "Revoke every key of the ApiKey")
	cmd.MarkFlagsMutuallyExclusive("key", "all")
	_ = cmd.RegisterFlagCompletionFunc("key", completeKeyIDs(e))
	w.add(cmd)
	return cmd
}

// readKeyIDs reads key ids or keys from r, one per line (blank lines and # comments skipped), and
// returns their ids: a key is reduced to its id here and goes no further. Errors name line numbers, never
// what a line holds.
func readKeyIDs(r io.Reader) ([]string, error) {
	sc := bufio.NewScanner(io.LimitReader(r, 1<<20))
	sc.Buffer(make([]byte, 0, 1024), 4096)
	var ids []string
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, _, err := actions.ParseKeyID(line)
		if err != nil {
			return nil, fmt.Errorf("--key -: standard input line %d: %s", n, err)
		}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
		if len(ids) > rotation.MaxRevokeEntries {
			return nil, fmt.Errorf("--key -: more than %d key ids on standard input", rotation.MaxRevokeEntries)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--key -: reading standard input: %s", strings.TrimPrefix(err.Error(), "bufio.Scanner: "))
	}
	if len(ids) == 0 {
		return nil, errors.New("--key -: no key id or key on standard input")
	}
	return ids, nil
}

func newDisableCommand(e *env) *cobra.Command {
	return newSimpleCommand(e, "disable NAME", "The kill switch: revoke every key and empty the Secret (spec.disabled: true)",
		`Set spec.disabled: true, as kubectl patch apikey NAME --type merge -p '{"spec":{"disabled":true}}' does:
every verifier refuses the ApiKey's keys as soon as it sees the change, keysmith revokes them all (reason
Disabled) and empties the Secret's key (the Secret stays, so that workloads mounting it still start).
Waits until keysmith has recorded it. kubectl apikey enable issues a fresh key.`,
		"  kubectl apikey disable billing-api -n payments", actions.Disable)
}

func newEnableCommand(e *env) *cobra.Command {
	return newSimpleCommand(e, "enable NAME", "Set spec.disabled back to false; keysmith issues a fresh key",
		`Set spec.disabled: false: keysmith issues a fresh key into the Secret (revoked keys never come back).
Waits until the ApiKey is Ready with the new key.`,
		"  kubectl apikey enable billing-api -n payments", actions.Enable)
}

// fromServer formats an error of the API server as kubectl does ("Error from server (Forbidden): ..."),
// for main to print; ok is false for other errors.
func fromServer(err error) (msg string, ok bool) {
	var s apierrors.APIStatus
	if !errors.As(err, &s) {
		return "", false
	}
	st := s.Status()
	if st.Message == "" {
		st.Message = err.Error()
	}
	if st.Reason == "" {
		return "Error from server: " + st.Message, true
	}
	return fmt.Sprintf("Error from server (%s): %s", st.Reason, st.Message), true
}

// redactKeys replaces every key-shaped substring of s (checksum or not) by "<redacted>" (keys.Redact):
// error messages that repeat what was typed (cobra's "unknown command", a flag's "invalid argument")
// never print a key pasted in the wrong place.
func redactKeys(s string) string { return keys.Redact(s) }
