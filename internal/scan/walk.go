package scan

import (
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
	"sync/atomic"
	"time"
)

// Default limits on what a scan keeps: the findings of a file (or blob) past DefaultMaxFindingsPerFile,
// and any past DefaultMaxFindings in all, are counted (Result.Truncated) but not kept, so that a file of
// key-shaped strings cannot make a scan hold more than a bounded number of findings in memory.
const (
	DefaultMaxFindingsPerFile = 1000
	DefaultMaxFindings        = 100000
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
	// MaxFindingsPerFile and MaxFindings bound the findings kept (DefaultMaxFindingsPerFile and
	// DefaultMaxFindings when 0).
	MaxFindingsPerFile int
	MaxFindings        int
}

// Result is what a scan found and what it read.
type Result struct {
	// Findings in order: files by path, line and column, then git history by path, commit, line, column.
	Findings []Finding
	// Truncated counts the findings not kept (past Options.MaxFindingsPerFile in one file or blob, or
	// past Options.MaxFindings in all); TruncatedKeys those of them whose checksum holds. Which are kept
	// when the total is reached depends on the order the workers read the files.
	Truncated     int
	TruncatedKeys int
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
	// Warnings say what was not scanned and why: a path named that yields no file, a submodule that is not
	// checked out, a repository git refuses (safe.directory).
	Warnings []string
	// Elapsed is how long the scan took.
	Elapsed time.Duration
}

// job is one input: a file, standard input, or a blob of a repository.
type job struct {
	path  string
	stdin bool
	// repoRoot and repoPath locate a file listed in a git work tree (Finding.RepoRoot, RepoPath);
	// findRoot asks for them to be found after the scan (a file named on the command line).
	repoRoot, repoPath string
	findRoot           bool
}

// limits bounds the findings kept, per file and in all.
type limits struct {
	perFile int
	total   int64
	kept    atomic.Int64
}

func newLimits(o Options) *limits {
	l := &limits{perFile: o.MaxFindingsPerFile, total: int64(o.MaxFindings)}
	if l.perFile <= 0 {
		l.perFile = DefaultMaxFindingsPerFile
	}
	if l.total <= 0 {
		l.total = DefaultMaxFindings
	}
	return l
}

// collector keeps the findings of one file or blob within the limits.
type collector struct {
	lim *limits
	wr  *workerResult
	n   int
}

func (c *collector) add(f Finding) {
	if c.n >= c.lim.perFile || c.lim.kept.Add(1) > c.lim.total {
		c.wr.truncated++
		if f.Valid {
			c.wr.truncatedKeys++
		}
		return
	}
	c.n++
	c.wr.findings = append(c.wr.findings, f)
}

// Scan scans paths: files, directories ("-" is standard input; name a file called "-" as "./-") and,
// with o.Git, the history of their repositories. Inside a git work tree a directory's files are those
// git lists: tracked files (`git ls-files --stage`) and untracked ones that no ignore rule matches (`git
// ls-files --others --exclude-standard`); a checked-out submodule or a nested repository is listed with
// its own rules, a submodule that is not checked out is skipped. Outside a work tree every file is scanned
// but .git directories. A path named on the command line is scanned whatever git ignores: a file, and
// a directory that git ignores (all of it). A root that is a symbolic link is followed; symbolic links
// inside directories are not, and no directory is entered twice. Binary files are skipped. The error is
// for what stops the whole scan (a path that does not exist, git failing on a repository); an unreadable
// file is recorded in Result.Problems, a path that yields no file in Result.Warnings.
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
	lim := newLimits(o)

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
		l := newLister(send, problem, res, &mu)
		for _, p := range paths {
			if p == "-" {
				if !send(job{path: "-", stdin: true}) {
					return
				}
				continue
			}
			if err := l.listRoot(ctx, p); err != nil {
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
				wr.scanFile(s, j, stdin, lim, problem)
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
	var findRoot []int // findings in files named on the command line
	for _, wr := range results {
		for i := range wr.findings {
			if wr.findRoots[i] {
				findRoot = append(findRoot, len(res.Findings)+i)
			}
		}
		res.Findings = append(res.Findings, wr.findings...)
		res.Files += wr.files
		res.Bytes += wr.bytes
		res.Binary += wr.binary
		res.Truncated += wr.truncated
		res.TruncatedKeys += wr.truncatedKeys
	}
	setRepoPaths(ctx, res.Findings, findRoot)

	if o.Git {
		seen := map[string]bool{}
		var repos []*repo
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
			hr, err := r.scanHistory(ctx, workers, bufSize, lim)
			if err != nil {
				return nil, err
			}
			res.Findings = append(res.Findings, hr.findings...)
			res.Blobs += hr.files
			res.BlobBytes += hr.bytes
			res.Binary += hr.binary
			res.Truncated += hr.truncated
			res.TruncatedKeys += hr.truncatedKeys
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

// setRepoPaths locates the findings at idx (in files named on the command line) in the git work tree
// they are in, with one `git rev-parse` per directory.
func setRepoPaths(ctx context.Context, fs []Finding, idx []int) {
	if len(idx) == 0 {
		return
	}
	git, err := exec.LookPath("git")
	if err != nil {
		return
	}
	type loc struct{ top, prefix string }
	dirs := map[string]*loc{}
	for _, i := range idx {
		f := &fs[i]
		dir := filepath.Dir(f.Path)
		l, ok := dirs[dir]
		if !ok {
			if wt, err := workTreeOf(ctx, git, dir); err == nil && wt != nil {
				l = &loc{top: wt.top, prefix: wt.prefix}
			}
			dirs[dir] = l
		}
		if l != nil {
			f.RepoRoot, f.RepoPath = l.top, l.prefix+filepath.ToSlash(filepath.Base(f.Path))
		}
	}
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
	findings      []Finding
	findRoots     []bool // per finding: in a file named on the command line (job.findRoot)
	files         int
	bytes         int64
	binary        int
	truncated     int
	truncatedKeys int
}

func (wr *workerResult) scanFile(s *stream, j job, stdin io.Reader, lim *limits, problem func(error)) {
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
	c := collector{lim: lim, wr: wr}
	n, err := s.scan(r, !j.stdin, func(buf []byte, m match) {
		f := finding(buf, m)
		f.Path, f.RepoRoot, f.RepoPath = j.path, j.repoRoot, j.repoPath
		c.add(f)
	})
	for len(wr.findRoots) < len(wr.findings) {
		wr.findRoots = append(wr.findRoots, j.findRoot)
	}
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

// lister lists the files of the paths named and sends them as jobs. It runs in one goroutine.
type lister struct {
	send    func(job) bool
	problem func(error)
	res     *Result
	mu      *sync.Mutex
	git     string // "" when git is not installed
	// visited holds every directory entered (by device and inode), so that none is entered twice: no
	// loop is possible, whatever git lists or the file system holds.
	visited map[fileID]bool
	sent    int // files sent so far
}

func newLister(send func(job) bool, problem func(error), res *Result, mu *sync.Mutex) *lister {
	l := &lister{send: send, problem: problem, res: res, mu: mu, visited: map[fileID]bool{}}
	if git, err := exec.LookPath("git"); err == nil {
		l.git = git
	}
	return l
}

var errStop = errors.New("stopped")

func (l *lister) warn(format string, a ...any) {
	l.mu.Lock()
	l.res.Warnings = append(l.res.Warnings, fmt.Sprintf(format, a...))
	l.mu.Unlock()
}

func (l *lister) sendJob(ctx context.Context, j job) error {
	if !l.send(j) {
		return ctx.Err()
	}
	l.sent++
	return nil
}

// listRoot lists a path named on the command line: a file is scanned whatever it is (git ignoring it or
// not, a symbolic link or not); a directory (or a symbolic link to one) is listed.
func (l *lister) listRoot(ctx context.Context, p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return l.sendJob(ctx, job{path: p, findRoot: true})
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return err
	}
	before := l.sent
	entered, wt, err := l.listDir(ctx, p, real, nil, true)
	if err != nil {
		return err
	}
	if entered && l.sent == before {
		switch {
		case wt != nil:
			l.warn("%s: git lists no file in it (it holds none, or every file in it is ignored or in a submodule that is not checked out): nothing scanned there; name a file to scan it anyway", p)
		default:
			l.warn("%s: no file in it: nothing scanned there", p)
		}
	}
	return nil
}

// workTree is where a directory is in a git work tree: its top level and the directory's path from there
// ("" or ending in "/").
type workTree struct {
	top, prefix string
}

// workTreeOf returns the work tree dir is in, nil when none (or git refuses it: err says why).
func workTreeOf(ctx context.Context, git, dir string) (*workTree, error) {
	out, err := gitOutput(ctx, git, dir, "rev-parse", "--is-inside-work-tree", "--show-toplevel", "--show-prefix")
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) < 2 || lines[0] != "true" {
		return nil, nil
	}
	wt := &workTree{top: lines[1]}
	if len(lines) > 2 {
		wt.prefix = lines[2]
	}
	return wt, nil
}

// listDir lists directory display (real is where it is, symbolic links resolved). parent is the work tree
// the directory was listed in, when it was (a submodule or a nested repository); explicit is for a
// directory named on the command line. entered is false when the directory was entered already.
func (l *lister) listDir(ctx context.Context, display, real string, parent *workTree, explicit bool) (entered bool, wt *workTree, err error) {
	if id, ok := dirID(real); ok {
		if l.visited[id] {
			return false, nil, nil
		}
		l.visited[id] = true
	}
	if l.git != "" {
		var werr error
		wt, werr = workTreeOf(ctx, l.git, real)
		var ge *gitError
		if werr != nil && errors.As(werr, &ge) && ge.dubious() {
			l.warn("%s: git refuses the repository it is in (not owned by you; see git's safe.directory): its files are scanned without git, ignored ones too", display)
		}
	}
	if wt == nil {
		return true, nil, l.walk(ctx, display, real, nil)
	}
	// Files from the top of the repository being scanned: the parent's, for a nested one.
	origin := wt
	if parent != nil {
		origin = parent
	}
	if explicit && l.ignored(ctx, real) {
		// Named on the command line, although git ignores it: all of it.
		return true, wt, l.walk(ctx, display, real, wt)
	}
	l.mu.Lock()
	l.res.GitWorkTrees++
	l.mu.Unlock()
	rel := func(name string) string { // the path from origin's top
		if parent == nil {
			return wt.prefix + name
		}
		if r, err := filepath.Rel(parent.top, filepath.Join(wt.top, filepath.FromSlash(wt.prefix+name))); err == nil {
			return filepath.ToSlash(r)
		}
		return wt.prefix + name
	}
	tracked, err := l.lsFiles(ctx, real, "--cached", "--stage")
	if err != nil {
		return true, wt, err
	}
	others, err := l.lsFiles(ctx, real, "--others", "--exclude-standard")
	if err != nil {
		return true, wt, err
	}
	var dirs []string
	last := ""
	for _, e := range tracked {
		meta, name, ok := strings.Cut(e, "\t")
		if !ok || !usable(name) || name == last {
			continue // a conflicted file has an entry per stage
		}
		last = name
		mode, _, _ := strings.Cut(meta, " ")
		full := filepath.Join(display, filepath.FromSlash(name))
		fi, err := os.Lstat(filepath.Join(real, filepath.FromSlash(name)))
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				l.problem(err)
			}
			continue
		}
		switch {
		case mode == "160000": // a submodule: scanned with its own rules if checked out
			if !fi.IsDir() {
				continue
			}
			if _, err := os.Lstat(filepath.Join(real, filepath.FromSlash(name), ".git")); err != nil {
				l.warn("%s: a submodule that is not checked out (git submodule update --init): not scanned", full)
				continue
			}
			dirs = append(dirs, name)
		case fi.Mode().IsRegular():
			if err := l.sendJob(ctx, job{path: full, repoRoot: origin.top, repoPath: rel(name)}); err != nil {
				return true, wt, err
			}
		}
	}
	for _, name := range others {
		isDir := strings.HasSuffix(name, "/")
		name = strings.TrimSuffix(name, "/")
		if !usable(name) {
			continue
		}
		full := filepath.Join(display, filepath.FromSlash(name))
		fi, err := os.Lstat(filepath.Join(real, filepath.FromSlash(name)))
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				l.problem(err)
			}
			continue
		}
		switch {
		case fi.IsDir(): // a repository of its own inside this one (git lists it as "name/")
			if isDir {
				dirs = append(dirs, name)
			}
		case fi.Mode().IsRegular():
			if err := l.sendJob(ctx, job{path: full, repoRoot: origin.top, repoPath: rel(name)}); err != nil {
				return true, wt, err
			}
		}
	}
	for _, name := range dirs {
		full := filepath.Join(display, filepath.FromSlash(name))
		if _, _, err := l.listDir(ctx, full, filepath.Join(real, filepath.FromSlash(name)), origin, false); err != nil {
			return true, wt, err
		}
	}
	return true, wt, nil
}

// usable reports whether a name git listed is a path below the directory listed: not empty, not the
// directory itself ("." or "./", as git lists an uninitialised submodule from inside it), not above it.
func usable(name string) bool {
	if name == "" {
		return false
	}
	clean := filepath.Clean(filepath.FromSlash(name))
	return clean != "." && clean != ".." && !strings.HasPrefix(clean, ".."+string(filepath.Separator)) && !filepath.IsAbs(clean)
}

// ignored reports whether git ignores directory dir (itself, or as inside an ignored directory).
func (l *lister) ignored(ctx context.Context, dir string) bool {
	cmd := gitCommand(ctx, l.git, dir, "check-ignore", "-q", ".")
	return cmd.Run() == nil
}

// lsFiles runs `git ls-files -z args` in dir and returns its entries.
func (l *lister) lsFiles(ctx context.Context, dir string, args ...string) ([]string, error) {
	out, err := gitOutput(ctx, l.git, dir, append([]string{"ls-files", "-z"}, args...)...)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, n := range strings.Split(string(out), "\x00") {
		if n != "" {
			names = append(names, n)
		}
	}
	return names, nil
}

// walk sends every regular file under real (shown under display) but those in .git directories, without
// following symbolic links or entering a directory twice. wt, when the directory is in a work tree, locates
// the files in it.
func (l *lister) walk(ctx context.Context, display, real string, wt *workTree) error {
	err := filepath.WalkDir(real, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			l.problem(err)
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			if path == real {
				return nil
			}
			if d.Name() == ".git" {
				return fs.SkipDir
			}
			if id, ok := dirID(path); ok {
				if l.visited[id] {
					return fs.SkipDir
				}
				l.visited[id] = true
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(real, path)
		if err != nil {
			return err
		}
		j := job{path: filepath.Join(display, rel)}
		if wt != nil {
			j.repoRoot, j.repoPath = wt.top, wt.prefix+filepath.ToSlash(rel)
		}
		if err := l.sendJob(ctx, j); err != nil {
			return errStop
		}
		return nil
	})
	if errors.Is(err, errStop) {
		return ctx.Err()
	}
	return err
}
