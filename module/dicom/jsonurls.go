package dicom

import (
	"errors"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Rebase is one URL rewriting rule for RewriteURLs: a URL that starts with
// the base From is rewritten to start with To instead.
type Rebase struct {
	// From is an archive's base URL, absolute, such as
	// "http://127.0.0.1:8042/dicom-web". It must have a scheme and a host,
	// and no query or fragment; a trailing slash is ignored.
	From string
	// To is the base that replaces From, such as the gateway's
	// "https://gw.example.org/wado-rs". A trailing slash is ignored. It is
	// written into the JSON string escaped as needed.
	To string
}

// SyntaxError is returned by RewriteURLs for input that is not valid JSON
// (RFC 8259, with at most 10,000 levels of nesting, like encoding/json).
type SyntaxError struct {
	// Offset is the byte offset in the input at which the error was found.
	Offset int
	// Msg describes the error.
	Msg string
}

// Error returns a message with the offset and the description.
func (e *SyntaxError) Error() string {
	return "dicom: malformed JSON at byte " + strconv.Itoa(e.Offset) + ": " + e.Msg
}

// maxJSONDepth is the deepest nesting of arrays and objects accepted, the
// same limit as encoding/json, so that both agree on what is valid.
const maxJSONDepth = 10000

// Keys of DICOM JSON (PS3.18 F.2) that RewriteURLs looks at.
const (
	retrieveURLTag = "00081190" // RetrieveURL (0008,1190), VR UR
	bulkDataURIKey = "BulkDataURI"
	valueKey       = "Value"
)

// RewriteURLs rewrites archive URLs in a DICOM JSON body (PS3.18 F.2): an
// array of datasets, or a single dataset, with sequences nested to any depth.
// It rewrites every string in the "Value" array of a RetrieveURL attribute
// (key "00081190") and every string value of a "BulkDataURI" key, wherever
// they appear, that starts with the From of one of rules; keys are compared
// after JSON unescaping, exactly and case-sensitively.
//
// A value matches a rule when, after JSON unescaping, it has the scheme and
// host of From (compared without regard to ASCII case, a default port, 80
// for http or 443 for https, being the same as none), then the
// path of From exactly, then the end of the string, '/' or '?'. So the base
// "http://h/dicom-web" matches "http://H:80/dicom-web/studies/1" but not
// "http://h/dicom-web2/studies/1" nor "http://user@h/dicom-web". The first
// matching rule is applied: the matched prefix is replaced by To, and the
// rest of the value is kept exactly as it was written, escapes included.
//
// Every other byte of body is kept as it was: key order, whitespace, number
// formatting, escapes. The body is read once and written once; nothing is
// decoded into Go values.
//
// It returns the new body and true when some value changed. When nothing
// changed, including when every match already had To as its prefix, it
// returns body itself and false. When body is not valid JSON it returns body,
// false and a *SyntaxError; when a rule's From is not an absolute URL, body,
// false and another error. With no rules it still validates body.
func RewriteURLs(body []byte, rules []Rebase) ([]byte, bool, error) {
	compiled := make([]rebaseRule, 0, len(rules))
	for _, r := range rules {
		c, err := compileRebase(r)
		if err != nil {
			return body, false, err
		}
		compiled = append(compiled, c)
	}
	w := rewriter{in: body, rules: compiled}
	if err := w.document(); err != nil {
		return body, false, err
	}
	if w.out == nil {
		return body, false, nil
	}
	return append(w.out, body[w.copied:]...), true, nil
}

// rebaseRule is a Rebase prepared for matching.
type rebaseRule struct {
	scheme string // lower case
	host   string // lower case, default port dropped
	path   string // without trailing slash
	to     []byte // JSON-escaped To, without trailing slash
}

// compileRebase checks r.From and prepares r for matching.
func compileRebase(r Rebase) (rebaseRule, error) {
	bad := func(why string) (rebaseRule, error) {
		return rebaseRule{}, errors.New("dicom: rebase rule From " + strconv.Quote(r.From) + " " + why)
	}
	i := strings.Index(r.From, "://")
	if i <= 0 || !validScheme(r.From[:i]) {
		return bad("is not an absolute URL with a scheme")
	}
	rest := r.From[i+3:]
	j := strings.IndexAny(rest, "/?#")
	if j < 0 {
		j = len(rest)
	}
	scheme := strings.ToLower(r.From[:i])
	host := normalizeHost(scheme, strings.ToLower(rest[:j]))
	if host == "" {
		return bad("has no host")
	}
	path := rest[j:]
	if strings.ContainsAny(path, "?#") {
		return bad("has a query or fragment")
	}
	return rebaseRule{
		scheme: scheme,
		host:   host,
		path:   strings.TrimRight(path, "/"),
		to:     appendJSONStringContent(nil, strings.TrimRight(r.To, "/")),
	}, nil
}

// validScheme reports whether s is an RFC 3986 scheme.
func validScheme(s string) bool {
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

// match reports whether the unescaped value v starts with the rule's base,
// and returns the length of the matched prefix of v.
func (r *rebaseRule) match(v []byte) (int, bool) {
	n := len(r.scheme)
	if len(v) < n+3 || !asciiEqualFold(v[:n], r.scheme) || string(v[n:n+3]) != "://" {
		return 0, false
	}
	a := n + 3
	e := a
	for e < len(v) && v[e] != '/' && v[e] != '?' && v[e] != '#' {
		e++
	}
	if !asciiEqualFold(normalizeHost(r.scheme, v[a:e]), r.host) {
		return 0, false
	}
	k := e + len(r.path)
	if len(v) < k || string(v[e:k]) != r.path {
		return 0, false
	}
	if k < len(v) && v[k] != '/' && v[k] != '?' {
		return 0, false
	}
	return k, true
}

// Parsing contexts: where in DICOM JSON the value being parsed sits.
const (
	ctxNone           = iota
	ctxRetrieveAttr   // the object value of a "00081190" key
	ctxRetrieveValues // the "Value" array of a RetrieveURL attribute
	ctxURL            // a string value to rewrite when it matches
)

// rewriter is a validating single-pass JSON parser that copies its input to
// out, replacing the URL strings that match a rule. out stays nil until the
// first replacement.
type rewriter struct {
	in      []byte
	pos     int
	depth   int
	rules   []rebaseRule
	out     []byte
	copied  int    // in[:copied] has been accounted for in out
	scratch []byte // reused buffer for unescaped strings
}

func (w *rewriter) errorf(msg string) error {
	return &SyntaxError{Offset: w.pos, Msg: msg}
}

// document parses a whole JSON text.
func (w *rewriter) document() error {
	if err := w.value(ctxNone); err != nil {
		return err
	}
	w.skipSpace()
	if w.pos != len(w.in) {
		return w.errorf("unexpected data after the top-level value")
	}
	return nil
}

func (w *rewriter) skipSpace() {
	for w.pos < len(w.in) {
		switch w.in[w.pos] {
		case ' ', '\t', '\n', '\r':
			w.pos++
		default:
			return
		}
	}
}

// value parses one JSON value after optional white space.
func (w *rewriter) value(ctx int) error {
	w.skipSpace()
	if w.pos >= len(w.in) {
		return w.errorf("unexpected end of input")
	}
	switch c := w.in[w.pos]; {
	case c == '{':
		return w.object(ctx)
	case c == '[':
		return w.array(ctx)
	case c == '"':
		start := w.pos
		esc, err := w.str()
		if err != nil {
			return err
		}
		if ctx == ctxURL && len(w.rules) > 0 {
			w.candidate(start, w.pos, esc)
		}
		return nil
	case c == '-' || '0' <= c && c <= '9':
		return w.number()
	case c == 't':
		return w.literal("true")
	case c == 'f':
		return w.literal("false")
	case c == 'n':
		return w.literal("null")
	}
	return w.errorf("unexpected character " + quoteByte(w.in[w.pos]))
}

func (w *rewriter) literal(lit string) error {
	if len(w.in)-w.pos < len(lit) || string(w.in[w.pos:w.pos+len(lit)]) != lit {
		return w.errorf("invalid literal")
	}
	w.pos += len(lit)
	return nil
}

func (w *rewriter) enter() error {
	w.depth++
	if w.depth > maxJSONDepth {
		return w.errorf("nesting exceeds the maximum depth")
	}
	w.pos++ // the '{' or '['
	return nil
}

// object parses an object; w.pos is at '{'.
func (w *rewriter) object(ctx int) error {
	if err := w.enter(); err != nil {
		return err
	}
	w.skipSpace()
	if w.pos < len(w.in) && w.in[w.pos] == '}' {
		w.pos++
		w.depth--
		return nil
	}
	for {
		w.skipSpace()
		if w.pos >= len(w.in) || w.in[w.pos] != '"' {
			return w.errorf("expected a string key")
		}
		start := w.pos
		esc, err := w.str()
		if err != nil {
			return err
		}
		child := w.keyContext(ctx, w.in[start+1:w.pos-1], esc)
		w.skipSpace()
		if w.pos >= len(w.in) || w.in[w.pos] != ':' {
			return w.errorf("expected ':' after an object key")
		}
		w.pos++
		if err := w.value(child); err != nil {
			return err
		}
		w.skipSpace()
		if w.pos >= len(w.in) {
			return w.errorf("unexpected end of input in an object")
		}
		switch w.in[w.pos] {
		case ',':
			w.pos++
		case '}':
			w.pos++
			w.depth--
			return nil
		default:
			return w.errorf("expected ',' or '}' in an object")
		}
	}
}

// keyContext returns the context of the value of the key whose raw (still
// escaped) content is raw, in an object parsed in context ctx.
func (w *rewriter) keyContext(ctx int, raw []byte, esc bool) int {
	if len(w.rules) == 0 {
		return ctxNone
	}
	k := raw
	if esc {
		w.scratch = unescape(w.scratch[:0], raw)
		k = w.scratch
	}
	switch string(k) {
	case bulkDataURIKey:
		return ctxURL
	case retrieveURLTag:
		return ctxRetrieveAttr
	case valueKey:
		if ctx == ctxRetrieveAttr {
			return ctxRetrieveValues
		}
	}
	return ctxNone
}

// array parses an array; w.pos is at '['.
func (w *rewriter) array(ctx int) error {
	if err := w.enter(); err != nil {
		return err
	}
	elem := ctxNone
	if ctx == ctxRetrieveValues {
		elem = ctxURL
	}
	w.skipSpace()
	if w.pos < len(w.in) && w.in[w.pos] == ']' {
		w.pos++
		w.depth--
		return nil
	}
	for {
		if err := w.value(elem); err != nil {
			return err
		}
		w.skipSpace()
		if w.pos >= len(w.in) {
			return w.errorf("unexpected end of input in an array")
		}
		switch w.in[w.pos] {
		case ',':
			w.pos++
		case ']':
			w.pos++
			w.depth--
			return nil
		default:
			return w.errorf("expected ',' or ']' in an array")
		}
	}
}

// plainByte marks the bytes that need no attention inside a JSON string.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// str parses a string; w.pos is at the opening quote and ends after the
// closing one. It reports whether the string contains escapes.
func (w *rewriter) str() (bool, error) {
	in := w.in
	i := w.pos + 1
	esc := false
	for {
		for i < len(in) && plainByte[in[i]] {
			i++
		}
		if i >= len(in) {
			w.pos = i
			return false, w.errorf("unexpected end of input in a string")
		}
		switch c := in[i]; {
		case c == '"':
			w.pos = i + 1
			return esc, nil
		case c == '\\':
			esc = true
			if i+1 >= len(in) {
				w.pos = i
				return false, w.errorf("unexpected end of input in a string escape")
			}
			switch in[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(in) || !isHex(in[i+2]) || !isHex(in[i+3]) || !isHex(in[i+4]) || !isHex(in[i+5]) {
					w.pos = i
					return false, w.errorf("invalid \\u escape in a string")
				}
				i += 6
			default:
				w.pos = i
				return false, w.errorf("invalid escape in a string")
			}
		default:
			w.pos = i
			return false, w.errorf("control character in a string")
		}
	}
}

// number parses a number per RFC 8259.
func (w *rewriter) number() error {
	in, i := w.in, w.pos
	digits := func() int {
		s := i
		for i < len(in) && '0' <= in[i] && in[i] <= '9' {
			i++
		}
		return i - s
	}
	if in[i] == '-' {
		i++
	}
	switch {
	case i < len(in) && in[i] == '0':
		i++
	case i < len(in) && '1' <= in[i] && in[i] <= '9':
		digits()
	default:
		w.pos = i
		return w.errorf("invalid number")
	}
	if i < len(in) && in[i] == '.' {
		i++
		if digits() == 0 {
			w.pos = i
			return w.errorf("invalid number: no digit after '.'")
		}
	}
	if i < len(in) && (in[i] == 'e' || in[i] == 'E') {
		i++
		if i < len(in) && (in[i] == '+' || in[i] == '-') {
			i++
		}
		if digits() == 0 {
			w.pos = i
			return w.errorf("invalid number: no digit in the exponent")
		}
	}
	w.pos = i
	return nil
}

// candidate rewrites the string in[start:end] (quotes included), a URL
// position, when it matches a rule.
func (w *rewriter) candidate(start, end int, esc bool) {
	raw := w.in[start+1 : end-1]
	v := raw
	if esc {
		w.scratch = unescape(w.scratch[:0], raw)
		v = w.scratch
	}
	for i := range w.rules {
		r := &w.rules[i]
		k, ok := r.match(v)
		if !ok {
			continue
		}
		off := k
		if esc {
			off = rawOffset(raw, k)
			if off < 0 {
				continue
			}
		}
		if string(raw[:off]) == string(r.to) {
			return // already in the target form
		}
		if w.out == nil {
			w.out = make([]byte, 0, len(w.in)+len(w.in)/8+64)
		}
		w.out = append(w.out, w.in[w.copied:start+1]...)
		w.out = append(w.out, r.to...)
		w.out = append(w.out, raw[off:]...)
		w.out = append(w.out, '"')
		w.copied = end
		return
	}
}

// unescape appends to dst the value of the JSON string content raw (without
// quotes), which str has already validated. Invalid surrogate escapes become
// U+FFFD, as in encoding/json; other bytes are copied as they are.
func unescape(dst, raw []byte) []byte {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		r, n := escapeAt(raw, i)
		if r < 0 {
			dst = append(dst, raw[i+1]) // never happens after str
		} else {
			dst = utf8.AppendRune(dst, r)
		}
		i += n
	}
	return dst
}

// escapeAt decodes the escape sequence at raw[i] (a backslash) and returns
// the rune it stands for and its length in raw. A \u escape of a surrogate
// pair is read as one rune; a lone surrogate gives U+FFFD.
func escapeAt(raw []byte, i int) (rune, int) {
	switch raw[i+1] {
	case '"', '\\', '/':
		return rune(raw[i+1]), 2
	case 'b':
		return '\b', 2
	case 'f':
		return '\f', 2
	case 'n':
		return '\n', 2
	case 'r':
		return '\r', 2
	case 't':
		return '\t', 2
	case 'u':
		r := hex4(raw[i+2 : i+6])
		if !utf16.IsSurrogate(r) {
			return r, 6
		}
		if i+12 <= len(raw) && raw[i+6] == '\\' && raw[i+7] == 'u' {
			if p := utf16.DecodeRune(r, hex4(raw[i+8:i+12])); p != utf8.RuneError {
				return p, 12
			}
		}
		return utf8.RuneError, 6
	}
	return -1, 2
}

// hex4 decodes four hexadecimal digits.
func hex4(b []byte) rune {
	return rune(unhex(b[0]))<<12 | rune(unhex(b[1]))<<8 | rune(unhex(b[2]))<<4 | rune(unhex(b[3]))
}

// rawOffset returns the offset in the JSON string content raw at which the
// unescaped value reaches length k, or -1 when k falls inside the expansion
// of one escape or character.
func rawOffset(raw []byte, k int) int {
	n := 0 // unescaped length so far
	for i := 0; i < len(raw); {
		if n == k {
			return i
		}
		if n > k {
			return -1
		}
		if raw[i] != '\\' {
			n++
			i++
			continue
		}
		r, m := escapeAt(raw, i)
		n += utf8.RuneLen(r)
		i += m
	}
	if n == k {
		return len(raw)
	}
	return -1
}

// appendJSONStringContent appends s to dst escaped for use inside a JSON
// string: quote, backslash and control characters are escaped, everything
// else, '/' included, is written as it is.
func appendJSONStringContent(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		default:
			dst = append(dst, c)
		}
	}
	return dst
}
