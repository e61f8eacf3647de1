package dicom

import "strconv"

// ErrorKind classifies why a DICOMweb path or a WADO-URI query was refused,
// so that a caller can choose the HTTP status without parsing the message.
type ErrorKind int

const (
	// KindMalformed means the request is not well formed: it contains a dot
	// segment, an empty segment, a control character, a forbidden or
	// encoded separator, is too long, or lacks a required parameter. A
	// caller answers 400 Bad Request.
	KindMalformed ErrorKind = iota + 1
	// KindBadUID means a study, series or instance UID is not a valid DICOM
	// UID (see ValidUID). A caller answers 400 Bad Request.
	KindBadUID
	// KindUnknownPath means the path is well formed but names no DICOMweb
	// resource the gateway serves, such as an unknown sub-resource. A caller
	// answers 404 Not Found.
	KindUnknownPath
)

// String returns a short lower-case name for the kind, for logs.
func (k ErrorKind) String() string {
	switch k {
	case KindMalformed:
		return "malformed"
	case KindBadUID:
		return "bad UID"
	case KindUnknownPath:
		return "unknown path"
	}
	return "unknown error kind"
}

// PathError is the error returned by ParsePath and ParseWADOURI. Its message
// is meant for the user who sent the request: it says what is wrong, quoting
// at most a short, escaped excerpt of the input.
type PathError struct {
	// Kind says whether the request was malformed, carried an invalid UID,
	// or named an unknown resource.
	Kind ErrorKind
	// Message is a user-facing description of the problem.
	Message string
}

// Error returns the user-facing message.
func (e *PathError) Error() string {
	return e.Message
}

// StatusCode returns the HTTP status a gateway should answer with: 404 for
// KindUnknownPath and 400 otherwise.
func (e *PathError) StatusCode() int {
	if e.Kind == KindUnknownPath {
		return 404
	}
	return 400
}

// maxQuoted is the longest excerpt of user input quoted in an error message.
const maxQuoted = 80

// quote returns s as a Go-quoted string, shortened to maxQuoted bytes with an
// ellipsis, so that error messages stay short and free of control characters.
func quote(s string) string {
	if len(s) > maxQuoted {
		cut := maxQuoted
		// Do not cut a UTF-8 sequence in half.
		for cut > 0 && s[cut]&0xC0 == 0x80 {
			cut--
		}
		return quoteString(s[:cut]) + "..."
	}
	return quoteString(s)
}

// quoteString returns s double-quoted with Go escapes, so that control and
// non-printable characters are visible and harmless in a message.
func quoteString(s string) string {
	return strconv.Quote(s)
}

// quoteByte returns a readable rendering of a single byte of input: the
// quoted character for ASCII, and its hexadecimal value otherwise.
func quoteByte(c byte) string {
	if c < 0x80 {
		return strconv.QuoteRune(rune(c))
	}
	return "byte 0x" + strconv.FormatUint(uint64(c), 16)
}
