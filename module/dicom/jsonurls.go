package dicom

import (
	"errors"
	"strconv"
	"strings"

	"github.com/fhirimaging/caddy-fhir-imaging/module/internal/jsontext"
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
const maxJSONDepth = jsontext.MaxDepth

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
	return rewriteURLs(body, compiled)
}

// rewriteURLs is RewriteURLs with the rules prepared.
func rewriteURLs(body []byte, compiled []rebaseRule) ([]byte, bool, error) {
	w := rewriter{s: jsontext.Scanner{In: body}, rules: compiled}
	if err := w.document(); err != nil {
		return body, false, syntaxError(err)
	}
	if w.out == nil {
		return body, false, nil
	}
	return append(w.out, body[w.copied:]...), true, nil
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

// rebaseRule is a Rebase prepared for matching.
type rebaseRule struct {
	base jsontext.Base
	to   []byte // To without trailing slash: JSON-escaped for bodies, as it is for headers
}

// compileRebase checks r.From and prepares r for matching in JSON.
func compileRebase(r Rebase) (rebaseRule, error) {
	base, err := parseFrom(r.From)
	if err != nil {
		return rebaseRule{}, err
	}
	return rebaseRule{base: base, to: jsontext.AppendEscaped(nil, strings.TrimRight(r.To, "/"))}, nil
}

// parseFrom checks and prepares the From of a rule.
func parseFrom(from string) (jsontext.Base, error) {
	base, err := jsontext.ParseBase(from, jsontext.BaseOptions{})
	if err != nil {
		why := "is not an absolute URL with a scheme"
		switch err {
		case jsontext.ErrNoHost:
			why = "has no host"
		case jsontext.ErrQueryOrFragment:
			why = "has a query or fragment"
		}
		return jsontext.Base{}, errors.New("dicom: rebase rule From " + strconv.Quote(from) + " " + why)
	}
	return base, nil
}

// Froms are the bases that answers are rebased from (the archives'),
// parsed once, when the configuration is provisioned: an answer only adds
// the base it is rebased onto, which depends on the request (To).
type Froms struct {
	bases []jsontext.Base
}

// ParseFroms checks and prepares froms; one that is not an absolute URL,
// or has a query or fragment, is an error.
func ParseFroms(froms ...string) (Froms, error) {
	var f Froms
	for _, from := range froms {
		b, err := parseFrom(from)
		if err != nil {
			return Froms{}, err
		}
		f.bases = append(f.bases, b)
	}
	return f, nil
}

// To returns the rules that rebase every one of the bases onto to, for
// one answer. Nothing is parsed.
func (f Froms) To(to string) Rules {
	to = strings.TrimRight(to, "/")
	r := Rules{json: make([]rebaseRule, len(f.bases)), header: make([]rebaseRule, len(f.bases))}
	toJSON, toHeader := jsontext.AppendEscaped(nil, to), []byte(to)
	for i, b := range f.bases {
		r.json[i] = rebaseRule{base: b, to: toJSON}
		r.header[i] = rebaseRule{base: b, to: toHeader}
	}
	return r
}

// Rules rebase an answer's URLs: Froms onto one base (Froms.To).
type Rules struct {
	json   []rebaseRule // To escaped for JSON strings
	header []rebaseRule // To as it is, for header values
}

// Empty reports whether there is nothing to rebase.
func (r Rules) Empty() bool { return len(r.json) == 0 }

// RewriteURLs is the package's RewriteURLs with these rules.
func (r Rules) RewriteURLs(body []byte) ([]byte, bool, error) {
	return rewriteURLs(body, r.json)
}

// URLRebaser returns a URLRebaser of these rules.
func (r Rules) URLRebaser() *URLRebaser {
	return &URLRebaser{rules: r.header}
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
	s       jsontext.Scanner
	rules   []rebaseRule
	out     []byte
	copied  int    // in[:copied] has been accounted for in out
	scratch []byte // reused buffer for unescaped strings
}

// document parses a whole JSON text.
func (w *rewriter) document() error {
	if err := w.value(ctxNone); err != nil {
		return err
	}
	return w.s.End()
}

// value parses one JSON value after optional white space.
func (w *rewriter) value(ctx int) error {
	k, err := w.s.Next()
	switch k {
	case jsontext.Object:
		return w.object(ctx)
	case jsontext.Array:
		return w.array(ctx)
	case jsontext.String:
		str, err := w.s.ReadString()
		if err != nil {
			return err
		}
		if ctx == ctxURL && len(w.rules) > 0 {
			w.candidate(str)
		}
		return nil
	case jsontext.Invalid:
		if err == nil {
			return w.s.Errorf("unexpected character " + quoteByte(w.s.In[w.s.Pos]))
		}
	}
	return err
}

// object parses an object; the scanner is at '{'.
func (w *rewriter) object(ctx int) error {
	more, err := w.s.OpenObject()
	for more && err == nil {
		var key jsontext.Str
		if key, err = w.s.Key(); err != nil {
			return err
		}
		if err = w.value(w.keyContext(ctx, key)); err != nil {
			return err
		}
		more, err = w.s.MoreMembers()
	}
	return err
}

// keyContext returns the context of the value of the key key, in an object
// parsed in context ctx.
func (w *rewriter) keyContext(ctx int, key jsontext.Str) int {
	if len(w.rules) == 0 {
		return ctxNone
	}
	k := key.Content(w.s.In)
	if key.Escaped {
		w.scratch = jsontext.Unescape(w.scratch[:0], k)
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

// array parses an array; the scanner is at '['.
func (w *rewriter) array(ctx int) error {
	elem := ctxNone
	if ctx == ctxRetrieveValues {
		elem = ctxURL
	}
	more, err := w.s.OpenArray()
	for more && err == nil {
		if err = w.value(elem); err != nil {
			return err
		}
		more, err = w.s.MoreElements()
	}
	return err
}

// candidate rewrites the string str, a URL position, when it matches a
// rule.
func (w *rewriter) candidate(str jsontext.Str) {
	raw := str.Content(w.s.In)
	v := raw
	if str.Escaped {
		w.scratch = jsontext.Unescape(w.scratch[:0], raw)
		v = w.scratch
	}
	for i := range w.rules {
		r := &w.rules[i]
		off, ok := r.base.MatchContent(raw, v, str.Escaped)
		if !ok {
			continue
		}
		if string(raw[:off]) == string(r.to) {
			return // already in the target form
		}
		in := w.s.In
		if w.out == nil {
			w.out = make([]byte, 0, len(in)+len(in)/8+64)
		}
		w.out = append(w.out, in[w.copied:str.Start+1]...)
		w.out = append(w.out, r.to...)
		w.out = append(w.out, raw[off:]...)
		w.out = append(w.out, '"')
		w.copied = str.End
		return
	}
}
