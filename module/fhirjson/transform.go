package fhirjson

import (
	"bytes"
	"errors"
	"strconv"
	"strings"

	"github.com/fhirimaging/caddy-fhir-imaging/module/internal/jsontext"
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
		if k, ok := r.base.Match([]byte(s)); ok {
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
	w := walker{s: jsontext.Scanner{In: body}, t: t}
	if err := w.document(); err != nil {
		return body, false, syntaxError(err)
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

// syntaxError turns the scanner's *jsontext.SyntaxError into this
// package's *SyntaxError.
func syntaxError(err error) error {
	var se *jsontext.SyntaxError
	if errors.As(err, &se) {
		return &SyntaxError{Offset: se.Offset, Msg: se.Msg}
	}
	return err
}

const maxDepth = jsontext.MaxDepth

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
	s       jsontext.Scanner
	t       *Transformer
	edits   []edit
	scratch []byte
}

func (w *walker) document() error {
	if _, err := w.value(ctxTop); err != nil {
		return err
	}
	return w.s.End()
}

func (w *walker) value(ctx int) (info, error) {
	k, err := w.s.Next()
	switch k {
	case jsontext.Object:
		return w.object(ctx)
	case jsontext.Array:
		return w.array(ctx)
	case jsontext.String:
		str, err := w.s.ReadString()
		if err != nil {
			return info{}, err
		}
		var in info
		if len(w.t.drop) > 0 && w.mentionsDrop(str.Content(w.s.In)) {
			in.mentions = true
		}
		if len(w.t.rules) > 0 {
			w.rebase(str)
		}
		return in, nil
	case jsontext.Invalid:
		if err == nil {
			return info{}, w.s.Errorf("unexpected character " + strconv.QuoteRune(rune(w.s.In[w.s.Pos])))
		}
	}
	return info{}, err
}

func (w *walker) mentionsDrop(raw []byte) bool {
	for _, d := range w.t.drop {
		if bytes.Contains(raw, d) {
			return true
		}
	}
	return false
}

// member is one parsed object member: the offsets of its key's opening
// quote and of the end of its value.
type member struct {
	keyStart, valEnd int
}

func (w *walker) object(ctx int) (info, error) {
	res := info{isObject: true}
	more, err := w.s.OpenObject()
	var prev member
	havePrev := false
	var removeMember *member // an "extension" member emptied of everything
	var removeNext bool      // remove it through the comma that follows
	for more && err == nil {
		var k jsontext.Str
		if k, err = w.s.Key(); err != nil {
			return res, err
		}
		keyStart := k.Start
		// The key as bytes: compared as string(key), which allocates
		// nothing, where a string of every key would.
		key := w.key(k)
		child := ctxNone
		switch {
		case string(key) == "extension" && len(w.t.drop) > 0:
			child = ctxExtArray
		case string(key) == "value" && w.t.patch == JSONPatch && w.s.Depth() == 2:
			child = ctxOpValue
		case string(key) == "parameter" && ctx == ctxTop && len(w.t.drop) > 0:
			child = ctxParams
		}
		// String members that the container needs to know.
		var strVal string
		wantStr := string(key) == "url" || string(key) == "resourceType" || string(key) == "name"
		w.s.SkipSpace()
		valStart := w.s.Pos
		nEdits := len(w.edits)
		var vi info
		if vi, err = w.value(child); err != nil {
			return res, err
		}
		if wantStr && valStart < len(w.s.In) && w.s.In[valStart] == '"' {
			strVal = w.unquote(valStart, w.s.Pos)
		}
		switch string(key) {
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
		cur := member{keyStart: keyStart, valEnd: w.s.Pos}
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
		if more, err = w.s.MoreMembers(); err != nil {
			return res, err
		}
		switch {
		case more:
			if removeMember != nil && removeNext {
				// First member: remove it with the comma after it, keeping
				// the white space that preceded the next key.
				w.edits = append(w.edits, edit{start: removeMember.keyStart, end: w.s.Pos})
				removeMember = nil
			}
			removeNext = false
		case removeMember != nil:
			// The only member.
			w.edits = append(w.edits, edit{start: removeMember.keyStart, end: removeMember.valEnd})
		}
	}
	return res, err
}

// key returns the unescaped key k.
func (w *walker) key(k jsontext.Str) []byte {
	raw := k.Content(w.s.In)
	if !k.Escaped {
		return raw
	}
	return jsontext.Unescape(nil, raw)
}

// unquote returns the value of the string from start to end (its quotes).
func (w *walker) unquote(start, end int) string {
	raw := w.s.In[start+1 : end-1]
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw)
	}
	return string(jsontext.Unescape(nil, raw))
}

// array parses an array, removing the elements its context says to remove.
func (w *walker) array(ctx int) (info, error) {
	var res info
	more, err := w.s.OpenArray()
	if err != nil || !more {
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
	for {
		w.s.SkipSpace()
		start, nEdits := w.s.Pos, len(w.edits)
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
		elems = append(elems, elem{start, w.s.Pos, nEdits, drop})
		more, err := w.s.MoreElements()
		if err != nil {
			return res, err
		}
		if !more {
			break
		}
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

// rebase records the edit that swaps the base of the string str when it
// matches a rule.
func (w *walker) rebase(str jsontext.Str) {
	w.edits, w.scratch = rebaseEdit(w.t.rules, w.s.In, str, w.edits, w.scratch)
}

// rebaseEdit appends to edits the edit that swaps the base of the string
// str of in when it matches one of rules (the first that matches wins).
// scratch is room for unescaping, returned for reuse.
func rebaseEdit(rules []baseRule, in []byte, str jsontext.Str, edits []edit, scratch []byte) ([]edit, []byte) {
	raw := str.Content(in)
	if len(raw) < 8 || (raw[0] != 'h' && raw[0] != 'H' && raw[0] != '\\') {
		return edits, scratch // not an http(s) URL: the common case, decided at once
	}
	v := raw
	if str.Escaped {
		scratch = jsontext.Unescape(scratch[:0], raw)
		v = scratch
	}
	for i := range rules {
		r := &rules[i]
		off, ok := r.base.MatchContent(raw, v, str.Escaped)
		if !ok {
			continue
		}
		if string(raw[:off]) == r.toJSON {
			return edits, scratch
		}
		return append(edits, edit{start: str.Start + 1, end: str.Start + 1 + off, text: r.toJSON, rebase: true}), scratch
	}
	return edits, scratch
}

// baseRule is a Rebase prepared for matching.
type baseRule struct {
	base    jsontext.Base
	quick   jsontext.Quick // base.Quick()
	toJSON  string         // JSON-escaped To, without trailing slash
	toPlain string
}

func compileRebase(r Rebase) (baseRule, error) {
	base, err := jsontext.ParseBase(r.From, jsontext.BaseOptions{Fragment: true, Lax: true})
	if err != nil {
		why := "is not an absolute URL"
		switch err {
		case jsontext.ErrNoHost:
			why = "has no host"
		case jsontext.ErrQueryOrFragment:
			why = "has a query or fragment"
		}
		return baseRule{}, errors.New("fhirjson: rebase From " + strconv.Quote(r.From) + " " + why)
	}
	to := strings.TrimRight(r.To, "/")
	return baseRule{base: base, quick: base.Quick(), toJSON: string(jsontext.AppendEscaped(nil, to)), toPlain: to}, nil
}
