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
