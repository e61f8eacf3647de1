package fhirjson

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Rebase is one base-URL swap: a URL that starts with the base From is
// rewritten to start with To instead.
type Rebase struct {
	// From is an absolute base URL such as "http://127.0.0.1:8080/fhir".
	// It must have a scheme and a host, and no query or fragment; a
	// trailing slash is ignored.
	From string
	// To is the base that replaces From, such as
	// "https://gw.example.org/api/fhir". A trailing slash is ignored.
	To string
}

// PatchKind says how a request body is to be read by a Transformer.
type PatchKind int

const (
	// NotPatch is a FHIR resource or Bundle.
	NotPatch PatchKind = iota
	// JSONPatch is an RFC 6902 JSON Patch document
	// (application/json-patch+json).
	JSONPatch
)

// Transformer rewrites FHIR JSON in one pass: it swaps base URLs in string
// values and removes extensions with given URLs. Build it with
// NewTransformer; it is safe for concurrent use.
type Transformer struct {
	rules []baseRule
	drop  [][]byte
	patch PatchKind
}

// NewTransformer prepares a Transformer. rules are tried in order, the
// first match wins. drop lists extension URLs: an element of any
// "extension" array whose "url" is one of them is removed (and the whole
// "extension" member when nothing else is left in it). patch says whether
// bodies are JSON Patch documents; for them an operation whose "value" is
// such an extension, or a list of nothing but such extensions, is removed
// too. A FHIRPath Patch (a Parameters resource) is recognised by itself: an
// "operation" parameter that names a dropped URL anywhere in it is removed.
func NewTransformer(rules []Rebase, drop []string, patch PatchKind) (*Transformer, error) {
	t := &Transformer{patch: patch}
	for _, r := range rules {
		c, err := compileRebase(r)
		if err != nil {
			return nil, err
		}
		t.rules = append(t.rules, c)
	}
	for _, d := range drop {
		if d != "" {
			t.drop = append(t.drop, []byte(d))
		}
	}
	return t, nil
}

// URL applies the rebase rules to one URL, as found in a Location,
// Content-Location or Link header. It returns the URL and whether it
// changed.
func (t *Transformer) URL(s string) (string, bool) {
	for i := range t.rules {
		r := &t.rules[i]
		if k, ok := r.match([]byte(s)); ok {
			out := r.toPlain + s[k:]
			return out, out != s
		}
	}
	return s, false
}

// LinkHeader applies the rebase rules to every <URI-Reference> of an RFC
// 8288 Link header value, leaving everything else as it was.
func (t *Transformer) LinkHeader(v string) (string, bool) {
	var b strings.Builder
	changed := false
	rest := v
	for {
		i := strings.IndexByte(rest, '<')
		if i < 0 {
			break
		}
		j := strings.IndexByte(rest[i:], '>')
		if j < 0 {
			break
		}
		u, ok := t.URL(rest[i+1 : i+j])
		b.WriteString(rest[:i+1])
		b.WriteString(u)
		b.WriteByte('>')
		changed = changed || ok
		rest = rest[i+j+1:]
	}
	if !changed {
		return v, false
	}
	b.WriteString(rest)
	return b.String(), true
}

// Apply rewrites body. Every byte it does not need to change is copied as it
// was: key order, white space, number formats, escapes. It returns body
// itself and false when nothing changed, and body, false and a *SyntaxError
// when body is not valid JSON (RFC 8259, nesting at most 10,000 deep).
func (t *Transformer) Apply(body []byte) ([]byte, bool, error) {
	w := walker{in: body, t: t}
	if err := w.document(); err != nil {
		return body, false, err
	}
	if len(w.edits) == 0 {
		return body, false, nil
	}
	n := len(body)
	for _, e := range w.edits {
		n += len(e.text) - (e.end - e.start)
	}
	out := make([]byte, 0, n)
	pos := 0
	for _, e := range w.edits {
		out = append(out, body[pos:e.start]...)
		out = append(out, e.text...)
		pos = e.end
	}
	out = append(out, body[pos:]...)
	if bytes.Equal(out, body) {
		return body, false, nil
	}
	return out, true, nil
}

// SyntaxError is returned by Apply for input that is not valid JSON.
type SyntaxError struct {
	// Offset is the byte offset at which the error was found.
	Offset int
	// Msg describes the error.
	Msg string
}

// Error returns a message with the offset and the description.
func (e *SyntaxError) Error() string {
	return "fhirjson: malformed JSON at byte " + strconv.Itoa(e.Offset) + ": " + e.Msg
}

const maxDepth = 10000

// Contexts of a value being parsed.
const (
	ctxNone     = iota
	ctxExtArray // the array of an "extension" member
	ctxOps      // the top-level array of a JSON Patch
	ctxOpValue  // the "value" of a JSON Patch operation
	ctxParams   // the "parameter" array of a top-level Parameters resource
	ctxTop      // the top-level value
)

// info is what a parsed value tells its container.
type info struct {
	isObject bool
	url      string // the object's "url" string member
	rt       string // the object's "resourceType" string member
	name     string // the object's "name" string member
	dropURL  bool   // url is one of the dropped URLs
	mentions bool   // some string value inside equals or contains a dropped URL
	dropOp   bool   // a JSON Patch operation to remove
	emptied  bool   // an array whose every element was removed
}

type walker struct {
	in      []byte
	pos     int
	depth   int
	t       *Transformer
	edits   []edit
	scratch []byte
}

func (w *walker) errorf(msg string) error { return &SyntaxError{Offset: w.pos, Msg: msg} }

func (w *walker) document() error {
	if _, err := w.value(ctxTop); err != nil {
		return err
	}
	w.skipSpace()
	if w.pos != len(w.in) {
		return w.errorf("unexpected data after the top-level value")
	}
	return nil
}

func (w *walker) skipSpace() {
	for w.pos < len(w.in) {
		switch w.in[w.pos] {
		case ' ', '\t', '\n', '\r':
			w.pos++
		default:
			return
		}
	}
}

func (w *walker) value(ctx int) (info, error) {
	w.skipSpace()
	if w.pos >= len(w.in) {
		return info{}, w.errorf("unexpected end of input")
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
			return info{}, err
		}
		var in info
		if len(w.t.drop) > 0 && w.mentionsDrop(w.in[start+1:w.pos-1]) {
			in.mentions = true
		}
		if len(w.t.rules) > 0 {
			w.rebase(start, w.pos, esc)
		}
		return in, nil
	case c == '-' || '0' <= c && c <= '9':
		return info{}, w.number()
	case c == 't':
		return info{}, w.literal("true")
	case c == 'f':
		return info{}, w.literal("false")
	case c == 'n':
		return info{}, w.literal("null")
	}
	return info{}, w.errorf("unexpected character " + strconv.QuoteRune(rune(w.in[w.pos])))
}

func (w *walker) mentionsDrop(raw []byte) bool {
	for _, d := range w.t.drop {
		if bytes.Contains(raw, d) {
			return true
		}
	}
	return false
}

func (w *walker) literal(lit string) error {
	if len(w.in)-w.pos < len(lit) || string(w.in[w.pos:w.pos+len(lit)]) != lit {
		return w.errorf("invalid literal")
	}
	w.pos += len(lit)
	return nil
}

func (w *walker) enter() error {
	w.depth++
	if w.depth > maxDepth {
		return w.errorf("nesting exceeds the maximum depth")
	}
	w.pos++
	return nil
}

// member is one parsed object member: the offsets of its key's opening
// quote and of the end of its value.
type member struct {
	keyStart, valEnd int
}

func (w *walker) object(ctx int) (info, error) {
	res := info{isObject: true}
	if err := w.enter(); err != nil {
		return res, err
	}
	w.skipSpace()
	if w.pos < len(w.in) && w.in[w.pos] == '}' {
		w.pos++
		w.depth--
		return res, nil
	}
	var prev member
	havePrev := false
	var removeMember *member // an "extension" member emptied of everything
	var removeNext bool      // remove it through the comma that follows
	for {
		w.skipSpace()
		if w.pos >= len(w.in) || w.in[w.pos] != '"' {
			return res, w.errorf("expected a string key")
		}
		keyStart := w.pos
		esc, err := w.str()
		if err != nil {
			return res, err
		}
		key := w.key(keyStart, esc)
		child := ctxNone
		switch {
		case key == "extension" && len(w.t.drop) > 0:
			child = ctxExtArray
		case key == "value" && w.t.patch == JSONPatch && w.depth == 2:
			child = ctxOpValue
		case key == "parameter" && ctx == ctxTop && len(w.t.drop) > 0:
			child = ctxParams
		}
		// String members that the container needs to know.
		var strVal string
		wantStr := key == "url" || key == "resourceType" || key == "name"
		w.skipSpace()
		if w.pos >= len(w.in) || w.in[w.pos] != ':' {
			return res, w.errorf("expected ':' after an object key")
		}
		w.pos++
		w.skipSpace()
		valStart := w.pos
		nEdits := len(w.edits)
		vi, err := w.value(child)
		if err != nil {
			return res, err
		}
		if wantStr && valStart < len(w.in) && w.in[valStart] == '"' {
			strVal = w.unquote(valStart, w.pos)
		}
		switch key {
		case "url":
			res.url = strVal
			for _, d := range w.t.drop {
				if strVal == string(d) {
					res.dropURL = true
				}
			}
		case "resourceType":
			res.rt = strVal
		case "name":
			res.name = strVal
		}
		if vi.mentions {
			res.mentions = true
		}
		if child == ctxOpValue && (vi.dropURL || vi.emptied) {
			res.dropOp = true
		}
		cur := member{keyStart: keyStart, valEnd: w.pos}
		if child == ctxExtArray && vi.emptied {
			w.edits = w.edits[:nEdits] // the array goes as a whole
			m := cur
			removeMember = &m
			removeNext = true
			if havePrev {
				// Remove from the end of the previous value: the comma before.
				w.edits = append(w.edits, edit{start: prev.valEnd, end: cur.valEnd})
				removeMember = nil
			}
		}
		prev, havePrev = cur, true
		w.skipSpace()
		if w.pos >= len(w.in) {
			return res, w.errorf("unexpected end of input in an object")
		}
		switch w.in[w.pos] {
		case ',':
			if removeMember != nil && removeNext {
				// First member: remove it with the comma after it, keeping
				// the white space that preceded the next key.
				w.edits = append(w.edits, edit{start: removeMember.keyStart, end: w.pos + 1})
				removeMember = nil
			}
			removeNext = false
			w.pos++
		case '}':
			if removeMember != nil {
				// The only member.
				w.edits = append(w.edits, edit{start: removeMember.keyStart, end: removeMember.valEnd})
			}
			w.pos++
			w.depth--
			return res, nil
		default:
			return res, w.errorf("expected ',' or '}' in an object")
		}
	}
}

// key returns the unescaped key whose quoted form ends at w.pos.
func (w *walker) key(start int, esc bool) string {
	raw := w.in[start+1 : w.pos-1]
	if !esc {
		return string(raw)
	}
	return string(unescapeJSON(nil, raw))
}

func (w *walker) unquote(start, end int) string {
	return string(unescapeJSON(nil, w.in[start+1:end-1]))
}

// array parses an array, removing the elements its context says to remove.
func (w *walker) array(ctx int) (info, error) {
	var res info
	if err := w.enter(); err != nil {
		return res, err
	}
	elemCtx := ctxNone
	switch ctx {
	case ctxTop:
		if w.t.patch == JSONPatch {
			elemCtx = ctxOps
		}
	case ctxOpValue:
		// A list value of a JSON Patch operation is read like an extension
		// list: the dropped extensions in it go.
		ctx = ctxExtArray
	}
	type elem struct {
		start, end, nEdits int
		drop               bool
	}
	var elems []elem
	w.skipSpace()
	if w.pos < len(w.in) && w.in[w.pos] == ']' {
		w.pos++
		w.depth--
		return res, nil
	}
	for {
		w.skipSpace()
		start, nEdits := w.pos, len(w.edits)
		vi, err := w.value(elemCtx)
		if err != nil {
			return res, err
		}
		drop := false
		switch ctx {
		case ctxExtArray:
			drop = vi.isObject && vi.dropURL
		case ctxParams:
			drop = vi.isObject && vi.name == "operation" && vi.mentions
		case ctxTop:
			drop = elemCtx == ctxOps && vi.isObject && vi.dropOp
		}
		if vi.mentions && !drop {
			res.mentions = true
		}
		elems = append(elems, elem{start, w.pos, nEdits, drop})
		w.skipSpace()
		if w.pos >= len(w.in) {
			return res, w.errorf("unexpected end of input in an array")
		}
		if w.in[w.pos] == ',' {
			w.pos++
			continue
		}
		if w.in[w.pos] != ']' {
			return res, w.errorf("expected ',' or ']' in an array")
		}
		w.pos++
		w.depth--
		break
	}
	dropped := 0
	for _, e := range elems {
		if e.drop {
			dropped++
		}
	}
	if dropped == 0 {
		return res, nil
	}
	if dropped == len(elems) {
		res.emptied = true
		w.edits = w.edits[:elems[0].nEdits]
		w.edits = append(w.edits, edit{start: elems[0].start, end: elems[len(elems)-1].end})
		return res, nil
	}
	// Rebuild the edits of this array: the kept elements keep theirs.
	all := append([]edit(nil), w.edits[elems[0].nEdits:]...)
	base := elems[0].nEdits
	w.edits = w.edits[:base]
	firstKept := -1
	for i, e := range elems {
		if !e.drop {
			firstKept = i
			break
		}
	}
	editsOf := func(i int) []edit {
		from := elems[i].nEdits - base
		to := len(all)
		if i+1 < len(elems) {
			to = elems[i+1].nEdits - base
		}
		return all[from:to]
	}
	if firstKept > 0 {
		// Leading dropped elements go with the separators up to the first kept one.
		w.edits = append(w.edits, edit{start: elems[0].start, end: elems[firstKept].start})
	}
	for i := firstKept; i < len(elems); i++ {
		if elems[i].drop {
			// The separator before it and the element.
			w.edits = append(w.edits, edit{start: elems[i-1].end, end: elems[i].end})
			continue
		}
		w.edits = append(w.edits, editsOf(i)...)
	}
	return res, nil
}

// str parses a string at w.pos (the opening quote) and reports whether it
// contains escapes.
func (w *walker) str() (bool, error) {
	in := w.in
	i := w.pos + 1
	esc := false
	for {
		for i < len(in) && in[i] >= 0x20 && in[i] != '"' && in[i] != '\\' {
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

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func (w *walker) number() error {
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

// rebase records the edit that swaps the base of the string in[start:end]
// (quotes included) when it matches a rule.
func (w *walker) rebase(start, end int, esc bool) {
	raw := w.in[start+1 : end-1]
	if len(raw) < 8 || (raw[0] != 'h' && raw[0] != 'H' && raw[0] != '\\') {
		return // not an http(s) URL: the common case, decided at once
	}
	v := raw
	if esc {
		w.scratch = unescapeJSON(w.scratch[:0], raw)
		v = w.scratch
	}
	for i := range w.t.rules {
		r := &w.t.rules[i]
		k, ok := r.match(v)
		if !ok {
			continue
		}
		off := k
		if esc {
			if off = rawOffset(raw, k); off < 0 {
				continue
			}
		}
		if string(raw[:off]) == string(r.to) {
			return
		}
		w.edits = append(w.edits, edit{start: start + 1, end: start + 1 + off, text: string(r.to)})
		return
	}
}

// baseRule is a Rebase prepared for matching.
type baseRule struct {
	scheme  string // lower case
	host    string // lower case, default port dropped
	path    string // without trailing slash
	to      []byte // JSON-escaped To, without trailing slash
	toPlain string
}

func compileRebase(r Rebase) (baseRule, error) {
	bad := func(why string) (baseRule, error) {
		return baseRule{}, errors.New("fhirjson: rebase From " + strconv.Quote(r.From) + " " + why)
	}
	i := strings.Index(r.From, "://")
	if i <= 0 {
		return bad("is not an absolute URL")
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
	to := strings.TrimRight(r.To, "/")
	var b strings.Builder
	writeJSONString(&b, to)
	q := b.String()
	return baseRule{scheme: scheme, host: host, path: strings.TrimRight(path, "/"), to: []byte(q[1 : len(q)-1]), toPlain: to}, nil
}

func normalizeHost(scheme, host string) string {
	switch {
	case scheme == "http" && strings.HasSuffix(host, ":80"):
		return strings.TrimSuffix(host, ":80")
	case scheme == "https" && strings.HasSuffix(host, ":443"):
		return strings.TrimSuffix(host, ":443")
	}
	return host
}

// match reports whether the unescaped value v starts with the rule's base,
// followed by the end, '/', '?' or '#', and returns the prefix's length.
func (r *baseRule) match(v []byte) (int, bool) {
	n := len(r.scheme)
	if len(v) < n+3 || !strings.EqualFold(string(v[:n]), r.scheme) || string(v[n:n+3]) != "://" {
		return 0, false
	}
	a := n + 3
	e := a
	for e < len(v) && v[e] != '/' && v[e] != '?' && v[e] != '#' {
		e++
	}
	if !strings.EqualFold(normalizeHost(r.scheme, strings.ToLower(string(v[a:e]))), r.host) {
		return 0, false
	}
	k := e + len(r.path)
	if len(v) < k || string(v[e:k]) != r.path {
		return 0, false
	}
	if k < len(v) && v[k] != '/' && v[k] != '?' && v[k] != '#' {
		return 0, false
	}
	return k, true
}

// unescapeJSON appends the value of validated JSON string content raw.
func unescapeJSON(dst, raw []byte) []byte {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		r, n := escapeAt(raw, i)
		dst = utf8.AppendRune(dst, r)
		i += n
	}
	return dst
}

func escapeAt(raw []byte, i int) (rune, int) {
	switch raw[i+1] {
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
	return rune(raw[i+1]), 2
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		r <<= 4
		switch {
		case '0' <= c && c <= '9':
			r |= rune(c - '0')
		case 'a' <= c && c <= 'f':
			r |= rune(c - 'a' + 10)
		default:
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}

// rawOffset returns the offset in raw at which the unescaped value reaches
// length k, or -1 when k falls inside one escape.
func rawOffset(raw []byte, k int) int {
	n := 0
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
