package jsontext

import "strconv"

// MaxDepth is the deepest nesting of arrays and objects the Scanner accepts.
// It is the same limit as encoding/json's, so that both agree on what is
// valid.
const MaxDepth = 10000

// SyntaxError reports input that is not valid JSON.
type SyntaxError struct {
	// Offset is the byte offset in the input at which the error was found.
	Offset int
	// Msg describes the error.
	Msg string
}

// Error returns a message with the offset and the description.
func (e *SyntaxError) Error() string {
	return "malformed JSON at byte " + strconv.Itoa(e.Offset) + ": " + e.Msg
}

// Kind says what kind of value starts at the Scanner's position.
type Kind int

const (
	// Invalid means that the byte at Pos cannot start a JSON value. Next
	// returns it with a nil error and leaves Pos at that byte, so that the
	// caller can describe the byte as it sees fit.
	Invalid Kind = iota
	// Object is a value starting with '{'; Pos is left at it.
	Object
	// Array is a value starting with '['; Pos is left at it.
	Array
	// String is a value starting with '"'; Pos is left at it.
	String
	// Number is a number, already read.
	Number
	// Literal is true, false or null, already read.
	Literal
)

// Str locates a JSON string that the Scanner has read.
type Str struct {
	// Start is the offset of the opening quote.
	Start int
	// End is the offset just after the closing quote.
	End int
	// Escaped reports whether the string contains a backslash escape.
	Escaped bool
}

// Content returns the bytes between the quotes of s in in, still escaped.
func (s Str) Content(in []byte) []byte {
	return in[s.Start+1 : s.End-1]
}

// Scanner reads JSON from a byte slice, validating it as it goes. Its
// methods advance Pos past what they read; on an error they return a
// *SyntaxError whose Offset is where the problem was found. The zero
// Scanner with In set is ready to use.
type Scanner struct {
	// In is the whole input.
	In []byte
	// Pos is the offset of the next byte to read.
	Pos   int
	depth int
}

// Depth returns the number of arrays and objects open at Pos: 0 at the top
// level, 1 inside the outermost container, and so on.
func (s *Scanner) Depth() int { return s.depth }

// Errorf returns a *SyntaxError at Pos with the description msg.
func (s *Scanner) Errorf(msg string) error {
	return &SyntaxError{Offset: s.Pos, Msg: msg}
}

// SkipSpace advances Pos past JSON white space.
func (s *Scanner) SkipSpace() {
	for s.Pos < len(s.In) {
		switch s.In[s.Pos] {
		case ' ', '\t', '\n', '\r':
			s.Pos++
		default:
			return
		}
	}
}

// End checks, after the top-level value, that only white space is left.
func (s *Scanner) End() error {
	s.SkipSpace()
	if s.Pos != len(s.In) {
		return s.Errorf("unexpected data after the top-level value")
	}
	return nil
}

// Next skips white space and says what kind of value starts there. It reads
// numbers and literals whole; for objects, arrays and strings it leaves Pos
// at their first byte, for the caller to go on with OpenObject, OpenArray or
// ReadString. It returns an error at the end of the input or in a malformed
// number or literal.
func (s *Scanner) Next() (Kind, error) {
	// Fast path: a container or a string with no space before it.
	if s.Pos < len(s.In) {
		if k := startKind[s.In[s.Pos]]; k != Invalid {
			return k, nil
		}
	}
	return s.next()
}

// startKind gives the kinds that Next returns without reading anything.
var startKind = [256]Kind{'{': Object, '[': Array, '"': String}

func (s *Scanner) next() (Kind, error) {
	s.SkipSpace()
	if s.Pos >= len(s.In) {
		return Invalid, s.Errorf("unexpected end of input")
	}
	switch c := s.In[s.Pos]; {
	case c == '{':
		return Object, nil
	case c == '[':
		return Array, nil
	case c == '"':
		return String, nil
	case c == '-' || '0' <= c && c <= '9':
		return Number, s.number()
	case c == 't':
		return Literal, s.literal("true")
	case c == 'f':
		return Literal, s.literal("false")
	case c == 'n':
		return Literal, s.literal("null")
	}
	return Invalid, nil
}

func (s *Scanner) literal(lit string) error {
	if len(s.In)-s.Pos < len(lit) || string(s.In[s.Pos:s.Pos+len(lit)]) != lit {
		return s.Errorf("invalid literal")
	}
	s.Pos += len(lit)
	return nil
}

// number reads a number per RFC 8259; Pos is at its first byte.
func (s *Scanner) number() error {
	in, i := s.In, s.Pos
	digits := func() int {
		d := i
		for i < len(in) && '0' <= in[i] && in[i] <= '9' {
			i++
		}
		return i - d
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
		s.Pos = i
		return s.Errorf("invalid number")
	}
	if i < len(in) && in[i] == '.' {
		i++
		if digits() == 0 {
			s.Pos = i
			return s.Errorf("invalid number: no digit after '.'")
		}
	}
	if i < len(in) && (in[i] == 'e' || in[i] == 'E') {
		i++
		if i < len(in) && (in[i] == '+' || in[i] == '-') {
			i++
		}
		if digits() == 0 {
			s.Pos = i
			return s.Errorf("invalid number: no digit in the exponent")
		}
	}
	s.Pos = i
	return nil
}

// plainByte marks the bytes that need no attention inside a JSON string.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// ReadString reads a string; Pos is at its opening quote and ends just after
// the closing one. Bytes that are not valid UTF-8 are accepted, as
// encoding/json accepts them.
func (s *Scanner) ReadString() (Str, error) {
	if end, esc := scanString(s.In, s.Pos); end >= 0 {
		str := Str{Start: s.Pos, End: end, Escaped: esc}
		s.Pos = end
		return str, nil
	}
	return s.readStringError()
}

// readStringError reads a string that scanString found invalid, to say
// where and why.
func (s *Scanner) readStringError() (Str, error) {
	in := s.In
	start := s.Pos
	i := start + 1
	esc := false
	for {
		for i < len(in) && plainByte[in[i]] {
			i++
		}
		if i >= len(in) {
			s.Pos = i
			return Str{}, s.Errorf("unexpected end of input in a string")
		}
		switch c := in[i]; {
		case c == '"':
			s.Pos = i + 1
			return Str{Start: start, End: i + 1, Escaped: esc}, nil
		case c == '\\':
			esc = true
			if i+1 >= len(in) {
				s.Pos = i
				return Str{}, s.Errorf("unexpected end of input in a string escape")
			}
			switch in[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(in) || !isHex(in[i+2]) || !isHex(in[i+3]) || !isHex(in[i+4]) || !isHex(in[i+5]) {
					s.Pos = i
					return Str{}, s.Errorf("invalid \\u escape in a string")
				}
				i += 6
			default:
				s.Pos = i
				return Str{}, s.Errorf("invalid escape in a string")
			}
		default:
			s.Pos = i
			return Str{}, s.Errorf("control character in a string")
		}
	}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// enter opens a container; Pos is at its '{' or '['. It reports whether the
// container is empty, in which case it is read whole.
func (s *Scanner) enter(closer byte) (bool, error) {
	s.depth++
	if s.depth > MaxDepth {
		return false, s.Errorf("nesting exceeds the maximum depth")
	}
	s.Pos++
	s.SkipSpace()
	if s.Pos < len(s.In) && s.In[s.Pos] == closer {
		s.Pos++
		s.depth--
		return false, nil
	}
	return true, nil
}

// OpenObject reads the '{' at Pos. It reports whether a member follows; when
// not, the empty object has been read whole. Otherwise the caller reads each
// member with Key, then its value, then calls MoreMembers.
func (s *Scanner) OpenObject() (bool, error) { return s.enter('}') }

// OpenArray reads the '[' at Pos. It reports whether an element follows;
// when not, the empty array has been read whole. Otherwise the caller reads
// each element, then calls MoreElements.
func (s *Scanner) OpenArray() (bool, error) { return s.enter(']') }

// Key reads an object key and the ':' after it, leaving Pos before the
// value, and returns where the key is.
func (s *Scanner) Key() (Str, error) {
	s.SkipSpace()
	if s.Pos >= len(s.In) || s.In[s.Pos] != '"' {
		return Str{}, s.Errorf("expected a string key")
	}
	k, err := s.ReadString()
	if err != nil {
		return Str{}, err
	}
	s.SkipSpace()
	if s.Pos >= len(s.In) || s.In[s.Pos] != ':' {
		return Str{}, s.Errorf("expected ':' after an object key")
	}
	s.Pos++
	return k, nil
}

// MoreMembers reads what follows a member's value: a ',', after which it
// returns true and Pos is just after the comma, or the closing '}', after
// which it returns false and the object has been read whole.
func (s *Scanner) MoreMembers() (bool, error) {
	return s.more('}')
}

// MoreElements reads what follows an array element: a ',', after which it
// returns true and Pos is just after the comma, or the closing ']', after
// which it returns false and the array has been read whole.
func (s *Scanner) MoreElements() (bool, error) {
	return s.more(']')
}

func (s *Scanner) more(closer byte) (bool, error) {
	if s.Pos < len(s.In) { // fast path: no space before
		switch s.In[s.Pos] {
		case ',':
			s.Pos++
			return true, nil
		case closer:
			s.Pos++
			s.depth--
			return false, nil
		}
	}
	s.SkipSpace()
	if s.Pos >= len(s.In) {
		if closer == '}' {
			return false, s.Errorf("unexpected end of input in an object")
		}
		return false, s.Errorf("unexpected end of input in an array")
	}
	switch s.In[s.Pos] {
	case ',':
		s.Pos++
		return true, nil
	case closer:
		s.Pos++
		s.depth--
		return false, nil
	}
	if closer == '}' {
		return false, s.Errorf("expected ',' or '}' in an object")
	}
	return false, s.Errorf("expected ',' or ']' in an array")
}

// Skip reads one value of any kind, after optional white space.
func (s *Scanner) Skip() error {
	if s.Skim(nil) {
		return nil
	}
	return s.skip()
}

// skip is Skip token by token, to describe the error Skim found.
func (s *Scanner) skip() error {
	k, err := s.Next()
	if err != nil {
		return err
	}
	switch k {
	case Invalid:
		return s.Errorf("unexpected character " + strconv.QuoteRune(rune(s.In[s.Pos])))
	case String:
		_, err = s.ReadString()
		return err
	case Object:
		more, err := s.OpenObject()
		for more && err == nil {
			if _, err = s.Key(); err == nil {
				if err = s.skip(); err == nil {
					more, err = s.MoreMembers()
				}
			}
		}
		return err
	case Array:
		more, err := s.OpenArray()
		for more && err == nil {
			if err = s.skip(); err == nil {
				more, err = s.MoreElements()
			}
		}
		return err
	}
	return nil
}
