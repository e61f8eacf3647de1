package fhirxml

import (
	"bytes"
	"io"
)

// DefaultMaxHold is the default bound on what a Stream holds back at a
// time: the unfinished start tag it reads.
const DefaultMaxHold = 64 << 10

// Lexical states of a Stream.
const (
	sText      = iota // character data
	sLt               // after '<'
	sBang             // after "<!": a comment, CDATA or a declaration
	sComment          // inside <!-- -->
	sCDATA            // inside <![CDATA[ ]]>
	sPI               // inside <? ?>
	sEndTag           // inside </ >
	sElemName         // the name of a start tag
	sTagSpace         // inside a start tag, between attributes
	sEmptyEnd         // after '/' in a start tag
	sAttrName         // an attribute's name
	sAttrEq           // after an attribute's name, before '='
	sAttrQuote        // after '=', before the opening quote
	sAttrValue        // inside an attribute value
	sRaw              // not XML that the Stream understands: bytes pass as they are
)

// Bounds on what a Stream remembers of names and namespaces.
const (
	maxName  = 256  // element and attribute names
	maxNSURI = 64   // namespace names compared with Namespace
	maxDecls = 4096 // namespace declarations in scope
)

// attribute kinds
const (
	attrOther = iota // prefixed or not to be rebased
	attrValue        // unprefixed: a primitive value, an extension's url
	attrXMLNS        // xmlns or xmlns:prefix
)

// nsDecl is one namespace declaration in scope.
type nsDecl struct {
	depth  int    // the depth of the element that declared it
	prefix string // "" for the default namespace
	fhir   bool   // it names Namespace
}

// edit swaps hold[start:end] for text.
type edit struct {
	start, end int
	text       string
}

// Stream rebases one XML document as it is written to it, and writes the
// result to its destination as it goes. It holds back at most one start
// tag at a time (up to MaxHold bytes; a longer one is passed on unchanged),
// so its memory does not grow with the document. A document it cannot read
// as XML (a DOCTYPE, a stray '<', another encoding than UTF-8 or ASCII) is
// passed on unchanged from where that shows. Write it, then Close it.
type Stream struct {
	rb      *Rebaser
	dst     io.Writer
	maxHold int

	st      int
	out     []byte // what goes out at the end of this Write
	holding bool   // a start tag is being read: bytes are held back
	hold    []byte // held bytes of earlier Writes
	mark    int    // p[mark:] of the current Write is not yet copied or held
	tok     []byte // the start of a "<!" construct, or the end of a comment, PI or CDATA
	depth   int
	decls   []nsDecl

	// the start tag being read
	name      []byte
	nameLong  bool
	tagDecls  []nsDecl
	tooMany   bool // more namespace declarations than maxDecls
	edits     []edit
	attr      []byte
	attrLong  bool
	kind      int
	quote     byte
	valStart  int  // position of the current value's first byte
	candidate bool // the current value may be a URL to rebase
	nsURI     []byte
	scratch   []byte
	value     []byte

	rebased int
	raw     bool
	err     error

	// for tests: the offset in the input of p[0] and of hold[0], and a
	// hook told of each swap, in input offsets
	in     int64
	holdAt int64
	onEdit func(start, end int64)
}

// NewStream returns a Stream that writes the rebased document to dst.
// maxHold bounds what is held back at a time (DefaultMaxHold when 0 or
// less).
func (rb *Rebaser) NewStream(dst io.Writer, maxHold int) *Stream {
	if maxHold <= 0 {
		maxHold = DefaultMaxHold
	}
	return &Stream{rb: rb, dst: dst, maxHold: maxHold}
}

// Apply rebases a whole document and returns it, and whether it changed.
func (rb *Rebaser) Apply(doc []byte) ([]byte, bool) {
	var b bytes.Buffer
	s := rb.NewStream(&b, len(doc)+1)
	_, _ = s.Write(doc)
	_ = s.Close()
	return b.Bytes(), s.Rebased() > 0
}

// Rebased returns how many values were rebased so far.
func (s *Stream) Rebased() int { return s.rebased }

// Malformed reports whether the Stream stopped reading the document as XML
// and passed the rest on unchanged.
func (s *Stream) Malformed() bool { return s.raw }

// pos is the position in the held tag of p[i]: hold, then p[mark:].
func (s *Stream) pos(i int) int { return len(s.hold) + i - s.mark }

// Write rebases p and writes what can go out to the destination. It
// returns an error only when the destination fails.
func (s *Stream) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	s.mark = 0
	s.lex(p)
	s.in += int64(len(p))
	if s.holding {
		s.hold = append(s.hold, p[s.mark:]...)
		if len(s.hold) > s.maxHold {
			s.overflow()
			s.holdAt = s.in
		}
	} else {
		s.out = append(s.out, p[s.mark:]...)
	}
	if len(s.out) > 0 {
		if _, err := s.dst.Write(s.out); err != nil {
			s.err = err
			return 0, err
		}
		s.out = s.out[:0]
	}
	return len(p), nil
}

// Close writes what is still held back (an unfinished tag at the end of
// the document, unchanged).
func (s *Stream) Close() error {
	if s.err != nil {
		return s.err
	}
	if s.holding {
		s.out = append(s.out, s.hold...)
		s.hold, s.holding, s.edits = s.hold[:0], false, s.edits[:0]
	}
	if len(s.out) > 0 {
		if _, err := s.dst.Write(s.out); err != nil {
			s.err = err
			return err
		}
		s.out = s.out[:0]
	}
	return nil
}

// overflow passes on a start tag that grew past maxHold as it is, and
// gives up the swaps found in it.
func (s *Stream) overflow() {
	s.out = append(s.out, s.hold...)
	s.hold = s.hold[:0]
	s.edits = s.edits[:0]
	s.candidate = false
}

// startHold holds back p[i:] from here on.
func (s *Stream) startHold(p []byte, i int) {
	s.out = append(s.out, p[s.mark:i]...)
	s.mark = i
	s.holding = true
	s.holdAt = s.in + int64(i)
}

// release passes on what is held and p[mark:i] as it is.
func (s *Stream) release(p []byte, i int) {
	s.out = append(s.out, s.hold...)
	s.out = append(s.out, p[s.mark:i]...)
	s.hold = s.hold[:0]
	s.mark = i
	s.holding = false
	s.edits = s.edits[:0]
}

// toRaw stops reading the document: from p[i] on, everything passes as it
// is, and so does what was held.
func (s *Stream) toRaw(p []byte, i int) {
	if s.holding {
		s.release(p, i)
	}
	s.st = sRaw
	s.raw = true
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func isNameStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == ':' || c >= 0x80
}

// lex reads p, moving bytes to out (or keeping them held) as it goes.
func (s *Stream) lex(p []byte) {
	for i := 0; i < len(p); {
		c := p[i]
		switch s.st {
		case sRaw:
			return
		case sText:
			j := bytes.IndexByte(p[i:], '<')
			if j < 0 {
				return
			}
			i += j
			s.startHold(p, i) // until it shows what the '<' opens
			s.st = sLt
		case sLt:
			switch {
			case c == '/':
				s.release(p, i)
				s.st = sEndTag
			case c == '!':
				s.release(p, i)
				s.st, s.tok = sBang, s.tok[:0]
			case c == '?':
				s.release(p, i)
				s.st, s.tok = sPI, s.tok[:0]
			case isNameStart(c):
				s.st = sElemName
				s.name, s.nameLong = s.name[:0], false
				s.tagDecls, s.tooMany = s.tagDecls[:0], false
				s.name = append(s.name, c)
			default:
				s.toRaw(p, i)
				return
			}
		case sBang:
			s.tok = append(s.tok, c)
			switch t := string(s.tok); {
			case t == "--":
				s.st, s.tok = sComment, s.tok[:0]
			case t == "[CDATA[":
				s.st, s.tok = sCDATA, s.tok[:0]
			case !(len(t) <= 2 && t == "--"[:len(t)] || len(t) <= 7 && t == "[CDATA["[:len(t)]):
				// A DOCTYPE or another declaration: FHIR has none, and
				// what it might declare would change how the rest reads.
				s.toRaw(p, i)
				return
			}
		case sComment, sCDATA, sPI:
			end := endMarker(s.st)
			j := bytes.IndexByte(p[i:], end[len(end)-1])
			if j < 0 {
				s.roll(p[i:], len(end))
				return
			}
			s.roll(p[i:i+j+1], len(end))
			i += j
			if string(s.tok) == end {
				s.st, s.tok = sText, s.tok[:0]
			}
		case sEndTag:
			j := bytes.IndexByte(p[i:], '>')
			if j < 0 {
				return
			}
			i += j
			s.endElement()
			s.st = sText
		case sElemName:
			switch {
			case isSpace(c):
				s.st = sTagSpace
			case c == '/':
				s.st = sEmptyEnd
			case c == '>':
				s.endStartTag(p, i, false)
			case c == '<' || c == '=' || c == '"' || c == '\'':
				s.toRaw(p, i)
				return
			default:
				s.name, s.nameLong = appendBounded(s.name, s.nameLong, c)
			}
		case sTagSpace:
			switch {
			case isSpace(c):
			case c == '/':
				s.st = sEmptyEnd
			case c == '>':
				s.endStartTag(p, i, false)
			case c == '=' || c == '"' || c == '\'' || c == '<':
				s.toRaw(p, i)
				return
			default:
				s.st = sAttrName
				s.attr, s.attrLong = append(s.attr[:0], c), false
			}
		case sEmptyEnd:
			if c != '>' {
				s.toRaw(p, i)
				return
			}
			s.endStartTag(p, i, true)
		case sAttrName:
			switch {
			case c == '=':
				s.st = sAttrQuote
			case isSpace(c):
				s.st = sAttrEq
			case c == '>' || c == '/' || c == '<' || c == '"' || c == '\'':
				s.toRaw(p, i)
				return
			default:
				s.attr, s.attrLong = appendBounded(s.attr, s.attrLong, c)
			}
		case sAttrEq:
			switch {
			case c == '=':
				s.st = sAttrQuote
			case !isSpace(c):
				s.toRaw(p, i)
				return
			}
		case sAttrQuote:
			switch {
			case c == '"' || c == '\'':
				s.openValue(p, i)
			case !isSpace(c):
				s.toRaw(p, i)
				return
			}
		case sAttrValue:
			j := bytes.IndexByte(p[i:], s.quote)
			if j < 0 {
				s.valueBytes(p[i:])
				return
			}
			s.valueBytes(p[i : i+j])
			i += j
			s.closeValue(p, i)
			s.st = sTagSpace
		}
		i++
	}
}

// endMarker is the end of a comment, a CDATA section or a processing
// instruction.
func endMarker(st int) string {
	switch st {
	case sComment:
		return "-->"
	case sCDATA:
		return "]]>"
	}
	return "?>"
}

// roll keeps in tok the last n bytes of the construct read so far, b
// being its next bytes, to find its end marker even when it straddles two
// Writes.
func (s *Stream) roll(b []byte, n int) {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	s.tok = append(s.tok, b...)
	if len(s.tok) > n {
		s.tok = append(s.tok[:0], s.tok[len(s.tok)-n:]...)
	}
}

func appendBounded(b []byte, long bool, c byte) ([]byte, bool) {
	if len(b) >= maxName {
		return b, true
	}
	return append(b, c), long
}

// openValue starts an attribute value at the quote p[i].
func (s *Stream) openValue(p []byte, i int) {
	s.st = sAttrValue
	s.quote = p[i]
	s.valStart = s.pos(i + 1)
	s.kind = attrOther
	a := string(s.attr)
	switch {
	case s.attrLong:
	case a == "xmlns" || len(a) > 6 && a[:6] == "xmlns:":
		s.kind = attrXMLNS
		s.nsURI = s.nsURI[:0]
	default:
		if _, prefixed := splitQName(s.attr); !prefixed {
			s.kind = attrValue
		}
	}
	s.candidate = s.kind == attrValue && len(s.rb.rules) > 0
	s.value = s.value[:0]
}

// valueBytes takes in part of an attribute value.
func (s *Stream) valueBytes(b []byte) {
	switch s.kind {
	case attrXMLNS:
		if len(s.nsURI) <= maxNSURI {
			s.nsURI = append(s.nsURI, b[:min(len(b), maxNSURI+1-len(s.nsURI))]...)
		}
	case attrValue:
		if !s.candidate {
			return
		}
		if len(s.value) == 0 && len(b) > 0 && b[0] != 'h' && b[0] != 'H' && b[0] != '&' {
			s.candidate = false // not a URL: nothing needs holding for it
			return
		}
		if len(s.value)+len(b) > s.maxHold {
			s.candidate = false
			s.value = s.value[:0]
			return
		}
		s.value = append(s.value, b...)
	}
}

// closeValue ends an attribute value at its closing quote p[i].
func (s *Stream) closeValue(p []byte, i int) {
	switch s.kind {
	case attrXMLNS:
		prefix := ""
		if len(s.attr) > 6 {
			prefix = string(s.attr[6:])
		}
		if len(s.tagDecls) < maxDecls {
			s.tagDecls = append(s.tagDecls, nsDecl{prefix: prefix, fhir: decodedEquals(s.nsURI, Namespace)})
		} else {
			s.tooMany = true
		}
	case attrValue:
		if !s.candidate {
			return
		}
		s.candidate = false
		var off int
		var to string
		var ok bool
		off, to, s.scratch, ok = s.rb.match(s.value, s.quote, s.scratch)
		if ok {
			s.edits = append(s.edits, edit{start: s.valStart, end: s.valStart + off, text: to})
		}
	}
}

// decodedEquals reports whether the raw attribute value raw stands for s.
func decodedEquals(raw []byte, s string) bool {
	if len(raw) > maxNSURI {
		return false
	}
	v, ok := decodeAttr(nil, raw)
	return ok && string(v) == s
}

// endStartTag ends the start tag whose '>' is p[i]: its swaps are made if
// it is a FHIR element, and it goes out.
func (s *Stream) endStartTag(p []byte, i int, empty bool) {
	s.st = sText
	if s.tooMany || len(s.decls)+len(s.tagDecls) > maxDecls {
		// More namespaces than it keeps track of: it could no longer tell
		// FHIR elements from others.
		s.release(p, i+1)
		s.st, s.raw = sRaw, true
		return
	}
	if len(s.edits) > 0 && s.isFHIR() {
		s.hold = append(s.hold, p[s.mark:i+1]...)
		s.mark = i + 1
		at := 0
		for _, e := range s.edits {
			s.out = append(s.out, s.hold[at:e.start]...)
			s.out = append(s.out, e.text...)
			at = e.end
			s.rebased++
			if s.onEdit != nil {
				s.onEdit(s.holdAt+int64(e.start), s.holdAt+int64(e.end))
			}
		}
		s.out = append(s.out, s.hold[at:]...)
		s.hold = s.hold[:0]
		s.holding = false
		s.edits = s.edits[:0]
	} else {
		s.release(p, i+1)
	}
	if empty {
		return
	}
	s.depth++
	for _, d := range s.tagDecls {
		if len(s.decls) >= maxDecls {
			break
		}
		d.depth = s.depth
		s.decls = append(s.decls, d)
	}
}

// isFHIR reports whether the start tag just read is in the FHIR namespace.
func (s *Stream) isFHIR() bool {
	if s.nameLong {
		return false
	}
	prefix, _ := splitQName(s.name)
	for j := len(s.tagDecls) - 1; j >= 0; j-- {
		if s.tagDecls[j].prefix == prefix {
			return s.tagDecls[j].fhir
		}
	}
	for j := len(s.decls) - 1; j >= 0; j-- {
		if s.decls[j].prefix == prefix {
			return s.decls[j].fhir
		}
	}
	return false
}

// splitQName returns the prefix of a qualified name, and whether it has
// one: a single colon with something on either side (a name with a colon
// at either end is read as unprefixed, as encoding/xml reads it).
func splitQName(name []byte) (string, bool) {
	k := bytes.IndexByte(name, ':')
	if k <= 0 || k == len(name)-1 {
		return "", false
	}
	return string(name[:k]), true
}

// endElement leaves an element: its namespace declarations go out of scope.
func (s *Stream) endElement() {
	if s.depth == 0 {
		return
	}
	for len(s.decls) > 0 && s.decls[len(s.decls)-1].depth >= s.depth {
		s.decls = s.decls[:len(s.decls)-1]
	}
	s.depth--
}
