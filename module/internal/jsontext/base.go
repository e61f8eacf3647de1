package jsontext

import (
	"encoding/binary"
	"errors"
	"strings"
)

// The errors ParseBase returns.
var (
	// ErrNotAbsolute is returned for a base without a scheme followed by
	// "://" (and, unless BaseOptions.Lax is set, with a scheme that is not
	// an RFC 3986 scheme).
	ErrNotAbsolute = errors.New("jsontext: the base URL is not absolute")
	// ErrNoHost is returned for a base with an empty host.
	ErrNoHost = errors.New("jsontext: the base URL has no host")
	// ErrQueryOrFragment is returned for a base with a query or a fragment.
	ErrQueryOrFragment = errors.New("jsontext: the base URL has a query or fragment")
)

// BaseOptions selects how a Base matches URLs.
type BaseOptions struct {
	// Fragment lets '#' end the matched base, as well as the end of the
	// URL, '/' and '?'.
	Fragment bool
	// Lax selects the looser rules that the FHIR rewriter has always used:
	// the scheme is not checked by ParseBase; schemes and hosts are compared
	// with Unicode case folding rather than ASCII case folding only; and a
	// default port is dropped whenever the host ends with it, even when what
	// precedes is not a plain host name.
	Lax bool
}

// Base is an absolute base URL, such as "http://127.0.0.1:8042/dicom-web",
// prepared for recognising the URLs that start with it. Build it with
// ParseBase.
type Base struct {
	scheme string // lower case
	host   string // lower case, default port dropped
	path   string // without trailing slash
	opts   BaseOptions
	ascii  bool   // scheme and host are ASCII
	lead   string // scheme "://" host when ascii, which an ASCII match starts with
}

// ParseBase checks and prepares the base URL from, which must have a scheme,
// "://" and a host, and no query or fragment; a trailing slash is ignored.
// It returns ErrNotAbsolute, ErrNoHost or ErrQueryOrFragment when from is
// not such a URL.
func ParseBase(from string, opts BaseOptions) (Base, error) {
	i := strings.Index(from, "://")
	if i <= 0 || !opts.Lax && !ValidScheme(from[:i]) {
		return Base{}, ErrNotAbsolute
	}
	rest := from[i+3:]
	j := strings.IndexAny(rest, "/?#")
	if j < 0 {
		j = len(rest)
	}
	scheme := strings.ToLower(from[:i])
	host := strings.ToLower(rest[:j])
	if opts.Lax {
		host = laxHost(scheme, host)
	} else {
		host = normalizeHost(scheme, host)
	}
	if host == "" {
		return Base{}, ErrNoHost
	}
	path := rest[j:]
	if strings.ContainsAny(path, "?#") {
		return Base{}, ErrQueryOrFragment
	}
	b := Base{scheme: scheme, host: host, path: strings.TrimRight(path, "/"), opts: opts, ascii: asciiOnly([]byte(scheme + host))}
	if b.ascii {
		b.lead = scheme + "://" + host
	}
	return b, nil
}

// ValidScheme reports whether s is an RFC 3986 scheme: a letter followed by
// letters, digits, '+', '-' or '.'.
func ValidScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return s != ""
}

// Match reports whether the URL v starts with the base, and returns the
// length of the matched prefix of v. The scheme and the host are compared
// without regard to case, a default port (80 for http, 443 for https) being
// the same as none; the path is compared exactly; and the prefix must be
// followed by the end of v, '/' or '?' (or '#' with BaseOptions.Fragment).
// So the base "http://h/dicom-web" matches "http://H:80/dicom-web/studies/1"
// but not "http://h/dicom-web2/studies/1" nor "http://user@h/dicom-web".
func (b *Base) Match(v []byte) (int, bool) {
	// Most URLs differ from the base early: one that starts with other
	// ASCII than scheme://host (in any case) is no match. A matching host
	// may only have a default port after it, so lead is its prefix. A
	// non-ASCII byte could fold to ASCII and goes the long way.
	if len(v) < len(b.lead) {
		return 0, false
	}
	j := 0
	if string(v[:len(b.lead)]) == b.lead {
		j = len(b.lead) // as configured, which is how servers write it
	}
	for ; j < len(b.lead); j++ {
		c := v[j]
		if c >= 0x80 {
			break
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != b.lead[j] {
			return 0, false
		}
	}
	if j > 0 && j == len(b.lead) && (j == len(v) || v[j] == '/' || v[j] == '?' || v[j] == '#') {
		// The scheme and the host are the base's, without a port: the
		// common case, where only the path is left to compare.
		return b.matchPath(v, j)
	}
	n := len(b.scheme)
	if len(v) < n+3 || string(v[n:n+3]) != "://" {
		return 0, false
	}
	a := n + 3
	e := a
	for e < len(v) && v[e] != '/' && v[e] != '?' && v[e] != '#' {
		e++
	}
	if b.opts.Lax && b.ascii && asciiOnly(v[:e]) {
		// Unicode case folding is ASCII case folding on ASCII text: the
		// common case, compared without allocating.
		h := v[a:e]
		switch {
		case b.scheme == "http" && len(h) >= 3 && string(h[len(h)-3:]) == ":80":
			h = h[:len(h)-3]
		case b.scheme == "https" && len(h) >= 4 && string(h[len(h)-4:]) == ":443":
			h = h[:len(h)-4]
		}
		if !EqualFoldASCII(v[:n], b.scheme) || !EqualFoldASCII(h, b.host) {
			return 0, false
		}
	} else if b.opts.Lax {
		if !strings.EqualFold(string(v[:n]), b.scheme) ||
			!strings.EqualFold(laxHost(b.scheme, strings.ToLower(string(v[a:e]))), b.host) {
			return 0, false
		}
	} else if !EqualFoldASCII(v[:n], b.scheme) || !EqualFoldASCII(normalizeHost(b.scheme, v[a:e]), b.host) {
		return 0, false
	}
	return b.matchPath(v, e)
}

// matchPath is the end of Match, once the authority of v, which ends at e,
// is known to be the base's: the path, and what may follow it.
func (b *Base) matchPath(v []byte, e int) (int, bool) {
	k := e + len(b.path)
	if len(v) < k || string(v[e:k]) != b.path {
		return 0, false
	}
	if k < len(v) && v[k] != '/' && v[k] != '?' && (v[k] != '#' || !b.opts.Fragment) {
		return 0, false
	}
	return k, true
}

// MatchContent is Match for a URL found in a JSON string: raw is the string
// content as written, between the quotes, escaped reports whether it has
// escapes, and v is its unescaped value (raw itself when not escaped). It
// returns the length in raw of the part that stands for the matched prefix.
// A prefix that ends inside one escape does not match.
func (b *Base) MatchContent(raw, v []byte, escaped bool) (int, bool) {
	k, ok := b.Match(v)
	if !ok || !escaped {
		return k, ok
	}
	if k = RawOffset(raw, k); k < 0 {
		return 0, false
	}
	return k, true
}

// normalizeHost drops a default port (80 for http, 443 for https) from an
// authority whose scheme is already lower-cased, when what precedes the port
// is a plain host name or a bracketed IPv6 address. It does not change case.
func normalizeHost[S ~string | ~[]byte](scheme string, host S) S {
	var port string
	switch scheme {
	case "http":
		port = ":80"
	case "https":
		port = ":443"
	default:
		return host
	}
	n := len(host) - len(port)
	if n <= 0 || string(host[n:]) != port {
		return host
	}
	h := host[:n]
	if h[n-1] == ']' {
		return h
	}
	for i := 0; i < n; i++ {
		if h[i] == ':' {
			return host // not a host:port authority; leave it alone
		}
	}
	return h
}

// asciiOnly reports whether b is all ASCII.
func asciiOnly(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// laxHost drops a default port whenever host ends with it.
func laxHost(scheme, host string) string {
	switch {
	case scheme == "http" && strings.HasSuffix(host, ":80"):
		return strings.TrimSuffix(host, ":80")
	case scheme == "https" && strings.HasSuffix(host, ":443"):
		return strings.TrimSuffix(host, ":443")
	}
	return host
}

// EqualFoldASCII reports whether a and b are equal under ASCII case folding
// only, so that, for instance, the Kelvin sign does not match the letter k.
func EqualFoldASCII[A, B ~string | ~[]byte](a A, b B) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// Quick rules out, from their first eight bytes, most of the strings that
// a Base does not match: a FHIR body has many strings that start like a
// URL, few that start like the base. Get it from Base.Quick.
type Quick struct {
	pat uint64 // the first eight bytes of scheme://host, lower case, with bit 5 set in each
	ok  bool   // pat can be used
}

// Quick returns the Base's Quick. It can rule out nothing (MayMatch always
// true) when scheme://host is shorter than eight bytes or has, among them,
// a byte other than a letter, a digit, ':', '/', '.' and '-': those are
// the bytes that setting bit 5 leaves apart from every other byte a JSON
// string holds unescaped (a control byte cannot be there).
func (b *Base) Quick() Quick {
	if len(b.lead) < 8 {
		return Quick{}
	}
	for _, c := range []byte(b.lead[:8]) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == ':' || c == '/' || c == '.' || c == '-') {
			return Quick{}
		}
	}
	return Quick{pat: binary.LittleEndian.Uint64([]byte(b.lead[:8])) | 0x20*ones, ok: true}
}

// MayMatch reports whether the JSON string content raw (between the quotes,
// as written; escaped says whether it has escapes) may be a URL the Base
// matches. When it reports false, Match of its value is false.
func (q Quick) MayMatch(raw []byte, escaped bool) bool {
	if !q.ok || escaped || len(raw) < 8 {
		return true
	}
	x := binary.LittleEndian.Uint64(raw)
	// ASCII letters compare without case; a non-ASCII byte might fold to
	// ASCII, and is left to Match.
	return x&highs != 0 || x|0x20*ones == q.pat
}
