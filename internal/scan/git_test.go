package scan

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/keysmith-dev/keysmith/internal/keys"
)

// scanWithin is scan, failing when Scan has not returned within d (it must never hang).
func scanWithin(t *testing.T, d time.Duration, paths []string, o Options) *Result {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type out struct {
		res *Result
		err error
	}
	done := make(chan out, 1)
	go func() {
		res, err := Scan(ctx, paths, o)
		done <- out{res, err}
	}()
	select {
	case o := <-done:
		if o.err != nil {
			t.Fatal(o.err)
		}
		return o.res
	case <-time.After(d):
		cancel()
		t.Fatalf("Scan(%v) has not returned after %s", paths, d)
	}
	return nil
}

// A repository with annotated tags: rev-list lists each tag object (with its name as a path) before the
// blobs. Each must be read and dropped, or the cat-file stream gets out of step (keys missed) and, with a
// tag larger than a pipe's buffer, cat-file blocks on its output while the scan waits for it to exit.
func TestScanGitHistoryAnnotatedTags(t *testing.T) {
	needGit(t)
	k, tagged := mustKey(t, "ks", keys.Live), mustKey(t, "ks", keys.Live)
	dir := t.TempDir()
	git(t, dir, "init", "-q")
	write(t, filepath.Join(dir, "README"), "nothing here\n")
	git(t, dir, "add", ".")
	git(t, dir, "commit", "-q", "-m", "first")
	// A tag whose message is larger than a pipe's buffer (64 KiB on Linux).
	msg := filepath.Join(t.TempDir(), "msg")
	write(t, msg, strings.Repeat("release notes that go on and on\n", 10000))
	git(t, dir, "tag", "-a", "v0.1.0", "-F", msg)
	write(t, filepath.Join(dir, "config", "prod.env"), "KEY="+k+"\n")
	git(t, dir, "add", ".")
	git(t, dir, "commit", "-q", "-m", "add the key")
	added := git(t, dir, "rev-parse", "HEAD")
	git(t, dir, "tag", "-a", "v0.2.0", "-m", "second")
	git(t, dir, "rm", "-q", "config/prod.env")
	git(t, dir, "commit", "-q", "-m", "remove the key")
	git(t, dir, "tag", "-a", "v0.3.0", "-m", "third")
	// A lightweight tag of a tree, and tags of a blob that no commit holds.
	git(t, dir, "tag", "tree-tag", "HEAD^{tree}")
	blobFile := filepath.Join(t.TempDir(), "blob")
	write(t, blobFile, "only a tag holds "+tagged+"\n")
	blobID := git(t, dir, "hash-object", "-w", blobFile)
	git(t, dir, "tag", "blob-tag", blobID)
	git(t, dir, "tag", "-a", "-m", "a blob", "annotated-blob-tag", blobID)

	t.Chdir(dir)
	want := []string{added[:12] + ":config/prod.env:1:5 key", "blob " + blobID[:12] + ":.:1:18 key"}
	sort.Strings(want)
	for _, workers := range []int{1, 2, 8} {
		res := scanWithin(t, time.Minute, []string{"."}, Options{Git: true, Workers: workers})
		if got := where(res); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("%d workers found\n%s\nwant\n%s", workers, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

// catFiles reads and drops whatever is not a blob, should rev-list list it (git before 2.32 has no
// --filter-provided-objects): a tag, a commit, a tree.
func TestCatFilesSkipsOtherObjects(t *testing.T) {
	needGit(t)
	k := mustKey(t, "ks", keys.Live)
	dir := t.TempDir()
	git(t, dir, "init", "-q")
	write(t, filepath.Join(dir, "a.env"), "KEY="+k+"\n")
	git(t, dir, "add", ".")
	git(t, dir, "commit", "-q", "-m", "a")
	msg := filepath.Join(t.TempDir(), "msg")
	write(t, msg, strings.Repeat("x", 200000))
	git(t, dir, "tag", "-a", "v1", "-F", msg)
	r, err := openRepo(context.Background(), dir)
	if err != nil || r == nil {
		t.Fatal(r, err)
	}
	var objs []blob
	for _, rev := range []string{"v1", "HEAD", "HEAD^{tree}", "HEAD:a.env", "v1", "HEAD:a.env"} {
		objs = append(objs, blob{id: git(t, dir, "rev-parse", rev), path: "a.env"})
	}
	wr := &workerResult{}
	done := make(chan error, 1)
	go func() { done <- r.catFiles(context.Background(), objs, newStream(4096), newLimits(Options{}), wr) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("catFiles hangs")
	}
	if len(wr.findings) != 2 || wr.files != 2 {
		t.Fatalf("%d findings in %d blobs, want the key twice", len(wr.findings), wr.files)
	}
	// A cancelled scan kills cat-file and returns.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.catFiles(ctx, objs, newStream(4096), newLimits(Options{}), &workerResult{}); err == nil {
		t.Error("a cancelled catFiles returns no error")
	}
}

// A scanned tree may be anyone's: its .git/config must not make the scan run a program.
func TestScanGitIgnoresRepositoryPrograms(t *testing.T) {
	needGit(t)
	k := mustKey(t, "ks", keys.Live)
	dir := t.TempDir()
	git(t, dir, "init", "-q")
	write(t, filepath.Join(dir, "a.env"), "KEY="+k+"\n")
	write(t, filepath.Join(dir, "untracked.txt"), "x\n")
	git(t, dir, "add", "a.env")
	git(t, dir, "commit", "-q", "-m", "a")
	marker := filepath.Join(t.TempDir(), "ran")
	hook := filepath.Join(t.TempDir(), "hook.sh")
	if err := os.WriteFile(hook, []byte("#!/bin/sh\necho \"$0 $*\" >> "+marker+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	git(t, dir, "config", "core.fsmonitor", hook)
	git(t, dir, "config", "core.hooksPath", filepath.Dir(hook))
	git(t, dir, "config", "core.pager", hook)
	git(t, dir, "config", "log.showSignature", "true")
	git(t, dir, "config", "gpg.program", hook)
	for _, name := range []string{"post-checkout", "post-index-change", "reference-transaction"} {
		if err := os.Symlink(hook, filepath.Join(filepath.Dir(hook), name)); err != nil {
			t.Fatal(err)
		}
	}
	// The program runs when git itself is run as usual (so the test tests something).
	git(t, dir, "ls-files", "-co", "--exclude-standard")
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("git ls-files did not run core.fsmonitor: %v", err)
	}
	if err := os.Remove(marker); err != nil {
		t.Fatal(err)
	}

	res := scanWithin(t, time.Minute, []string{dir, filepath.Join(dir, "a.env")}, Options{Git: true})
	if len(res.Findings) != 3 { // the work tree listing, the file named, history
		t.Errorf("found %v", where(res))
	}
	if b, err := os.ReadFile(marker); err == nil {
		t.Fatalf("the scan ran a program of the repository's configuration: %s", b)
	}
}

// A repository owned by someone else is refused by git (safe.directory): its files are scanned without
// git, ignored ones too, with a warning; its history is an error.
func TestScanRepositoryOfAnotherUser(t *testing.T) {
	needGit(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the repository to another user")
	}
	t.Setenv("GIT_CONFIG_GLOBAL", "/dev/null") // no safe.directory of the user's
	k := mustKey(t, "ks", keys.Live)
	dir := t.TempDir()
	git(t, dir, "init", "-q")
	write(t, filepath.Join(dir, ".gitignore"), "*.log\n")
	write(t, filepath.Join(dir, "app.log"), "KEY="+k+"\n")
	if out, err := exec.Command("chown", "-R", "65534:65534", dir).CombinedOutput(); err != nil {
		t.Skipf("chown: %v: %s", err, out)
	}
	res := scanWithin(t, time.Minute, []string{dir}, Options{})
	if got := where(res); len(got) != 1 || len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "git refuses the repository") {
		t.Fatalf("found %v, warnings %q", got, res.Warnings)
	}
	if _, err := Scan(context.Background(), []string{dir}, Options{Git: true}); err == nil || !strings.Contains(err.Error(), "dubious ownership") {
		t.Errorf("--git: %v", err)
	}
}
