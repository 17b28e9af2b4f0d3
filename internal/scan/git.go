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
	"strconv"
	"strings"
	"sync"
)

// repo is a git repository whose history is scanned.
type repo struct {
	git    string
	dir    string // a directory inside it, as given
	gitDir string // absolute, to scan each repository once
	// display is the top level as paths are shown (relative to the working directory when that is shorter), or
	// the path given for a bare repository.
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
		return nil, nil //nolint:nilerr // not a repository
	}
	r := &repo{git: git, dir: dir, gitDir: strings.TrimSpace(string(out)), display: p}
	if top, err := gitOutput(ctx, git, dir, "rev-parse", "--show-toplevel"); err == nil {
		r.display = strings.TrimSpace(string(top))
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
func (r *repo) scanHistory(ctx context.Context, workers, bufSize int) (*workerResult, error) {
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
			errs[w] = r.catFiles(ctx, share, newStream(bufSize), &results[w])
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
		}
	}
	return all, nil
}

// blobs lists the blobs of every commit reachable from any ref, each with the first path rev-list saw it at.
func (r *repo) blobs(ctx context.Context) ([]blob, error) {
	cmd := exec.CommandContext(ctx, r.git, "-C", r.dir, "rev-list", "--all", "--objects", "--filter=object:type=blob")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	var blobs []blob
	br := bufio.NewReaderSize(stdout, 256<<10)
	for {
		line, err := br.ReadString('\n')
		line = strings.TrimSuffix(line, "\n")
		if id, path, ok := strings.Cut(line, " "); ok { // commits have no path
			blobs = append(blobs, blob{id: id, path: path})
		}
		if err != nil {
			break
		}
	}
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("git rev-list --all --objects in %s: %v: %s", r.dir, err, strings.TrimSpace(stderr.String()))
	}
	return blobs, nil
}

// catFiles reads blobs through one `git cat-file --batch` and scans each.
func (r *repo) catFiles(ctx context.Context, blobs []blob, s *stream, wr *workerResult) error {
	if len(blobs) == 0 {
		return nil
	}
	cmd := exec.CommandContext(ctx, r.git, "-C", r.dir, "cat-file", "--batch")
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
	go func() {
		bw := bufio.NewWriterSize(stdin, 64<<10)
		for _, b := range blobs {
			if _, err := bw.WriteString(b.id + "\n"); err != nil {
				break
			}
		}
		_ = bw.Flush()
		_ = stdin.Close()
	}()
	br := bufio.NewReaderSize(stdout, 1<<20)
	var readErr error
	for _, b := range blobs {
		header, err := br.ReadString('\n')
		if err != nil {
			readErr = fmt.Errorf("git cat-file --batch in %s: %w", r.dir, err)
			break
		}
		fields := strings.Fields(header)
		if len(fields) != 3 || fields[1] != "blob" {
			continue // "<id> missing": a promised object of a partial clone
		}
		size, err := strconv.ParseInt(fields[2], 10, 64)
		if err != nil {
			readErr = fmt.Errorf("git cat-file --batch in %s: bad header %q", r.dir, header)
			break
		}
		content := io.LimitReader(br, size)
		n, err := s.scan(content, true, func(buf []byte, m match) {
			f := finding(buf, m)
			f.Path, f.Blob = filepath.Join(r.display, filepath.FromSlash(b.path)), b.id
			wr.findings = append(wr.findings, f)
		})
		switch {
		case errors.Is(err, errBinary):
			wr.binary++
			if _, err := io.Copy(io.Discard, content); err != nil {
				readErr = err
			}
		case err != nil:
			readErr = err
		default:
			wr.files++
			wr.bytes += n
		}
		if readErr != nil {
			break
		}
		if _, err := br.Discard(1); err != nil { // the newline after the content
			readErr = err
			break
		}
	}
	if readErr != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return readErr
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("git cat-file --batch in %s: %v: %s", r.dir, err, strings.TrimSpace(stderr.String()))
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
	cmd := exec.CommandContext(ctx, r.git, "-C", r.dir, "log", "--all", "--topo-order", "--reverse", "--format=%x00%H",
		"--raw", "--no-abbrev", "--no-renames", "-m", "-z")
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
