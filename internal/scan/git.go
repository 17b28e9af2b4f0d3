package scan

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// repo is a git repository whose history is scanned.
type repo struct {
	git    string
	dir    string // a directory inside it, as given
	gitDir string // absolute, to scan each repository once
	// top is its top level as git names it ("" for a bare repository); display is the top level as paths
	// are shown (relative to the working directory when that is shorter), or the path given for a bare
	// repository.
	top     string
	display string
}

// openRepo returns the repository that path p is in, or nil when it is in none.
func openRepo(ctx context.Context, p string) (*repo, error) {
	git, err := exec.LookPath("git")
	if err != nil {
		return nil, errors.New("--git needs git on PATH")
	}
	dir := p
	if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
		dir = filepath.Dir(p)
	}
	out, err := gitOutput(ctx, git, dir, "rev-parse", "--absolute-git-dir")
	if err != nil {
		var ge *gitError
		if errors.As(err, &ge) && ge.dubious() {
			return nil, fmt.Errorf("--git: %s", ge.stderr)
		}
		return nil, nil //nolint:nilerr // not a repository
	}
	r := &repo{git: git, dir: dir, gitDir: strings.TrimSpace(string(out)), display: p}
	if top, err := gitOutput(ctx, git, dir, "rev-parse", "--show-toplevel"); err == nil {
		r.top = strings.TrimSpace(string(top))
		r.display = r.top
		if wd, err := os.Getwd(); err == nil {
			if rel, err := filepath.Rel(wd, r.display); err == nil && len(rel) < len(r.display) {
				r.display = rel
			}
		}
	}
	return r, nil
}

type blob struct {
	id, path string
}

// scanHistory scans every blob reachable from any ref (`git rev-list --all --objects`), each worker
// reading its share through a `git cat-file --batch` of its own, then names the first commit that added
// each blob with a finding (one `git log --all --raw` pass, only when there are findings).
func (r *repo) scanHistory(ctx context.Context, workers, bufSize int, lim *limits) (*workerResult, error) {
	blobs, err := r.blobs(ctx)
	if err != nil {
		return nil, err
	}
	if workers > len(blobs) {
		workers = max(1, len(blobs))
	}
	results := make([]workerResult, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		var share []blob
		for i := w; i < len(blobs); i += workers {
			share = append(share, blobs[i])
		}
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			errs[w] = r.catFiles(ctx, share, newStream(bufSize), lim, &results[w])
		}(w)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	all := &workerResult{}
	for _, wr := range results {
		all.findings = append(all.findings, wr.findings...)
		all.files += wr.files
		all.bytes += wr.bytes
		all.binary += wr.binary
		all.truncated += wr.truncated
		all.truncatedKeys += wr.truncatedKeys
	}
	if len(all.findings) == 0 {
		return all, nil
	}
	wanted := map[string]bool{}
	for _, f := range all.findings {
		wanted[f.Blob] = true
	}
	added, err := r.addedBy(ctx, wanted)
	if err != nil {
		return nil, err
	}
	for i := range all.findings {
		f := &all.findings[i]
		if a, ok := added[f.Blob]; ok {
			f.Commit, f.Path = a.id, filepath.Join(r.display, filepath.FromSlash(a.path))
			if r.top != "" {
				f.RepoRoot, f.RepoPath = r.top, a.path
			}
		}
	}
	return all, nil
}

// revListArgs lists the blobs only: no commit, tree or tag, also among the refs' own objects (a tag is
// listed with its name as a path, a blob tagged directly with none).
var revListArgs = []string{"rev-list", "--all", "--objects", "--filter=object:type=blob", "--filter-provided-objects", "--missing=allow-promisor"}

// blobs lists the blobs of every commit reachable from any ref, each with the first path rev-list saw it at.
func (r *repo) blobs(ctx context.Context) ([]blob, error) {
	out, err := gitOutput(ctx, r.git, r.dir, revListArgs...)
	var ge *gitError
	if err != nil && errors.As(err, &ge) && strings.Contains(ge.stderr, "filter-provided-objects") {
		// git before 2.32: tags may be listed too; catFiles skips what is not a blob.
		out, err = gitOutput(ctx, r.git, r.dir, slices.DeleteFunc(slices.Clone(revListArgs), func(a string) bool { return a == "--filter-provided-objects" })...)
	}
	if err != nil {
		return nil, err
	}
	var blobs []blob
	for _, line := range strings.Split(string(out), "\n") {
		if id, path, ok := strings.Cut(line, " "); ok { // commits have no path
			blobs = append(blobs, blob{id: id, path: path})
		}
	}
	return blobs, nil
}

// catFiles reads objects through one `git cat-file --batch` and scans each blob. Whatever else git answers
// (a tag, a tree or a commit, should one be listed) is read and dropped, so that the stream stays in step;
// the stream is read to its end before git is waited for, and git is killed on any error and when ctx ends,
// so that neither side can block the other.
func (r *repo) catFiles(ctx context.Context, blobs []blob, s *stream, lim *limits, wr *workerResult) (err error) {
	if len(blobs) == 0 {
		return nil
	}
	cmd := gitCommand(ctx, r.git, r.dir, "cat-file", "--batch")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	written := make(chan struct{})
	go func() {
		defer close(written)
		bw := bufio.NewWriterSize(stdin, 64<<10)
		for _, b := range blobs {
			if _, err := bw.WriteString(b.id + "\n"); err != nil {
				break
			}
		}
		_ = bw.Flush()
		_ = stdin.Close()
	}()
	defer func() {
		if err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		<-written
	}()
	fail := func(format string, a ...any) error {
		return fmt.Errorf("git cat-file --batch in %s: "+format, append([]any{r.dir}, a...)...)
	}
	br := bufio.NewReaderSize(stdout, 1<<20)
	for _, b := range blobs {
		header, err := br.ReadString('\n')
		if err != nil {
			return fail("%v", err)
		}
		fields := strings.Fields(header)
		if len(fields) != 3 {
			continue // "<id> missing": a promised object of a partial clone
		}
		size, err := strconv.ParseInt(fields[2], 10, 64)
		if err != nil || size < 0 || fields[0] != b.id {
			return fail("unexpected header %q for %s", strings.TrimSpace(header), b.id)
		}
		content := io.LimitReader(br, size)
		if fields[1] != "blob" {
			if _, err := io.Copy(io.Discard, content); err != nil {
				return fail("%v", err)
			}
		} else {
			c := collector{lim: lim, wr: wr}
			n, err := s.scan(content, true, func(buf []byte, m match) {
				f := finding(buf, m)
				f.Path, f.Blob = filepath.Join(r.display, filepath.FromSlash(b.path)), b.id
				if r.top != "" && b.path != "" {
					f.RepoRoot, f.RepoPath = r.top, b.path
				}
				c.add(f)
			})
			switch {
			case errors.Is(err, errBinary):
				wr.binary++
				if _, err := io.Copy(io.Discard, content); err != nil {
					return fail("%v", err)
				}
			case err != nil:
				return fail("%v", err)
			default:
				wr.files++
				wr.bytes += n
			}
		}
		if nl, err := br.ReadByte(); err != nil || nl != '\n' { // the newline after the content
			return fail("no newline after %s", b.id)
		}
	}
	// Every object was read: git has no more to say.
	if extra, _ := io.Copy(io.Discard, br); extra > 0 {
		return fail("%d bytes more than the objects asked for", extra)
	}
	if err := cmd.Wait(); err != nil {
		return fail("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

type commitPath struct {
	id, path string
}

// addedBy finds, for each wanted blob, the oldest commit (parents before children) whose diff (against each parent, for merges)
// adds it, and the path it was added at, in one pass over the history, oldest first.
func (r *repo) addedBy(ctx context.Context, wanted map[string]bool) (map[string]commitPath, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := gitCommand(ctx, r.git, r.dir, "log", "--all", "--topo-order", "--reverse", "--format=%x00%H",
		"--raw", "--no-abbrev", "--no-renames", "--no-ext-diff", "--no-textconv", "--no-show-signature", "--no-mailmap", "-m", "-z")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	found := map[string]commitPath{}
	br := bufio.NewReaderSize(stdout, 256<<10)
	var commit, pending string
	expectCommit, expectPath := false, false
	// The output is NUL-separated: "", <commit>, then for each changed file its raw line
	// (":<mode> <mode> <old> <new> <status>", after a newline) and its path.
	for len(found) < len(wanted) {
		tok, err := br.ReadString(0)
		tok = strings.TrimSuffix(tok, "\x00")
		switch {
		case expectPath:
			if pending != "" {
				if _, ok := found[pending]; !ok {
					found[pending] = commitPath{id: commit, path: tok}
				}
			}
			expectPath, pending = false, ""
		case tok == "":
			expectCommit = true
		case expectCommit:
			commit, expectCommit = strings.TrimSpace(tok), false
		case strings.HasPrefix(strings.TrimLeft(tok, "\n"), ":"):
			f := strings.Fields(strings.TrimLeft(tok, "\n"))
			expectPath = true
			if len(f) >= 5 && wanted[f[3]] {
				pending = f[3]
			}
		}
		if err != nil {
			break
		}
	}
	if len(found) == len(wanted) {
		cancel()
		_ = cmd.Wait()
		return found, nil
	}
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("git log --all --raw in %s: %v: %s", r.dir, err, strings.TrimSpace(stderr.String()))
	}
	return found, nil
}
