// Package keys defines keysmith's API key format and the operations on it: generation from crypto/rand,
// the offline checksum, parsing, hashing and constant-time comparison.
//
// A key looks like `ks_live_<body>`: a prefix of 2 to 8 lowercase alphanumerics, the environment (`live`
// or `test`), and a 36-character base62 body made of 30 random characters (about 178 bits) followed by a
// 6-character base62 CRC32 of those 30 characters. The checksum lets a secret scanner reject almost every
// false positive without asking anyone (the design of GitHub's tokens). It is not a security feature: the
// strength of a key is its random part.
//
// The exact pattern, for scanners:
//
//	\b[a-z0-9]{2,8}_(live|test)_[0-9A-Za-z]{36}\b
//
// Nothing in this package logs or returns key material in an error.
package keys

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

const (
	// RandomLength is the number of random base62 characters in a key (log2(62^30) ≈ 178.6 bits).
	RandomLength = 30
	// ChecksumLength is the number of base62 characters of the CRC32 checksum.
	ChecksumLength = 6
	// BodyLength is the length of the part after the environment.
	BodyLength = RandomLength + ChecksumLength
	// MinPrefixLength and MaxPrefixLength bound the configurable prefix.
	MinPrefixLength = 2
	MaxPrefixLength = 8
	// DefaultPrefix is the prefix used when none is configured.
	DefaultPrefix = "ks"
	// HashPrefix starts every stored hash.
	HashPrefix = "sha256:"
	// IDLength is the length of a key id: hex characters of the key's SHA-256.
	IDLength = 12
)

// Pattern is the regular expression every keysmith key matches (anchored).
const Pattern = `^[a-z0-9]{2,8}_(live|test)_[0-9A-Za-z]{36}$`

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// Environments a key can belong to.
const (
	Live = "live"
	Test = "test"
)

// Errors returned by Parse and ValidatePrefix. They never contain the candidate key.
var (
	ErrMalformed = errors.New("malformed key")
	ErrChecksum  = errors.New("key checksum does not match")
	ErrPrefix    = errors.New("key prefix must be 2 to 8 lowercase letters or digits")
	ErrEnv       = errors.New("key environment must be live or test")
)

// Key is a parsed key. Plaintext returns the key itself; String and GoString are redacted, so that
// printing or logging a Key by accident shows no secret.
type Key struct {
	Prefix      string
	Environment string
	// Body is the random part followed by the checksum.
	Body string
}

// Plaintext returns the full key. It is a secret: never log it.
func (k Key) Plaintext() string { return k.Prefix + "_" + k.Environment + "_" + k.Body }

// String returns the key with its body redacted.
func (k Key) String() string { return k.Prefix + "_" + k.Environment + "_[redacted]" }

// GoString returns the key with its body redacted (for %#v).
func (k Key) GoString() string { return k.String() }

// ValidatePrefix reports whether p can start a key.
func ValidatePrefix(p string) error {
	if len(p) < MinPrefixLength || len(p) > MaxPrefixLength {
		return ErrPrefix
	}
	for i := 0; i < len(p); i++ {
		if !isLowerAlnum(p[i]) {
			return ErrPrefix
		}
	}
	return nil
}

func validateEnv(env string) error {
	if env != Live && env != Test {
		return ErrEnv
	}
	return nil
}

// Generate returns a new key read from crypto/rand.
func Generate(prefix, env string) (Key, error) {
	return generate(rand.Reader, prefix, env)
}

func generate(r io.Reader, prefix, env string) (Key, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return Key{}, err
	}
	if err := validateEnv(env); err != nil {
		return Key{}, err
	}
	body := make([]byte, BodyLength)
	if err := randomBase62(r, body[:RandomLength]); err != nil {
		return Key{}, fmt.Errorf("reading randomness: %w", err)
	}
	putChecksum(body[RandomLength:], body[:RandomLength])
	return Key{Prefix: prefix, Environment: env, Body: string(body)}, nil
}

// randomBase62 fills dst with uniformly distributed base62 characters, rejecting bytes >= 248
// (the largest multiple of 62 that fits a byte) so that no character is more likely than another.
func randomBase62(r io.Reader, dst []byte) error {
	var buf [64]byte
	n := 0
	for n < len(dst) {
		if _, err := io.ReadFull(r, buf[:]); err != nil {
			return err
		}
		for _, b := range buf {
			if b >= 248 {
				continue
			}
			dst[n] = base62[b%62]
			n++
			if n == len(dst) {
				break
			}
		}
	}
	return nil
}

// putChecksum writes the CRC32 (IEEE) of random as ChecksumLength base62 digits, most significant first.
func putChecksum[T string | []byte](dst []byte, random T) {
	v := crcIEEE(random)
	for i := ChecksumLength - 1; i >= 0; i-- {
		dst[i] = base62[v%62]
		v /= 62
	}
}

// Parse checks the format and the checksum of s without any lookup.
func Parse(s string) (Key, error) {
	prefix, env, body, ok := split(s)
	if !ok {
		return Key{}, ErrMalformed
	}
	if !checksumMatches(body) {
		return Key{}, ErrChecksum
	}
	return Key{Prefix: prefix, Environment: env, Body: body}, nil
}

// Valid reports whether s is a well-formed key with a correct checksum. It does not allocate.
func Valid(s string) bool {
	_, _, body, ok := split(s)
	return ok && checksumMatches(body)
}

func split(s string) (prefix, env, body string, ok bool) {
	// <prefix>_<env>_<body>: the environment is always 4 characters.
	n := len(s)
	if n < MinPrefixLength+1+4+1+BodyLength || n > MaxPrefixLength+1+4+1+BodyLength {
		return "", "", "", false
	}
	body = s[n-BodyLength:]
	if s[n-BodyLength-1] != '_' || s[n-BodyLength-6] != '_' {
		return "", "", "", false
	}
	env = s[n-BodyLength-5 : n-BodyLength-1]
	prefix = s[:n-BodyLength-6]
	if env != Live && env != Test {
		return "", "", "", false
	}
	for i := 0; i < len(prefix); i++ {
		if !isLowerAlnum(prefix[i]) {
			return "", "", "", false
		}
	}
	for i := 0; i < len(body); i++ {
		if decode62(body[i]) < 0 {
			return "", "", "", false
		}
	}
	return prefix, env, body, true
}

func checksumMatches(body string) bool {
	var want [ChecksumLength]byte
	putChecksum(want[:], body[:RandomLength])
	return string(want[:]) == body[RandomLength:]
}

// crcIEEE is crc32.ChecksumIEEE for strings and byte slices alike, without converting (and allocating).
func crcIEEE[T string | []byte](p T) uint32 {
	crc := ^uint32(0)
	for i := 0; i < len(p); i++ {
		crc = crc32.IEEETable[byte(crc)^p[i]] ^ (crc >> 8)
	}
	return ^crc
}

func isLowerAlnum(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') }

func decode62(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'Z':
		return int(c-'A') + 10
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 36
	}
	return -1
}

// Digest is the SHA-256 of a key.
type Digest [sha256.Size]byte

// Sum returns the SHA-256 digest of key. Keys fit a stack buffer, so hashing one does not allocate.
func Sum(key string) Digest {
	var buf [64]byte
	if len(key) <= len(buf) {
		n := copy(buf[:], key)
		return sha256.Sum256(buf[:n])
	}
	return sha256.Sum256([]byte(key))
}

// Hash returns the stored form of a key's hash: "sha256:<hex>".
func Hash(key string) string { return Sum(key).String() }

// String returns "sha256:<hex>".
func (d Digest) String() string { return HashPrefix + hex.EncodeToString(d[:]) }

// ID returns the public identifier of the key with this digest: the first IDLength hex characters.
func (d Digest) ID() string { return hex.EncodeToString(d[:IDLength/2]) }

// ID returns the public identifier of key. Anyone who holds the key can compute it; it reveals nothing
// useful about the key.
func ID(key string) string { return Sum(key).ID() }

// ParseHash reads a stored "sha256:<hex>" hash.
func ParseHash(s string) (Digest, error) {
	var d Digest
	if len(s) != len(HashPrefix)+2*sha256.Size || s[:len(HashPrefix)] != HashPrefix {
		return d, errors.New("hash must be sha256:<64 hex characters>")
	}
	if _, err := hex.Decode(d[:], []byte(s[len(HashPrefix):])); err != nil {
		return d, errors.New("hash must be sha256:<64 hex characters>")
	}
	return d, nil
}

// Equal compares two digests in constant time.
func (d Digest) Equal(o Digest) bool { return subtle.ConstantTimeCompare(d[:], o[:]) == 1 }

// Matches reports, in constant time for keys of equal length, whether key hashes to the stored hash.
func Matches(key, storedHash string) bool {
	d, err := ParseHash(storedHash)
	if err != nil {
		return false
	}
	return Sum(key).Equal(d)
}
