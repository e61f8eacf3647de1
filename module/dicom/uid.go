package dicom

import "github.com/fhirimaging/caddy-fhir-imaging/module/internal/jsontext"

// MaxUIDLength is the maximum length of a DICOM UID in characters (PS3.5
// section 9.1).
const MaxUIDLength = 64

// ValidUID reports whether s is a DICOM unique identifier as defined in PS3.5
// section 9.1: between 1 and 64 characters, made only of digits and dots,
// with components separated by single dots, no leading or trailing dot and
// no empty component. PS3.5 also forbids a component of several digits that
// starts with '0'; that rule is deliberately not enforced, since archives do
// hold such UIDs and refusing them would make real studies unreachable
// through the gateway (the product contract defines a UID as digits and
// dots, at most 64 characters). A "urn:oid:" prefix is not accepted; strip it first with
// TrimOIDPrefix where the source may carry one.
func ValidUID(s string) bool {
	// uidProblem's rules, checked eight bytes at a time: a searchset has
	// thousands of UIDs.
	if len(s) == 0 || len(s) > MaxUIDLength {
		return false
	}
	dot := true // the byte before was a dot, or there was none
	i := 0
	for ; i+8 <= len(s); i += 8 {
		x := le64(s[i : i+8])
		if x&highs != 0 {
			return false // not ASCII
		}
		// On ASCII bytes, each of these is exact byte by byte: setting
		// the high bit first keeps a subtraction from borrowing from the
		// next byte.
		digits := ((x | highs) - '0'*ones) &^ ((x | highs) - ':'*ones) & highs
		d := x ^ '.'*ones
		dots := ^((d | highs) - ones) & highs
		if digits|dots != highs {
			return false // a byte that is neither
		}
		if dots&(dots<<8|boolBit(dot)) != 0 {
			return false // a dot after a dot, or first
		}
		dot = dots>>63 != 0
	}
	for ; i < len(s); i++ {
		switch c := s[i]; {
		case c == '.':
			if dot {
				return false // first, or an empty component
			}
			dot = true
		case c-'0' <= 9:
			dot = false
		default:
			return false
		}
	}
	return !dot
}

// SWAR constants: one in every byte, and the high bit of every byte.
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// le64 reads the eight bytes of s as a little-endian number (one load).
func le64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// boolBit is 0x80 (the first byte's high bit) for true, 0 for false.
func boolBit(b bool) uint64 {
	if b {
		return 0x80
	}
	return 0
}

// uidProblem returns an empty string when s is a valid DICOM UID, and
// otherwise a short English phrase saying what is wrong with it, suitable to
// follow the UID in a user-facing message.
func uidProblem(s string) string {
	if len(s) == 0 {
		return "is empty"
	}
	if len(s) > MaxUIDLength {
		return "is longer than 64 characters"
	}
	compStart := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if i == 0 {
				return "starts with a dot"
			}
			if i == compStart {
				return "has an empty component"
			}
			compStart = i + 1
		case c >= '0' && c <= '9':
		case c == '%':
			return "must not be percent-encoded"
		default:
			return "contains a character other than digits and dots"
		}
	}
	if compStart == len(s) {
		return "ends with a dot"
	}
	return ""
}

// oidPrefix is the URN prefix FHIR uses for OIDs, such as DICOM UIDs.
const oidPrefix = "urn:oid:"

// TrimOIDPrefix returns s without a leading "urn:oid:" prefix, matched
// without regard to ASCII case. Only one prefix is removed, and s is returned
// unchanged when it does not start with one. The result is not validated;
// use ValidUID on it.
func TrimOIDPrefix(s string) string {
	if len(s) >= len(oidPrefix) && jsontext.EqualFoldASCII(s[:len(oidPrefix)], oidPrefix) {
		return s[len(oidPrefix):]
	}
	return s
}
