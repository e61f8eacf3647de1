package jsontext

import (
	"unicode/utf16"
	"unicode/utf8"
)

// Unescape appends to dst the value of the JSON string content raw (the bytes
// between the quotes), which ReadString has already validated. A \u escape
// of a lone surrogate becomes U+FFFD, as in encoding/json; bytes that are
// not valid UTF-8 are copied as they are.
func Unescape(dst, raw []byte) []byte {
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

// RawOffset returns the offset in the validated JSON string content raw at
// which its unescaped value reaches length k, or -1 when k falls inside the
// expansion of one escape, or beyond the value's end.
func RawOffset(raw []byte, k int) int {
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

// escapeAt decodes the validated escape sequence at raw[i] (a backslash) and
// returns the rune it stands for and its length in raw. A \u escape of a
// surrogate pair is read as one rune; a lone surrogate gives U+FFFD.
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
	return rune(raw[i+1]), 2 // '"', '\\' or '/'
}

// hex4 decodes four hexadecimal digits.
func hex4(b []byte) rune {
	return unhex(b[0])<<12 | unhex(b[1])<<8 | unhex(b[2])<<4 | unhex(b[3])
}

func unhex(c byte) rune {
	switch {
	case '0' <= c && c <= '9':
		return rune(c - '0')
	case 'a' <= c && c <= 'f':
		return rune(c - 'a' + 10)
	}
	return rune(c - 'A' + 10)
}

// AppendEscaped appends s to dst escaped for use inside a JSON string:
// quote and backslash are escaped, newline, carriage return and tab get
// their short escapes, other control characters a \u00XX escape, and every
// other byte, '/' and bytes of invalid UTF-8 included, is written as it is.
func AppendEscaped(dst []byte, s string) []byte {
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
