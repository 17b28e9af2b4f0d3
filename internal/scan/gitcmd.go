package scan

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// gitSafety are the options every git command of a scan runs with. A scanned tree may be an unpacked
// artifact, a downloaded dump or anyone's checkout: its .git/config is not the user's, and some settings
// run programs (core.fsmonitor runs one on every read of the index, as `git ls-files` does; a lazy fetch
// of a partial clone runs a transport, with its core.sshCommand, credential.helper or
// remote.*.uploadpack; log.showSignature runs gpg.program). The command line overrides the repository's
// configuration, and the environment keeps the commands local and read-only: no system configuration,
// no protocol allowed for any fetch (GIT_ALLOW_PROTOCOL names none), no lazy fetch (git 2.44 and later), no
// optional lock (the index is never refreshed or written), no prompt, no pager. git's own safe.directory
// check is left as git enforces it: a repository owned by someone else is refused, and its files are
// then scanned without its ignore rules (Result.Warnings says so).
var gitSafety = []string{
	"-c", "core.fsmonitor=false",
	"-c", "core.useBuiltinFSMonitor=false",
	"-c", "core.hooksPath=/dev/null",
	"-c", "core.sshCommand=false",
	"-c", "credential.helper=",
	"-c", "log.showSignature=false",
	"--no-pager",
}

var gitSafeEnv = []string{
	"GIT_CONFIG_NOSYSTEM=1",
	"GIT_OPTIONAL_LOCKS=0",
	"GIT_NO_LAZY_FETCH=1",
	"GIT_ALLOW_PROTOCOL=none",
	"GIT_TERMINAL_PROMPT=0",
	"GIT_PAGER=cat",
	"GIT_ASKPASS=false",
	"SSH_ASKPASS=false",
}

// gitWaitDelay bounds how long Wait waits for git's pipes once it has exited or been killed.
const gitWaitDelay = 5 * time.Second

// gitCommand is `git -C dir <gitSafety> args...`, killed when ctx ends.
func gitCommand(ctx context.Context, git, dir string, args ...string) *exec.Cmd {
	full := append(append([]string{"-C", dir}, gitSafety...), args...)
	cmd := exec.CommandContext(ctx, git, full...)
	cmd.Env = append(os.Environ(), gitSafeEnv...)
	cmd.WaitDelay = gitWaitDelay
	return cmd
}

// gitOutput runs git -C dir args and returns its standard output.
func gitOutput(ctx context.Context, git, dir string, args ...string) ([]byte, error) {
	cmd := gitCommand(ctx, git, dir, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, &gitError{args: args, dir: dir, err: err, stderr: strings.TrimSpace(stderr.String())}
	}
	return out, nil
}

type gitError struct {
	args   []string
	dir    string
	err    error
	stderr string
}

func (e *gitError) Error() string {
	return fmt.Sprintf("git %s in %s: %v: %s", strings.Join(e.args, " "), e.dir, e.err, e.stderr)
}

// dubious reports whether git refused the repository as owned by someone else (safe.directory).
func (e *gitError) dubious() bool { return strings.Contains(e.stderr, "dubious ownership") }
