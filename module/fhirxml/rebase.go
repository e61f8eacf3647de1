// Package fhirxml swaps base URLs in FHIR XML documents as they stream, the
// way module/fhirjson swaps them in FHIR JSON: every primitive value of a
// FHIR element (an unprefixed attribute such as value="…" or an
// extension's url="…") that starts with the FHIR server's base is made to
// start with the public base instead. That covers Bundle.link.url,
// entry.fullUrl, entry.response.location and absolute references, as the
// JSON rebase does. Every other byte of the document is left as it was:
// the markup, white space, comments, entity references, the XHTML
// narrative and namespace declarations.
//
// The package is pure: it knows nothing of HTTP servers or Caddy, so it can
// be tested and fuzzed on its own.
package fhirxml

import (
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/fhirimaging/caddy-fhir-imaging/module/internal/jsontext"
)

// Namespace is the FHIR XML namespace. Only attributes of elements in it
// are rebased.
const Namespace = "http://hl7.org/fhir"

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

// Rebaser holds rebase rules prepared for XML documents. Build it with
// NewRebaser; it is safe for concurrent use, and each document gets its own
// Stream.
type Rebaser struct {
	rules []rule
}

// rule is a Rebase prepared for matching.
type rule struct {
	base jsontext.Base
	// to is To, without a trailing slash, escaped for an attribute value
	// quoted with " (to[0]) and with ' (to[1]).
	to [2]string
}

// NewRebaser prepares a Rebaser. rules are tried in order, the first match
// wins. URLs are matched as fhirjson matches them: scheme and host without
// regard to case, a default port the same as none, the path exactly, and
// the base followed by the end of the value, '/', '?' or '#'.
func NewRebaser(rules []Rebase) (*Rebaser, error) {
	rb := &Rebaser{}
	for _, r := range rules {
		base, err := jsontext.ParseBase(r.From, jsontext.BaseOptions{Fragment: true, Lax: true})
		if err != nil {
			return nil, errors.New("fhirxml: rebase From " + strconv.Quote(r.From) + " is not an absolute base URL without query or fragment")
		}
		to := strings.TrimRight(r.To, "/")
		rb.rules = append(rb.rules, rule{base: base, to: [2]string{escapeAttr(to, '"'), escapeAttr(to, '\'')}})
	}
	return rb, nil
}

// escapeAttr escapes s for an XML attribute value quoted with q.
func escapeAttr(s string, q byte) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '&':
			b.WriteString("&amp;")
		case c == '<':
			b.WriteString("&lt;")
		case c == '"' && q == '"':
			b.WriteString("&quot;")
		case c == '\'' && q == '\'':
			b.WriteString("&apos;")
		case c == '\t' || c == '\n' || c == '\r':
			b.WriteString("&#" + strconv.Itoa(int(c)) + ";")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// match returns the length of the prefix of the raw attribute value raw
// (as written, between its quotes) that stands for a base of the rules,
// and the escaped replacement, or false when no rule matches. A base that
// ends inside an entity or character reference does not match. scratch is
// room for the decoded value, returned for reuse.
func (rb *Rebaser) match(raw []byte, quote byte, scratch []byte) (int, string, []byte, bool) {
	if len(raw) < 8 || raw[0] != 'h' && raw[0] != 'H' && raw[0] != '&' {
		return 0, "", scratch, false // not an http(s) URL: the common case, decided at once
	}
	v, ok := decodeAttr(scratch[:0], raw)
	scratch = v
	if !ok {
		return 0, "", scratch, false
	}
	q := 0
	if quote == '\'' {
		q = 1
	}
	for i := range rb.rules {
		r := &rb.rules[i]
		k, ok := r.base.Match(v)
		if !ok {
			continue
		}
		off := rawOffset(raw, k)
		if off < 0 {
			return 0, "", scratch, false
		}
		if string(raw[:off]) == r.to[q] {
			return 0, "", scratch, false // already the public base
		}
		return off, r.to[q], scratch, true
	}
	return 0, "", scratch, false
}

// decodeAttr appends to dst the value of the raw attribute value raw: the
// predefined entities and character references decoded, and tab, newline
// and carriage return read as spaces (one each, which is all that matching
// a URL needs). It returns false for a reference it cannot decode (an
// entity a DTD would define, a malformed or invalid character reference).
func decodeAttr(dst, raw []byte) ([]byte, bool) {
	for i := 0; i < len(raw); {
		c := raw[i]
		switch c {
		case '&':
			r, n := refAt(raw, i)
			if n == 0 {
				return dst, false
			}
			dst = utf8.AppendRune(dst, r)
			i += n
			continue
		case '\t', '\n', '\r':
			c = ' '
		}
		dst = append(dst, c)
		i++
	}
	return dst, true
}

// rawOffset returns the offset in raw at which the first k bytes of its
// decoded value end, or -1 when that is inside a reference.
func rawOffset(raw []byte, k int) int {
	n := 0
	for i := 0; i < len(raw); {
		if n == k {
			return i
		}
		if n > k {
			return -1
		}
		if raw[i] != '&' {
			n++
			i++
			continue
		}
		r, m := refAt(raw, i)
		if m == 0 {
			return -1
		}
		n += utf8.RuneLen(r)
		i += m
	}
	if n == k {
		return len(raw)
	}
	return -1
}

// refAt decodes the entity or character reference at raw[i] (an '&') and
// returns the character it stands for and its length in raw, or a length
// of 0 when it is not a predefined entity or a valid character reference.
func refAt(raw []byte, i int) (rune, int) {
	end := -1
	for j := i + 1; j < len(raw) && j < i+12; j++ {
		if raw[j] == ';' {
			end = j
			break
		}
	}
	if end < 0 {
		return 0, 0
	}
	name := string(raw[i+1 : end])
	n := end + 1 - i
	switch name {
	case "amp":
		return '&', n
	case "lt":
		return '<', n
	case "gt":
		return '>', n
	case "quot":
		return '"', n
	case "apos":
		return '\'', n
	}
	if len(name) < 2 || name[0] != '#' {
		return 0, 0
	}
	digits, b := name[1:], 10
	if digits[0] == 'x' {
		digits, b = digits[1:], 16
	}
	if digits == "" || digits[0] == '+' || digits[0] == '-' {
		return 0, 0
	}
	v, err := strconv.ParseUint(digits, b, 32)
	if err != nil || !xmlChar(rune(v)) {
		return 0, 0
	}
	return rune(v), n
}

// xmlChar reports whether r is a character XML 1.0 allows.
func xmlChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF || r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF
}
