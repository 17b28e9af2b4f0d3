package keys

import "regexp"

// ShapePattern is Pattern unanchored: it finds a key within text (a log line, a message, a URL). A match
// is a key when Valid says so (its checksum).
const ShapePattern = `[a-z0-9]{2,8}_(live|test)_[0-9A-Za-z]{36}`

// NearShapePattern finds what Redact replaces: a key's environment between underscores followed by 20 or
// more base62 characters, with the prefix if any, so that a key with a character too many or too few,
// cut short, run into the text after it, or whose prefix was swallowed by what precedes it (another
// near-key: "xx_live_<20 characters>ks_live_<body>"), is caught as well as a key.
const NearShapePattern = `[a-z0-9]{0,8}_(live|test)_[0-9A-Za-z]{20,}`

// Redacted replaces what Redact removes.
const Redacted = "<redacted>"

var (
	shape     = regexp.MustCompile(ShapePattern)
	nearShape = regexp.MustCompile(NearShapePattern)
)

// Redact returns s with every substring shaped like a key (NearShapePattern: valid checksum or not)
// replaced by "<redacted>". The replacement holds no character of the pattern's classes next to its
// ends, so the result has none left (HasKeyShape is false) and Redact(Redact(s)) == Redact(s).
func Redact(s string) string {
	if !HasKeyShape(s) {
		return s
	}
	return nearShape.ReplaceAllLiteralString(s, Redacted)
}

// RedactBytes is Redact for a byte slice (JSON, say: the key alphabet needs no escaping, so redacting
// encoded JSON keeps it valid). It returns b itself when there is nothing to replace.
func RedactBytes(b []byte) []byte {
	if !nearShape.Match(b) {
		return b
	}
	return nearShape.ReplaceAllLiteral(b, []byte(Redacted))
}

// HasKeyShape reports whether s holds anything Redact would replace.
func HasKeyShape(s string) bool { return nearShape.MatchString(s) }

// ContainsKey reports whether s holds a key: a substring of ShapePattern with a valid checksum.
func ContainsKey(s string) bool { return CountKeys(s) > 0 }

// CountKeys returns how many keys with a valid checksum s holds (never the keys themselves, so that a
// failing assertion cannot print one).
func CountKeys(s string) int {
	n := 0
	for _, m := range shape.FindAllString(s, -1) {
		if Valid(m) {
			n++
		}
	}
	return n
}
