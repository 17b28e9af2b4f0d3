// Package scan finds keysmith keys in files, standard input and git history, offline: it matches the
// documented pattern (internal/keys)
//
//	\b[a-z0-9]{2,8}_(live|test)_[0-9A-Za-z]{36}\b
//
// checks each match's checksum without asking anyone, and reports every match with its location, the
// key's public id and the key redacted (its prefix and the first few characters of its body). A match
// whose checksum is wrong is reported as not a key. The SHA-256 of each key is kept in memory only, for a
// lookup by the caller; nothing in this package prints, logs or returns a whole key.
//
// The hot loop uses no regular expression: it looks for the separators `_live_` and `_test_` with
// bytes.Index (vectorised) and validates the bytes around each occurrence, in buffers of 1 MiB, with one
// worker per CPU (GOMAXPROCS).
package scan

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"io"

	"github.com/keysmith-dev/keysmith/internal/keys"
)

const (
	sepLen = len("_live_")
	// lookBehind is how far before a separator a match can start, plus the character before it that the
	// leading \b needs; lookAhead is the separator, the body and the character after it.
	lookBehind = keys.MaxPrefixLength + 1
	lookAhead  = sepLen + keys.BodyLength + 1
	// MaxMatchLength is the length of the longest key.
	MaxMatchLength = keys.MaxPrefixLength + sepLen + keys.BodyLength
	// RedactedBodyChars is how many characters of a key's body a redacted key shows.
	RedactedBodyChars = 4
	// BinaryProbe is how many leading bytes are searched for a NUL byte to tell a binary file, as git does
	// (FIRST_FEW_BYTES in git's xdiff-interface.c).
	BinaryProbe = 8000
	// DefaultBufferSize is the read buffer of each worker.
	DefaultBufferSize = 1 << 20
)

var (
	sepLive = []byte("_" + keys.Live + "_")
	sepTest = []byte("_" + keys.Test + "_")
)

// Finding is one match of the key pattern.
type Finding struct {
	// Path is the file as the caller named it (joined with the directory it was found in), "-" for
	// standard input, or, for a blob of git history, the path it had in the commit that added it (from
	// the repository's top level, joined with that top level as given).
	Path string
	// Blob is, for git history, the blob's object id; Commit the oldest commit that added it ("" for
	// files, or when no commit's diff adds it).
	Blob   string
	Commit string
	// Line and Column are 1-based; Column counts bytes from the start of the line, ColumnUTF16 UTF-16
	// code units (SARIF's default columnKind, and what editors count): a character of 2 or 3 bytes of
	// UTF-8 is one unit, one of 4 bytes two (invalid UTF-8 is counted approximately).
	Line        int
	Column      int
	ColumnUTF16 int
	// RepoRoot is the top of the git work tree the file is in (absolute, as git names it) and RepoPath
	// its path from there with forward slashes, for a file found in a work tree and for a blob of git
	// history (the path it had in the commit that added it); both empty otherwise (standard input, a
	// file outside any work tree, a bare repository).
	RepoRoot string
	RepoPath string
	// Prefix and Environment are the key's first two parts.
	Prefix      string
	Environment string
	// Redacted is the key with all but the first RedactedBodyChars characters of its body cut
	// (`ks_live_4Fk3…`).
	Redacted string
	// Valid is whether the checksum matches: a match with a wrong checksum is not a key.
	Valid bool

	digest keys.Digest
}

// Digest is the SHA-256 of the key (zero when the checksum is wrong). It exists only in memory, so that a
// caller can look the key up by its stored hash.
func (f *Finding) Digest() keys.Digest { return f.digest }

// ID is the key's public id ("" when the checksum is wrong: it is not a key).
func (f *Finding) ID() string {
	if !f.Valid {
		return ""
	}
	return f.digest.ID()
}

// Location is path:line:column, with the commit in front for a blob of git history (commit:path:line:column).
func (f *Finding) Location() string {
	loc := f.Path + ":" + itoa(f.Line) + ":" + itoa(f.Column)
	switch {
	case f.Commit != "":
		loc = short(f.Commit) + ":" + loc
	case f.Blob != "":
		loc = "blob " + short(f.Blob) + ":" + loc
	}
	return loc
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

func isLowerAlnum(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') }

func isBase62(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
}

// isWord is \w of regexp: the characters between which \b finds no boundary.
func isWord(c byte) bool { return isBase62(c) || c == '_' }

// matchAt reports the match, if any, whose separator starts at i. buf must hold lookBehind bytes before i
// (or start where the input starts) and lookAhead bytes from i (or end where the input ends).
func matchAt(buf []byte, i int) (start, end int, ok bool) {
	j := i
	for j > 0 && i-j <= keys.MaxPrefixLength && isLowerAlnum(buf[j-1]) {
		j--
	}
	if n := i - j; n < keys.MinPrefixLength || n > keys.MaxPrefixLength {
		return 0, 0, false
	}
	if j > 0 && isWord(buf[j-1]) {
		return 0, 0, false
	}
	b, e := i+sepLen, i+sepLen+keys.BodyLength
	if e > len(buf) {
		return 0, 0, false
	}
	for k := b; k < e; k++ {
		if !isBase62(buf[k]) {
			return 0, 0, false
		}
	}
	if e < len(buf) && isWord(buf[e]) {
		return 0, 0, false
	}
	return j, e, true
}

// separators yields the occurrences of _live_ and _test_ in buf from `from`, in order, below limit.
type separators struct {
	buf              []byte
	nextLive, nextTe int // absolute positions in buf, or -1 when there are no more
}

func newSeparators(buf []byte, from int) separators {
	s := separators{buf: buf}
	s.nextLive = indexFrom(buf, sepLive, from)
	s.nextTe = indexFrom(buf, sepTest, from)
	return s
}

func indexFrom(buf, sep []byte, from int) int {
	if from >= len(buf) {
		return -1
	}
	k := bytes.Index(buf[from:], sep)
	if k < 0 {
		return -1
	}
	return from + k
}

// next returns the next occurrence below limit, or -1.
func (s *separators) next(limit int) int {
	var i int
	switch {
	case s.nextLive < 0 && s.nextTe < 0:
		return -1
	case s.nextTe < 0 || (s.nextLive >= 0 && s.nextLive < s.nextTe):
		i = s.nextLive
		if i >= limit {
			return -1
		}
		s.nextLive = indexFrom(s.buf, sepLive, i+1)
	default:
		i = s.nextTe
		if i >= limit {
			return -1
		}
		s.nextTe = indexFrom(s.buf, sepTest, i+1)
	}
	return i
}

// match is a match in a buffer, with its position in the whole input.
type match struct {
	start, end   int // in the buffer
	line, column int
	column16     int
}

// lines turns absolute offsets into lines and columns, counting newlines only up to where it was asked.
type lines struct {
	counted int64 // offset up to which newlines are counted
	line    int   // line number (1-based) at counted
	lastNL  int64 // offset of the last newline before counted, -1 if none
	// adj16 is, for the bytes of the line from lastNL to counted, how many more bytes of UTF-8 they are
	// than UTF-16 code units.
	adj16 int
}

func newLines() lines { return lines{line: 1, lastNL: -1} }

// advance counts the newlines of seg, which starts at offset `counted`.
func (l *lines) advance(seg []byte) {
	if n := bytes.Count(seg, []byte{'\n'}); n > 0 {
		l.line += n
		i := bytes.LastIndexByte(seg, '\n')
		l.lastNL = l.counted + int64(i)
		l.adj16 = utf16Excess(seg[i+1:])
	} else {
		l.adj16 += utf16Excess(seg)
	}
	l.counted += int64(len(seg))
}

// at returns the match at absolute offset abs (where counted is now).
func (l *lines) at(start, end int, abs int64) match {
	col := int(abs - l.lastNL)
	return match{start: start, end: end, line: l.line, column: col, column16: col - l.adj16}
}

// utf16Excess returns how many more bytes b is in UTF-8 than in UTF-16 code units: one for each
// continuation byte (10xxxxxx), less one for each leading byte of a 4-byte sequence (two units). ASCII
// is skipped 8 bytes at a time.
func utf16Excess(b []byte) int {
	n, i := 0, 0
	for ; i+8 <= len(b); i += 8 {
		if binary.LittleEndian.Uint64(b[i:])&0x8080808080808080 == 0 {
			continue
		}
		for _, c := range b[i : i+8] {
			n += excess(c)
		}
	}
	for _, c := range b[i:] {
		n += excess(c)
	}
	return n
}

func excess(c byte) int {
	switch {
	case c < 0x80:
		return 0
	case c < 0xC0:
		return 1
	case c >= 0xF0 && c < 0xF8:
		return -1
	}
	return 0
}

// stream finds the matches of one input read through a buffer. emit gets each match with the buffer it is
// in; the buffer is reused after emit returns.
type stream struct {
	buf []byte
}

func newStream(size int) *stream {
	if size < 2*(lookBehind+lookAhead) {
		size = 2 * (lookBehind + lookAhead)
	}
	return &stream{buf: make([]byte, size)}
}

// errBinary is returned by scan when the input's first BinaryProbe bytes hold a NUL byte.
var errBinary = binaryError{}

type binaryError struct{}

func (binaryError) Error() string { return "binary" }

// scan reads r to its end, calling emit for each match; it returns the number of bytes read. With
// skipBinary, it stops at once with errBinary when the input looks binary.
func (s *stream) scan(r io.Reader, skipBinary bool, emit func(buf []byte, m match)) (int64, error) {
	buf := s.buf
	var (
		n     int   // bytes in buf
		base  int64 // offset of buf[0] in the input
		from  int   // first separator position not yet looked at
		total int64
		first = true
		ln    = newLines()
	)
	for {
		// Fill the buffer.
		eof := false
		for n < len(buf) {
			k, err := r.Read(buf[n:])
			n += k
			total += int64(k)
			if err == io.EOF {
				eof = true
				break
			}
			if err != nil {
				return total, err
			}
		}
		if first {
			first = false
			if skipBinary && bytes.IndexByte(buf[:min(n, BinaryProbe)], 0) >= 0 {
				return total, errBinary
			}
		}
		limit := n
		if !eof {
			limit = n - lookAhead + 1
		}
		seps := newSeparators(buf[:n], from)
		for i := seps.next(limit); i >= 0; i = seps.next(limit) {
			start, end, ok := matchAt(buf[:n], i)
			if !ok {
				continue
			}
			abs := base + int64(start)
			ln.advance(buf[ln.counted-base : start])
			emit(buf[:n], ln.at(start, end, abs))
		}
		if eof {
			return total, nil
		}
		// Keep what the separators not yet looked at may need before them.
		keep := limit - lookBehind
		if c := base + int64(keep); ln.counted < c {
			ln.advance(buf[ln.counted-base : keep])
		}
		copy(buf, buf[keep:n])
		n -= keep
		base += int64(keep)
		from = limit - keep
	}
}

// finding builds the Finding of a match: the redacted key, whether its checksum holds and, if so, its
// digest. The plaintext stays in buf.
func finding(buf []byte, m match) Finding {
	raw := buf[m.start:m.end]
	body := len(raw) - keys.BodyLength
	f := Finding{
		Line: m.line, Column: m.column, ColumnUTF16: m.column16,
		Prefix:      string(raw[:body-sepLen]),
		Environment: string(raw[body-sepLen+1 : body-1]),
		Redacted:    string(raw[:body+RedactedBodyChars]) + "…",
	}
	if keys.Valid(string(raw)) {
		f.Valid = true
		f.digest = sha256.Sum256(raw)
	}
	return f
}

// Find returns the matches in data, a whole input, in order.
func Find(data []byte) []Finding {
	var out []Finding
	scanAll(data, func(buf []byte, m match) { out = append(out, finding(buf, m)) })
	return out
}

// scanAll scans data held whole in memory, without copying it.
func scanAll(data []byte, emit func([]byte, match)) {
	ln := newLines()
	seps := newSeparators(data, 0)
	for i := seps.next(len(data)); i >= 0; i = seps.next(len(data)) {
		start, end, ok := matchAt(data, i)
		if !ok {
			continue
		}
		ln.advance(data[ln.counted:start])
		emit(data, ln.at(start, end, int64(start)))
	}
}
