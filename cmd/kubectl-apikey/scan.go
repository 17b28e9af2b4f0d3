package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/keysmith-dev/keysmith/internal/scan"
)

func init() { commands = append(commands, newScanCommand) }

// Formats of scan's report.
const (
	scanFormatText  = "text"
	scanFormatJSON  = "json"
	scanFormatSARIF = "sarif"
)

type scanOptions struct {
	git     bool
	offline bool
	format  string
	revoke  bool
	timeout time.Duration
	workers int
}

func newScanCommand(e *env) *cobra.Command {
	o := scanOptions{}
	cmd := &cobra.Command{
		Use:   "scan [flags] [--] PATH...",
		Short: "Find leaked keys in files, logs and git history, tell which are live, revoke them",
		Long: `Scan files and directories ("-" reads standard input, so logs can be piped) for keysmith keys:
every match of the documented pattern \b[a-z0-9]{2,8}_(live|test)_[0-9A-Za-z]{36}\b whose checksum holds
(a match with a wrong checksum is reported as not a key). Inside a git work tree, the files git ignores
are skipped (git ls-files); binary files (a NUL byte in the first 8000 bytes) are skipped everywhere; a
file or a directory named on the command line is scanned even when git ignores it. --git also scans every
blob of the repository's history and names the commit that added it. After "--", every argument is a
path, even one starting with "-", and "-" is a file named "-", not standard input.

Each key's SHA-256 is looked up in the ApiKeys you may list (every namespace if you may, else your
namespace; -n names one), in one paged listing for the whole scan: no key leaves this machine. Each
finding shows where it is, the key's id, its ApiKey and state (Active, Retiring, Revoked, Expired, or
unknown when no ApiKey you can list has it), and the key redacted (prefix and 4 characters), never whole.

--revoke revokes every live key found (the keysmith.dev/revoke annotation of its ApiKey, by id: the
leaked-key runbook of docs/lifecycle.md). A key is revoked once the API server, read back, holds the
annotation naming it: every verifier refuses it from its next request on, with or without keysmith's
operator. The scan then waits (--timeout) for keysmith to record it in status, and warns if it does not.

Exit status: 0 when no live key was found, 1 when one was (Active or Retiring; with --offline, any key
whose checksum holds, since nothing says it is not live; also a key past the limit on findings kept,
which is not looked up), 2 on an error (a revocation the API server does not hold; a file that could not
be read, when no live key was found).`,
		Example: `  kubectl apikey scan .
  kubectl logs deploy/api | kubectl apikey scan -
  kubectl apikey scan --git --format sarif . > keysmith.sarif
  kubectl apikey scan --offline -- $(git diff --cached --name-only --diff-filter=ACMR)
  kubectl apikey scan --revoke ./leaked-dump`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runScan(cmd.Context(), e, o, scanPaths(args, cmd.ArgsLenAtDash()))
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.git, "git", false, "also scan every blob of the history of the git repository each path is in")
	f.BoolVar(&o.offline, "offline", false, "check format and checksum only, with no cluster (every key counts as possibly live)")
	f.StringVar(&o.format, "format", scanFormatText, "report format: text, json or sarif (SARIF 2.1.0, for GitHub code scanning)")
	f.BoolVar(&o.revoke, "revoke", false, "revoke every live key found (refused by every verifier once the API server holds it), then wait for keysmith's record")
	f.DurationVar(&o.timeout, "timeout", time.Minute, "how long the cluster lookup may take and, with --revoke, the wait for keysmith's record")
	f.IntVar(&o.workers, "workers", 0, "files scanned at once (default: GOMAXPROCS)")
	_ = f.MarkHidden("workers")
	_ = cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{scanFormatText, scanFormatJSON, scanFormatSARIF}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// scanPaths returns the paths to scan: args, where an argument after "--" (at index dash and later) that
// is "-" names a file called "-" ("./-"), not standard input.
func scanPaths(args []string, dash int) []string {
	paths := slices.Clone(args)
	if dash < 0 {
		return paths
	}
	for i := dash; i < len(paths); i++ {
		if paths[i] == "-" {
			paths[i] = "." + string(filepath.Separator) + "-"
		}
	}
	return paths
}

func runScan(ctx context.Context, e *env, o scanOptions, paths []string) error {
	switch o.format {
	case scanFormatText, scanFormatJSON, scanFormatSARIF:
	default:
		return &exitError{code: 2, msg: fmt.Sprintf("--format must be text, json or sarif, not %q", o.format)}
	}
	if o.timeout <= 0 {
		return &exitError{code: 2, msg: "--timeout must be positive"}
	}
	if o.offline && o.revoke {
		return &exitError{code: 2, msg: "--revoke needs the cluster: it cannot be used with --offline"}
	}
	if ctx == nil {
		ctx = context.Background()
	}
	res, err := scan.Scan(ctx, paths, scan.Options{Git: o.git, Workers: o.workers, Stdin: e.streams.In})
	if err != nil {
		return &exitError{code: 2, msg: err.Error()}
	}
	report := newScanReport(res)
	errOut := e.streams.ErrOut
	for _, p := range res.Problems {
		fmt.Fprintln(errOut, "warning: not scanned:", p)
	}
	for _, w := range res.Warnings {
		fmt.Fprintln(errOut, "warning:", w)
	}
	if res.Truncated > 0 {
		fmt.Fprintln(errOut, "warning:", report.truncatedNote())
	}

	var cerr error
	if o.offline {
		report.lookup = scanLookup{Mode: "offline"}
		report.classifyOffline()
	} else if report.keys() > 0 {
		if cerr = scanInCluster(ctx, e, o, report); cerr != nil && report.lookup.Mode == "" {
			report.lookup.Mode = "failed"
			report.classifyOffline()
		}
	}
	if report.lookup.Note != "" {
		fmt.Fprintln(errOut, "note:", report.lookup.Note)
	}
	if err := report.write(e.streams.Out, o.format); err != nil {
		return err
	}
	switch {
	case cerr != nil:
		return &exitError{code: 2, msg: cerr.Error()}
	case report.live() > 0 || res.TruncatedKeys > 0:
		return &exitError{code: 1}
	case len(res.Problems) > 0:
		return &exitError{code: 2, msg: fmt.Sprintf("%d file%s could not be read", len(res.Problems), scanPlural(len(res.Problems)))}
	}
	return nil
}

// scanInCluster looks every key up in one listing (within --timeout) and, with --revoke, revokes the
// live ones (each wait for keysmith's record has --timeout of its own).
func scanInCluster(ctx context.Context, e *env, o scanOptions, report *scanReport) error {
	c, err := e.client()
	if err != nil {
		return fmt.Errorf("%v (use --offline to check format and checksum only)", err)
	}
	explicit := ""
	if e.flags.Namespace != nil {
		explicit = *e.flags.Namespace
	}
	lctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	idx, lookup, err := listKeyIndex(lctx, c, explicit, e.namespace, report.wanted())
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("listing ApiKeys took longer than --timeout %s", o.timeout)
		}
		return fmt.Errorf("%v (use --offline to check format and checksum only)", err)
	}
	report.lookup = lookup
	report.classify(idx, time.Now())
	if !o.revoke || report.live() == 0 {
		return nil
	}
	return report.revokeLive(ctx, c, o.timeout, e.streams.ErrOut)
}

func scanPlural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
