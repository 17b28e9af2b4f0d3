package scan

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"
)

// Options configure Scan.
type Options struct {
	// Git also scans every blob of the history of the git repository each path is in.
	Git bool
	// Workers is the number of files scanned at once; 0 means GOMAXPROCS.
	Workers int
	// Stdin is what "-" reads (os.Stdin when nil).
	Stdin io.Reader
	// BufferSize is each worker's read buffer (DefaultBufferSize when 0).
	BufferSize int
}

// Result is what a scan found and what it read.
type Result struct {
	// Findings in order: files by path, line and column, then git history by path, commit, line, column.
	Findings []Finding
	// Files and Bytes count the files (standard input included) read whole; Blobs and BlobBytes the
	// blobs of git history.
	Files     int
	Bytes     int64
	Blobs     int
	BlobBytes int64
	// Binary counts the files and blobs skipped as binary (a NUL byte in their first BinaryProbe bytes).
	Binary int
	// GitWorkTrees counts the directories whose files were listed by git (ignored files skipped).
	GitWorkTrees int
	// Problems are what could not be read; the scan went on without them.
	Problems []error
	// Elapsed is how long the scan took.
	Elapsed time.Duration
}

// job is one input: a file, standard input, or a blob of a repository.
type job struct {
	path   string
	stdin  bool
	repo   *repo  // blob of history
	object string // blob id
}

// Scan scans paths: files, directories ("-" is standard input) and, with o.Git, the history of their
// repositories. Inside a git work tree a directory's files are those `git ls-files -co
// --exclude-standard` lists (so ignored files are skipped); outside one every file is scanned but
// .git directories. A file named on the command line is scanned even when git ignores it. Binary files
// are skipped. The error is for what stops the whole scan (a path that does not exist, git failing on a
// repository); an unreadable file is recorded in Result.Problems.
func Scan(ctx context.Context, paths []string, o Options) (*Result, error) {
	start := time.Now()
	workers := o.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	bufSize := o.BufferSize
	if bufSize <= 0 {
		bufSize = DefaultBufferSize
	}
	stdin := o.Stdin
	if stdin == nil {
		stdin = os.Stdin
	}
	for _, p := range paths {
		if p == "-" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	res := &Result{}
	var mu sync.Mutex
	problem := func(err error) {
		mu.Lock()
		res.Problems = append(res.Problems, err)
		mu.Unlock()
	}
	jobs := make(chan job, 4*workers)
	var fatal error
	var fatalOnce sync.Once
	fail := func(err error) { fatalOnce.Do(func() { fatal = err; cancel() }) }

	// Files first, then the blobs of each repository (each repository's blobs are read by workers of
	// their own, one `git cat-file --batch` each).
	var repos []*repo
	go func() {
		defer close(jobs)
		send := func(j job) bool {
			select {
			case jobs <- j:
				return true
			case <-ctx.Done():
				return false
			}
		}
		l := lister{send: send, problem: problem, res: res, mu: &mu}
		for _, p := range paths {
			if p == "-" {
				if !send(job{path: "-", stdin: true}) {
					return
				}
				continue
			}
			if err := l.list(ctx, p, true); err != nil {
				fail(err)
				return
			}
		}
	}()

	var wg sync.WaitGroup
	results := make([]workerResult, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			s := newStream(bufSize)
			wr := &results[w]
			for j := range jobs {
				if ctx.Err() != nil {
					continue
				}
				wr.scanFile(s, j, stdin, problem)
			}
		}(w)
	}
	wg.Wait()
	if fatal != nil {
		return nil, fatal
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, wr := range results {
		res.Findings = append(res.Findings, wr.findings...)
		res.Files += wr.files
		res.Bytes += wr.bytes
		res.Binary += wr.binary
	}

	if o.Git {
		seen := map[string]bool{}
		for _, p := range paths {
			if p == "-" {
				continue
			}
			r, err := openRepo(ctx, p)
			if err != nil {
				return nil, err
			}
			if r == nil {
				return nil, fmt.Errorf("--git: %s is not in a git repository", p)
			}
			if seen[r.gitDir] {
				continue
			}
			seen[r.gitDir] = true
			repos = append(repos, r)
		}
		for _, r := range repos {
			hr, err := r.scanHistory(ctx, workers, bufSize)
			if err != nil {
				return nil, err
			}
			res.Findings = append(res.Findings, hr.findings...)
			res.Blobs += hr.files
			res.BlobBytes += hr.bytes
			res.Binary += hr.binary
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sortFindings(res.Findings)
	sort.Slice(res.Problems, func(i, j int) bool { return res.Problems[i].Error() < res.Problems[j].Error() })
	res.Elapsed = time.Since(start)
	return res, nil
}

func sortFindings(fs []Finding) {
	sort.SliceStable(fs, func(i, j int) bool {
		a, b := &fs[i], &fs[j]
		if (a.Blob == "") != (b.Blob == "") {
			return a.Blob == ""
		}
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		if a.Commit != b.Commit {
			return a.Commit < b.Commit
		}
		if a.Blob != b.Blob {
			return a.Blob < b.Blob
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
}

type readCloser interface {
	io.Reader
	Close() error
}

// workerResult is what one worker found; merged once every worker is done.
type workerResult struct {
	findings []Finding
	files    int
	bytes    int64
	binary   int
}

func (wr *workerResult) scanFile(s *stream, j job, stdin io.Reader, problem func(error)) {
	var r io.Reader
	if j.stdin {
		r = stdin
	} else {
		f, err := openFile(j.path)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) { // listed by git, deleted from the work tree since
				problem(err)
			}
			return
		}
		defer f.Close()
		r = f
	}
	n, err := s.scan(r, !j.stdin, func(buf []byte, m match) {
		f := finding(buf, m)
		f.Path = j.path
		wr.findings = append(wr.findings, f)
	})
	switch {
	case errors.Is(err, errBinary):
		wr.binary++
		return
	case err != nil:
		problem(fmt.Errorf("%s: %w", j.path, err))
		return
	}
	wr.files++
	wr.bytes += n
}

// lister lists the files of a path and sends them as jobs.
type lister struct {
	send    func(job) bool
	problem func(error)
	res     *Result
	mu      *sync.Mutex
}

var errStop = errors.New("stopped")

func (l *lister) list(ctx context.Context, p string, explicit bool) error {
	fi, err := os.Stat(p)
	if err != nil {
		if explicit {
			return err
		}
		if !errors.Is(err, fs.ErrNotExist) {
			l.problem(err)
		}
		return nil
	}
	if !fi.IsDir() {
		if !fi.Mode().IsRegular() && !explicit {
			return nil
		}
		if !l.send(job{path: p}) {
			return ctx.Err()
		}
		return nil
	}
	files, inGit, err := gitListFiles(ctx, p)
	if err != nil {
		return err
	}
	if inGit {
		l.mu.Lock()
		l.res.GitWorkTrees++
		l.mu.Unlock()
		for _, f := range files {
			full := filepath.Join(p, f)
			fi, err := os.Lstat(full)
			if err != nil {
				if !errors.Is(err, fs.ErrNotExist) {
					l.problem(err)
				}
				continue
			}
			switch {
			case fi.IsDir(): // a submodule, or a repository of its own inside this one
				if err := l.list(ctx, full, false); err != nil {
					return err
				}
			case fi.Mode().IsRegular():
				if !l.send(job{path: full}) {
					return ctx.Err()
				}
			}
		}
		return nil
	}
	err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			l.problem(err)
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			if d.Name() == ".git" && path != p {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if !l.send(job{path: path}) {
			return errStop
		}
		return nil
	})
	if errors.Is(err, errStop) {
		return ctx.Err()
	}
	return err
}

// gitListFiles lists the files of dir that git does not ignore, relative to dir, when dir is inside a
// git work tree (tracked files and untracked ones that no ignore rule matches). inGit is false when dir
// is not in a work tree or git is not installed.
func gitListFiles(ctx context.Context, dir string) (files []string, inGit bool, err error) {
	git, err := exec.LookPath("git")
	if err != nil {
		return nil, false, nil
	}
	out, err := gitOutput(ctx, git, dir, "rev-parse", "--is-inside-work-tree")
	if err != nil || strings.TrimSpace(string(out)) != "true" {
		return nil, false, nil //nolint:nilerr // not a work tree: scanned without git
	}
	cmd := exec.CommandContext(ctx, git, "-C", dir, "ls-files", "-co", "--exclude-standard", "-z")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, false, err
	}
	if err := cmd.Start(); err != nil {
		return nil, false, err
	}
	br := bufio.NewReaderSize(stdout, 64<<10)
	for {
		name, err := br.ReadString(0)
		if len(name) > 1 {
			files = append(files, strings.TrimSuffix(strings.TrimSuffix(name, "\x00"), "/"))
		}
		if err != nil {
			break
		}
	}
	if err := cmd.Wait(); err != nil {
		return nil, false, fmt.Errorf("git ls-files in %s: %v: %s", dir, err, strings.TrimSpace(stderr.String()))
	}
	return files, true, nil
}

// gitOutput runs git -C dir args and returns its standard output.
func gitOutput(ctx context.Context, git, dir string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, git, append([]string{"-C", dir}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git %s in %s: %v: %s", strings.Join(args, " "), dir, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}
