package jsontext

import (
	"encoding/binary"
	"math/bits"
)

// Skim is the fast way through a value whose structure nobody needs: one
// loop over the bytes, with no call per token, and strings scanned eight
// bytes at a time. It validates exactly as the Scanner's other methods do;
// what it does not do is describe an error. A caller that gets false reads
// the value again, from the same place, with the methods that do (Skip, or
// its own walk): the first byte at which the input stops being valid JSON
// is the same for both, so the two agree on everything up to the error.

// Skim reads one value of any kind, after optional white space, calling
// visit (unless it is nil) with each string value in it, in order; keys are
// not string values. It returns true with Pos after the value, or false
// with Pos and the depth as they were when the value is not valid JSON or
// nests deeper than MaxDepth (visit may have seen strings before the error).
func (s *Scanner) Skim(visit func(Str)) bool {
	in := s.In
	i := s.Pos
	// open holds one bit per container open in this value, 1 for an
	// object; inObject is the innermost one's. The first 512 levels take
	// no allocation.
	var first [8]uint64
	open := first[:0]
	depth := 0
	inObject := false
	for {
		// A value starts at or after i.
		i = skipSpace(in, i)
		if i >= len(in) {
			return false
		}
		switch c := in[i]; {
		case c == '"':
			end, esc := scanString(in, i)
			if end < 0 {
				return false
			}
			if visit != nil {
				visit(Str{Start: i, End: end, Escaped: esc})
			}
			i = end
		case c == '{' || c == '[':
			if s.depth+depth >= MaxDepth {
				return false
			}
			if depth%64 == 0 {
				open = append(open, 0)
			}
			inObject = c == '{'
			if inObject {
				open[depth/64] |= 1 << (depth % 64)
			} else {
				open[depth/64] &^= 1 << (depth % 64)
			}
			depth++
			i = skipSpace(in, i+1)
			if i >= len(in) {
				return false
			}
			if in[i] != '}'+c-'{' { // '}' for '{', ']' for '['
				if inObject {
					if i = skimKey(in, i); i < 0 {
						return false
					}
				}
				continue
			}
			i++
			depth--
			inObject = depth > 0 && open[(depth-1)/64]&(1<<((depth-1)%64)) != 0
		case c == '-' || '0' <= c && c <= '9':
			if i = skimNumber(in, i); i < 0 {
				return false
			}
		case c == 't':
			if len(in)-i < 4 || string(in[i:i+4]) != "true" {
				return false
			}
			i += 4
		case c == 'f':
			if len(in)-i < 5 || string(in[i:i+5]) != "false" {
				return false
			}
			i += 5
		case c == 'n':
			if len(in)-i < 4 || string(in[i:i+4]) != "null" {
				return false
			}
			i += 4
		default:
			return false
		}
		// After a value: close what it ends, up to the next value.
		for {
			if depth == 0 {
				s.Pos = i
				return true
			}
			i = skipSpace(in, i)
			if i >= len(in) {
				return false
			}
			c := in[i]
			if c == ',' {
				if inObject {
					if i = skimKey(in, i+1); i < 0 {
						return false
					}
				} else {
					i++
				}
				break
			}
			if inObject && c != '}' || !inObject && c != ']' {
				return false
			}
			i++
			depth--
			inObject = depth > 0 && open[(depth-1)/64]&(1<<((depth-1)%64)) != 0
		}
	}
}

// skipSpace returns the offset of the first byte at or after i that is not
// JSON white space.
func skipSpace(in []byte, i int) int {
	for i < len(in) && in[i] <= ' ' && (in[i] == ' ' || in[i] == '\n' || in[i] == '\r' || in[i] == '\t') {
		i++
	}
	return i
}

// skimKey reads an object key and its ':', after optional white space from
// i; it returns the offset after the ':', or -1.
func skimKey(in []byte, i int) int {
	i = skipSpace(in, i)
	if i >= len(in) || in[i] != '"' {
		return -1
	}
	if i, _ = scanString(in, i); i < 0 {
		return -1
	}
	i = skipSpace(in, i)
	if i >= len(in) || in[i] != ':' {
		return -1
	}
	return i + 1
}

// skimNumber reads a number at i as number does; it returns the offset
// after it, or -1.
func skimNumber(in []byte, i int) int {
	s := Scanner{In: in, Pos: i}
	if s.number() != nil {
		return -1
	}
	return s.Pos
}

// SWAR constants: one in every byte, and the high bit of every byte.
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// lookMask flags the bytes of x (eight bytes of a string's content, read
// little-endian) that are a quote, a backslash or a control character: the
// high bit of each such byte is set. Each test is the "some byte is zero"
// (or "below 0x20") bit trick, whose borrows run only upwards from a byte
// that truly matches: so the mask is zero exactly when no byte needs a
// look, and its lowest set bit is exactly the first byte that does.
func lookMask(x uint64) uint64 {
	q := x ^ ('"' * ones)
	b := x ^ ('\\' * ones)
	return ((q-ones)&^q | (b-ones)&^b | (x-0x20*ones)&^x) & highs
}

// scanString reads the string whose opening quote is at i and returns the
// offset after its closing quote, and whether it has escapes; the offset
// is -1 when the string is not valid, which ReadString then describes.
func scanString(in []byte, i int) (int, bool) {
	i++
	esc := false
	for {
		if i+8 <= len(in) {
			m := lookMask(binary.LittleEndian.Uint64(in[i:]))
			if m == 0 {
				i += 8
				continue
			}
			i += bits.TrailingZeros64(m) / 8
		} else {
			for i < len(in) && plainByte[in[i]] {
				i++
			}
			if i >= len(in) {
				return -1, false
			}
		}
		switch in[i] {
		case '"':
			return i + 1, esc
		case '\\':
			esc = true
			if i+1 >= len(in) {
				return -1, false
			}
			switch in[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(in) || !isHex(in[i+2]) || !isHex(in[i+3]) || !isHex(in[i+4]) || !isHex(in[i+5]) {
					return -1, false
				}
				i += 6
			default:
				return -1, false
			}
		default:
			return -1, false
		}
	}
}

// NextQuote returns the offset of the first '"' in buf at or after i, or
// len(buf) when there is none. It looks at eight bytes at a time, inline:
// for the short strings of JSON, quicker than a call to bytes.IndexByte.
func NextQuote(buf []byte, i int) int {
	for ; i+8 <= len(buf); i += 8 {
		if m := zeroBytes(binary.LittleEndian.Uint64(buf[i:]) ^ '"'*ones); m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for i < len(buf) && buf[i] != '"' {
		i++
	}
	return i
}

// zeroBytes flags the zero bytes of v as lookMask does: its lowest set bit
// is exactly the first zero byte.
func zeroBytes(v uint64) uint64 {
	return (v - ones) &^ v & highs
}
