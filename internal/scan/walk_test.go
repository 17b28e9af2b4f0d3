package scan

import (
	"bytes"
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

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func needGit(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
}

// where lists the findings as "location valid" strings, sorted.
func where(res *Result) []string {
	var out []string
	for _, f := range res.Findings {
		v := "key"
		if !f.Valid {
			v = "not-a-key"
		}
		out = append(out, f.Location()+" "+v)
	}
	sort.Strings(out)
	return out
}

func scan(t *testing.T, paths []string, o Options) *Result {
	t.Helper()
	res, err := Scan(context.Background(), paths, o)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestScanDirectory(t *testing.T) {
	k1, k2 := mustKey(t, "ks", keys.Live), mustKey(t, "ks", keys.Test)
	bad := broken(t, mustKey(t, "ks", keys.Live))
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.env"), "KEY="+k1+"\n")
	write(t, filepath.Join(dir, "sub", "b.log"), strings.Repeat("line\n", 9)+"x "+k2+" "+bad+"\n")
	// binary: a NUL byte within the first 8000 bytes, the key after it
	write(t, filepath.Join(dir, "bin.dat"), "\x00"+strings.Repeat("z", 100)+k1)
	// not binary: its first NUL byte comes after the first 8000 bytes, as git decides
	write(t, filepath.Join(dir, "late-nul.txt"), strings.Repeat("z\n", BinaryProbe/2)+"\x00 "+k1)
	// a .git directory outside any repository: skipped
	write(t, filepath.Join(dir, ".git", "config"), k1)
	// a large file read in several buffers
	var big bytes.Buffer
	for big.Len() < 3*DefaultBufferSize {
		big.WriteString("some log line that says nothing at all\n")
	}
	big.WriteString("tail " + k2 + "\n")
	write(t, filepath.Join(dir, "big.log"), big.String())
	bigLine := strings.Count(big.String(), "\n")

	res := scan(t, []string{dir}, Options{})
	rel := func(p string) string { return filepath.Join(dir, p) }
	want := []string{
		rel("a.env") + ":1:5 key",
		rel("big.log") + ":" + itoa(bigLine) + ":6 key",
		rel("late-nul.txt") + ":" + itoa(BinaryProbe/2+1) + ":3 key",
		rel("sub/b.log") + ":10:3 key",
		rel("sub/b.log") + ":10:" + itoa(3+len(k2)+1) + " not-a-key",
	}
	sort.Strings(want)
	if got := where(res); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("found\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if res.Files != 4 || res.Binary != 1 || res.GitWorkTrees != 0 || len(res.Problems) != 0 {
		t.Errorf("files %d binary %d work trees %d problems %v", res.Files, res.Binary, res.GitWorkTrees, res.Problems)
	}
	// One worker and a small buffer find the same.
	if got := where(scan(t, []string{dir}, Options{Workers: 1, BufferSize: 4096})); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("one worker found %v", got)
	}
	// An explicit binary file is still skipped; standard input is scanned whatever it holds.
	res = scan(t, []string{rel("bin.dat"), "-"}, Options{Stdin: strings.NewReader("\x00" + k1)})
	if got := where(res); len(got) != 1 || got[0] != "-:1:2 key" || res.Binary != 1 {
		t.Fatalf("found %v, binary %d", got, res.Binary)
	}
	if _, err := Scan(context.Background(), []string{rel("missing")}, Options{}); err == nil {
		t.Error("a missing path is not an error")
	}
}

func TestScanUnreadableFile(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads every file")
	}
	dir := t.TempDir()
	write(t, filepath.Join(dir, "x"), "x")
	if err := os.Chmod(filepath.Join(dir, "x"), 0); err != nil {
		t.Fatal(err)
	}
	if res := scan(t, []string{dir}, Options{}); len(res.Problems) != 1 {
		t.Fatalf("problems %v", res.Problems)
	}
}

func TestScanGitWorkTree(t *testing.T) {
	needGit(t)
	k := mustKey(t, "ks", keys.Live)
	dir := t.TempDir()
	git(t, dir, "init", "-q")
	write(t, filepath.Join(dir, ".gitignore"), "*.log\nbuild/\n")
	write(t, filepath.Join(dir, "tracked.go"), "const k = \""+k+"\"\n")
	write(t, filepath.Join(dir, "untracked.txt"), k)
	write(t, filepath.Join(dir, "ignored.log"), k)
	write(t, filepath.Join(dir, "build", "out.txt"), k)
	git(t, dir, "add", "tracked.go", ".gitignore")
	// a nested repository of its own, untracked in the outer one: scanned with its own ignore rules
	nested := filepath.Join(dir, "nested")
	write(t, filepath.Join(nested, "n.txt"), k)
	write(t, filepath.Join(nested, "skip.tmp"), k)
	write(t, filepath.Join(nested, ".gitignore"), "*.tmp\n")
	git(t, nested, "init", "-q")

	res := scan(t, []string{dir}, Options{})
	want := []string{
		filepath.Join(dir, "nested", "n.txt") + ":1:1 key",
		filepath.Join(dir, "tracked.go") + ":1:12 key",
		filepath.Join(dir, "untracked.txt") + ":1:1 key",
	}
	if got := where(res); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("found\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if res.GitWorkTrees != 2 {
		t.Errorf("work trees %d", res.GitWorkTrees)
	}
	// An ignored file named on the command line is scanned.
	if got := where(scan(t, []string{filepath.Join(dir, "ignored.log")}, Options{})); len(got) != 1 {
		t.Errorf("explicit ignored file: %v", got)
	}
}

func TestScanGitHistory(t *testing.T) {
	needGit(t)
	k1, k2 := mustKey(t, "ks", keys.Live), mustKey(t, "ks", keys.Live)
	bad := broken(t, mustKey(t, "ks", keys.Test))
	dir := t.TempDir()
	git(t, dir, "init", "-q")
	write(t, filepath.Join(dir, "config", "prod.env"), "A=1\nKEY="+k1+"\n")
	write(t, filepath.Join(dir, "README"), "nothing here\n")
	write(t, filepath.Join(dir, "blob.bin"), "\x00"+k2)
	git(t, dir, "add", ".")
	git(t, dir, "commit", "-q", "-m", "add config")
	added := git(t, dir, "rev-parse", "HEAD")
	git(t, dir, "rm", "-q", "config/prod.env")
	git(t, dir, "commit", "-q", "-m", "remove the key")
	// a side branch with another key, merged
	git(t, dir, "checkout", "-q", "-b", "side")
	write(t, filepath.Join(dir, "docs", "notes.md"), "# notes\n\n`"+k2+"` and "+bad+"\n")
	git(t, dir, "add", ".")
	git(t, dir, "commit", "-q", "-m", "notes")
	side := git(t, dir, "rev-parse", "HEAD")
	git(t, dir, "checkout", "-q", "main")
	git(t, dir, "merge", "-q", "--no-ff", "-m", "merge", "side")
	git(t, dir, "rm", "-q", "docs/notes.md")
	git(t, dir, "commit", "-q", "-m", "drop notes")

	t.Chdir(dir)
	res := scan(t, []string{"."}, Options{Git: true})
	want := []string{
		side[:12] + ":docs/notes.md:3:2 key",
		side[:12] + ":docs/notes.md:3:" + itoa(2+len(k2)+6) + " not-a-key",
		added[:12] + ":config/prod.env:2:5 key",
	}
	sort.Strings(want)
	if got := where(res); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("found\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, f := range res.Findings {
		if f.Commit == added && f.Path != filepath.Join("config", "prod.env") {
			t.Errorf("path %s", f.Path)
		}
	}
	if res.Blobs == 0 || res.Binary != 2 { // blob.bin in the work tree and in history
		t.Errorf("blobs %d binary %d", res.Blobs, res.Binary)
	}
	// From a subdirectory, paths are still shown from where the scan runs.
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(filepath.Join(dir, "sub"))
	res = scan(t, []string{"."}, Options{Git: true})
	if len(res.Findings) != 3 || res.Findings[0].Path != filepath.Join("..", "config", "prod.env") && res.Findings[0].Path != filepath.Join("..", "docs", "notes.md") {
		t.Errorf("from a subdirectory: %v", where(res))
	}
	// Not a repository.
	if _, err := Scan(context.Background(), []string{t.TempDir()}, Options{Git: true}); err == nil {
		t.Error("--git outside a repository is not an error")
	}
}

// submodule adds a repository holding key as submodule sub of dir and commits it.
func submodule(t *testing.T, dir, key string) {
	t.Helper()
	inner := t.TempDir()
	git(t, inner, "init", "-q")
	write(t, filepath.Join(inner, "inner.env"), "KEY="+key+"\n")
	git(t, inner, "add", ".")
	git(t, inner, "commit", "-q", "-m", "inner")
	git(t, dir, "-c", "protocol.file.allow=always", "submodule", "add", "-q", inner, "sub")
	git(t, dir, "commit", "-q", "-m", "submodule")
}

// An uninitialised submodule (a clone without --recursive, git submodule deinit) is an empty directory
// that git lists as a gitlink, and lists as "./" from inside it: it is skipped, with a warning, and a
// checked-out one is scanned with its own rules.
func TestScanSubmodules(t *testing.T) {
	needGit(t)
	k, inKey := mustKey(t, "ks", keys.Live), mustKey(t, "ks", keys.Live)
	dir := t.TempDir()
	git(t, dir, "init", "-q")
	write(t, filepath.Join(dir, "a.env"), "KEY="+k+"\n")
	git(t, dir, "add", ".")
	git(t, dir, "commit", "-q", "-m", "a")
	submodule(t, dir, inKey)

	res := scanWithin(t, time.Minute, []string{dir}, Options{})
	want := []string{filepath.Join(dir, "a.env") + ":1:5 key", filepath.Join(dir, "sub", "inner.env") + ":1:5 key"}
	if got := where(res); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("checked out: found\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if res.GitWorkTrees != 2 || len(res.Warnings) != 0 {
		t.Errorf("work trees %d, warnings %v", res.GitWorkTrees, res.Warnings)
	}

	git(t, dir, "submodule", "deinit", "-q", "-f", "sub")
	res = scanWithin(t, time.Minute, []string{dir}, Options{})
	if got := where(res); strings.Join(got, "\n") != want[0] {
		t.Fatalf("not checked out: found %v", got)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "not checked out") {
		t.Errorf("warnings %v", res.Warnings)
	}
	// Named on the command line: nothing in it, and the scan says so.
	res = scanWithin(t, time.Minute, []string{filepath.Join(dir, "sub")}, Options{})
	if res.Files != 0 || len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "git lists no file in it") {
		t.Errorf("files %d, warnings %v", res.Files, res.Warnings)
	}
}

func TestUsableName(t *testing.T) {
	for name, want := range map[string]bool{"": false, ".": false, "./": false, "..": false, "../x": false, "/etc": false,
		"a": true, "a/b": true, "./a": true, "..a": true} {
		if usable(name) != want {
			t.Errorf("usable(%q) = %v", name, !want)
		}
	}
}

// A root named through a symbolic link is followed; links inside are not, and a loop of links ends.
func TestScanSymlinks(t *testing.T) {
	k := mustKey(t, "ks", keys.Live)
	base := t.TempDir()
	real := filepath.Join(base, "real")
	write(t, filepath.Join(real, "a.env"), "KEY="+k+"\n")
	outside := filepath.Join(base, "outside")
	write(t, filepath.Join(outside, "b.env"), "KEY="+k+"\n")
	for link, target := range map[string]string{
		filepath.Join(base, "link"):         real,
		filepath.Join(real, "to-outside"):   outside,
		filepath.Join(real, "loop"):         real,
		filepath.Join(real, "to-file.env"):  filepath.Join(outside, "b.env"),
		filepath.Join(base, "link-to-link"): filepath.Join(base, "link"),
	} {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	check := func(t *testing.T, root string) {
		t.Helper()
		res := scanWithin(t, time.Minute, []string{root}, Options{})
		if got := where(res); len(got) != 1 || got[0] != filepath.Join(root, "a.env")+":1:5 key" {
			t.Fatalf("scan %s found %v", root, got)
		}
		if len(res.Warnings) != 0 {
			t.Errorf("warnings %v", res.Warnings)
		}
	}
	t.Run("outside a work tree", func(t *testing.T) {
		check(t, filepath.Join(base, "link"))
		check(t, filepath.Join(base, "link-to-link")+string(filepath.Separator))
	})
	t.Run("in a work tree", func(t *testing.T) {
		needGit(t)
		git(t, real, "init", "-q")
		check(t, filepath.Join(base, "link"))
	})
	// Named twice (through the link and not): scanned once.
	res := scanWithin(t, time.Minute, []string{real, filepath.Join(base, "link")}, Options{})
	if len(res.Findings) != 1 {
		t.Errorf("found %v", where(res))
	}
}

// A directory named on the command line is scanned even when git ignores it; a path that yields no file
// is a warning.
func TestScanNamedDirectories(t *testing.T) {
	needGit(t)
	k := mustKey(t, "ks", keys.Live)
	dir := t.TempDir()
	git(t, dir, "init", "-q")
	write(t, filepath.Join(dir, ".gitignore"), "logs/\n*.tmp\n")
	write(t, filepath.Join(dir, "logs", "2026", "app.log"), "key="+k+"\n")
	write(t, filepath.Join(dir, "tmp", "x.tmp"), "key="+k+"\n")
	if err := os.MkdirAll(filepath.Join(dir, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)

	res := scanWithin(t, time.Minute, []string{"."}, Options{})
	if len(res.Findings) != 0 || len(res.Warnings) != 0 {
		t.Fatalf("the work tree: found %v, warnings %v", where(res), res.Warnings)
	}
	for _, p := range []string{"logs", "logs/", "logs/2026"} {
		res = scanWithin(t, time.Minute, []string{p}, Options{})
		if got := where(res); len(got) != 1 || got[0] != filepath.Join("logs", "2026", "app.log")+":1:5 key" {
			t.Errorf("scan %s found %v", p, got)
		}
		if len(res.Warnings) != 0 {
			t.Errorf("scan %s: warnings %v", p, res.Warnings)
		}
	}
	res = scanWithin(t, time.Minute, []string{"tmp", "empty"}, Options{})
	if res.Files != 0 || len(res.Warnings) != 2 || !strings.HasPrefix(res.Warnings[0], "tmp: git lists no file in it") ||
		!strings.HasPrefix(res.Warnings[1], "empty: git lists no file in it") {
		t.Errorf("files %d, warnings %q", res.Files, res.Warnings)
	}
	res = scanWithin(t, time.Minute, []string{t.TempDir()}, Options{})
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], ": no file in it") {
		t.Errorf("an empty directory outside a work tree: warnings %q", res.Warnings)
	}
}

// Findings in a work tree are located from its top level, for SARIF.
func TestScanRepoPaths(t *testing.T) {
	needGit(t)
	k := mustKey(t, "ks", keys.Live)
	dir := t.TempDir()
	git(t, dir, "init", "-q")
	write(t, filepath.Join(dir, "deploy", "prod", "a.env"), "KEY="+k+"\n")
	write(t, filepath.Join(dir, ".gitignore"), "logs/\n")
	write(t, filepath.Join(dir, "logs", "b.log"), "KEY="+k+"\n")
	git(t, dir, "add", ".")
	git(t, dir, "commit", "-q", "-m", "a")
	git(t, dir, "rm", "-q", "deploy/prod/a.env")
	git(t, dir, "commit", "-q", "-m", "rm")
	write(t, filepath.Join(dir, "deploy", "prod", "a.env"), "KEY="+k+"\n")
	top := git(t, dir, "rev-parse", "--show-toplevel")
	t.Chdir(filepath.Join(dir, "deploy"))
	for _, paths := range [][]string{{"."}, {"prod"}, {"prod/a.env"}, {filepath.Join(dir, "deploy", "prod", "a.env")}} {
		res := scanWithin(t, time.Minute, paths, Options{})
		if len(res.Findings) != 1 || res.Findings[0].RepoRoot != top || res.Findings[0].RepoPath != "deploy/prod/a.env" {
			t.Errorf("scan %v: %+v", paths, res.Findings)
		}
	}
	res := scanWithin(t, time.Minute, []string{"../logs"}, Options{Git: true})
	var got []string
	for _, f := range res.Findings {
		got = append(got, f.RepoRoot+" "+f.RepoPath)
	}
	if want := []string{top + " logs/b.log", top + " deploy/prod/a.env"}; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got %q, want %q", got, want)
	}
	// Outside a work tree: none.
	out := t.TempDir()
	write(t, filepath.Join(out, "c.env"), k)
	if res := scanWithin(t, time.Minute, []string{out}, Options{}); len(res.Findings) != 1 || res.Findings[0].RepoRoot != "" || res.Findings[0].RepoPath != "" {
		t.Errorf("outside a work tree: %+v", res.Findings)
	}
}

// The findings kept are bounded, per file and in all; the others are counted.
func TestScanFindingsCapped(t *testing.T) {
	dir := t.TempDir()
	var many strings.Builder
	for i := 0; i < 1500; i++ {
		many.WriteString("key " + mustKey(t, "ks", keys.Live) + "\n")
	}
	many.WriteString("and " + broken(t, mustKey(t, "ks", keys.Live)) + "\n")
	write(t, filepath.Join(dir, "dump.txt"), many.String())
	write(t, filepath.Join(dir, "one.env"), "KEY="+mustKey(t, "ks", keys.Live)+"\n")

	res := scanWithin(t, time.Minute, []string{dir}, Options{})
	n := map[string]int{}
	for _, f := range res.Findings {
		n[filepath.Base(f.Path)]++
	}
	if n["dump.txt"] != DefaultMaxFindingsPerFile || n["one.env"] != 1 || res.Truncated != 501 || res.TruncatedKeys != 500 {
		t.Fatalf("kept %v, truncated %d (%d keys)", n, res.Truncated, res.TruncatedKeys)
	}
	res = scanWithin(t, time.Minute, []string{dir}, Options{MaxFindingsPerFile: 2000, MaxFindings: 1200})
	if len(res.Findings) != 1200 || res.Truncated != 302 || res.TruncatedKeys != 301 {
		t.Fatalf("kept %d, truncated %d (%d keys)", len(res.Findings), res.Truncated, res.TruncatedKeys)
	}
}
