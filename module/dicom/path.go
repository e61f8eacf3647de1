package dicom

import (
	"strconv"
	"strings"
)

// MaxPathLength is the longest raw path, in bytes, that ParsePath accepts.
const MaxPathLength = 2048

// Level is the depth of the DICOM information model a DICOMweb path
// addresses: the root (no UID), a study, a series or an instance.
type Level int

const (
	// LevelRoot is a path with no UID: "/studies", "/series" or
	// "/instances" (QIDO-RS searches, or STOW-RS on "/studies").
	LevelRoot Level = iota
	// LevelStudy is a path that names a study UID and no series.
	LevelStudy
	// LevelSeries is a path that names a study and a series UID.
	LevelSeries
	// LevelInstance is a path that names a study, a series and an
	// instance (SOP instance) UID.
	LevelInstance
)

// String returns the lower-case name of the level.
func (l Level) String() string {
	switch l {
	case LevelRoot:
		return "root"
	case LevelStudy:
		return "study"
	case LevelSeries:
		return "series"
	case LevelInstance:
		return "instance"
	}
	return "Level(" + strconv.Itoa(int(l)) + ")"
}

// Request is a parsed DICOMweb (WADO-RS, QIDO-RS or STOW-RS) path.
type Request struct {
	// Level is the deepest level named by a UID in the path.
	Level Level
	// Study is the study instance UID, empty at LevelRoot.
	Study string
	// Series is the series instance UID, set at LevelSeries and
	// LevelInstance.
	Series string
	// Instance is the SOP instance UID, set at LevelInstance.
	Instance string
	// Sub is the rest of the path after the deepest UID, without a leading
	// slash, exactly as it appeared (still percent-encoded): "" for the
	// resource itself, "metadata", "rendered", "thumbnail", "pixeldata",
	// "frames/1,2,3", "frames/1/rendered", "bulk/7fe00010",
	// "bulkdata/...", or, for QIDO-RS searches, "studies", "series" or
	// "instances". At LevelRoot it is the whole path without its leading
	// slash.
	Sub string
}

// Path returns the canonical path of r relative to the DICOMweb base, with a
// leading slash, such as "/studies/1.2/series/3.4/metadata". For a Request
// returned by ParsePath it is exactly the path that was parsed, so a gateway
// builds the upstream URL as archive base + r.Path(). Path does not validate
// r; a Request built by hand must hold valid UIDs for the result to be a
// valid DICOMweb path.
func (r Request) Path() string {
	var p string
	switch r.Level {
	case LevelRoot:
		return "/" + r.Sub
	case LevelStudy:
		p = StudyPath(r.Study)
	case LevelSeries:
		p = SeriesPath(r.Study, r.Series)
	default:
		p = InstancePath(r.Study, r.Series, r.Instance)
	}
	if r.Sub != "" {
		p += "/" + r.Sub
	}
	return p
}

// IsSearch reports whether r names a QIDO-RS search resource: "/studies",
// "/series" or "/instances" at the root, "series" or "instances" under a
// study, or "instances" under a series. "/studies" is also the STOW-RS
// resource; the request method tells them apart.
func (r Request) IsSearch() bool {
	switch r.Level {
	case LevelRoot:
		return true
	case LevelStudy:
		return r.Sub == "series" || r.Sub == "instances"
	case LevelSeries:
		return r.Sub == "instances"
	}
	return false
}

// StudyPath returns "/studies/{study}". The UID is not escaped or validated:
// callers must pass a UID for which ValidUID is true.
func StudyPath(study string) string {
	return "/studies/" + study
}

// SeriesPath returns "/studies/{study}/series/{series}". The UIDs are not
// escaped or validated: callers must pass UIDs for which ValidUID is true.
func SeriesPath(study, series string) string {
	return "/studies/" + study + "/series/" + series
}

// InstancePath returns "/studies/{study}/series/{series}/instances/{instance}".
// The UIDs are not escaped or validated: callers must pass UIDs for which
// ValidUID is true.
func InstancePath(study, series, instance string) string {
	return "/studies/" + study + "/series/" + series + "/instances/" + instance
}

// ParsePath parses a DICOMweb path relative to the gateway's DICOMweb base,
// for instance "/studies/1.2/series/3.4/instances/5.6/frames/1,2" once a
// "/wado-rs" prefix has been stripped. rawPath is the escaped path as sent by
// the client (URL.EscapedPath), without query or fragment.
//
// It accepts exactly these forms, where {s}, {se} and {i} are UIDs for which
// ValidUID is true, taken literally (a percent-escape in a UID is refused):
//
//	/studies                       /series              /instances
//	/studies/{s}                   /studies/{s}/series  /studies/{s}/instances
//	/studies/{s}/series/{se}       /studies/{s}/series/{se}/instances
//	/studies/{s}/series/{se}/instances/{i}
//
// Each UID-bearing form may be followed by one sub-resource:
//
//	/metadata  /rendered  /thumbnail  /pixeldata
//	/bulk/{tail}  /bulkdata/{tail}
//
// and the instance form also by
//
//	/frames/{list}  /frames/{list}/rendered  /frames/{list}/thumbnail
//
// where {list} is a comma-separated list of frame numbers, each a decimal
// integer from 1 to 2147483647 without leading zeros, and {tail} is one or
// more segments of RFC 3986 path characters (unreserved, sub-delims, ':',
// '@' and percent-escapes). Keywords are case-sensitive.
//
// It refuses, with a *PathError of KindMalformed: a path that does not
// start with '/', is longer than MaxPathLength bytes, has an empty segment
// (including a trailing slash), a "." or ".." segment, a control character,
// a byte that is not an RFC 3986 path character (such as '\', a space, '?',
// '#' or any non-ASCII byte), a malformed percent-escape, or an escape of
// '/', '\', '.' or a control character (such as %2F, %5C, %2E, %00)
// anywhere. It refuses an invalid UID with KindBadUID, and any other path,
// "/" included, with KindUnknownPath. The checks are made in that order, so
// "/studies/.." is malformed, not a bad UID.
func ParsePath(rawPath string) (Request, error) {
	if err := checkRawPath(rawPath); err != nil {
		return Request{}, err
	}
	if rawPath == "/" {
		return Request{}, unknownPath(rawPath)
	}
	segs := strings.Split(rawPath[1:], "/")
	for _, s := range segs {
		if s == "" {
			return Request{}, malformed("the path " + quote(rawPath) + " has an empty segment")
		}
		if s == "." || s == ".." {
			return Request{}, malformed("the path " + quote(rawPath) + " has a \".\" or \"..\" segment")
		}
	}

	var r Request
	switch segs[0] {
	case "studies", "series", "instances":
	default:
		return Request{}, unknownPath(rawPath)
	}
	if len(segs) == 1 {
		r.Sub = segs[0]
		return r, nil
	}
	if segs[0] != "studies" {
		return Request{}, unknownPath(rawPath)
	}

	// Walk /studies/{s}[/series/{se}[/instances/{i}]].
	levels := [...]struct {
		keyword string
		name    string
		level   Level
		field   *string
	}{
		{"studies", "study", LevelStudy, &r.Study},
		{"series", "series", LevelSeries, &r.Series},
		{"instances", "instance", LevelInstance, &r.Instance},
	}
	i := 0 // index in segs of the current keyword
	for _, lv := range levels {
		if i >= len(segs) || segs[i] != lv.keyword || i+1 >= len(segs) {
			break
		}
		uid := segs[i+1]
		if p := uidProblem(uid); p != "" {
			return Request{}, &PathError{Kind: KindBadUID,
				Message: "the " + lv.name + " UID " + quote(uid) + " is not a valid DICOM UID: it " + p}
		}
		*lv.field = uid
		r.Level = lv.level
		i += 2
	}
	rest := segs[i:]
	if !validSub(r.Level, rest) {
		return Request{}, unknownPath(rawPath)
	}
	if len(rest) > 0 {
		off := 0 // offset of segs[i] in rawPath
		for _, s := range segs[:i] {
			off += 1 + len(s)
		}
		r.Sub = rawPath[off+1:]
	}
	return r, nil
}

// validSub reports whether rest, the segments after the deepest UID of a
// path at level lv, is a sub-resource ParsePath accepts.
func validSub(lv Level, rest []string) bool {
	if len(rest) == 0 {
		return true
	}
	switch rest[0] {
	case "metadata", "rendered", "thumbnail", "pixeldata":
		return len(rest) == 1
	case "bulk", "bulkdata":
		// The characters of the tail were checked by checkRawPath.
		return len(rest) >= 2
	case "series":
		return lv == LevelStudy && len(rest) == 1
	case "instances":
		return (lv == LevelStudy || lv == LevelSeries) && len(rest) == 1
	case "frames":
		if lv != LevelInstance || len(rest) < 2 || len(rest) > 3 || !validFrameList(rest[1]) {
			return false
		}
		return len(rest) == 2 || rest[2] == "rendered" || rest[2] == "thumbnail"
	}
	return false
}

// validFrameList reports whether s is a comma-separated list of frame
// numbers, each from 1 to 2147483647 written without leading zeros.
func validFrameList(s string) bool {
	for f := range strings.SplitSeq(s, ",") {
		if f == "" || f[0] == '0' || len(f) > 10 {
			return false
		}
		n, err := strconv.ParseUint(f, 10, 31)
		if err != nil || n == 0 {
			return false
		}
	}
	return true
}

// checkRawPath applies the character-level rules of ParsePath to the whole
// raw path: leading slash, length, allowed bytes and percent-escapes.
func checkRawPath(p string) error {
	if len(p) > MaxPathLength {
		return malformed("the path is too long (" + strconv.Itoa(len(p)) +
			" bytes; the limit is " + strconv.Itoa(MaxPathLength) + ")")
	}
	if p == "" || p[0] != '/' {
		return malformed("the path " + quote(p) + " does not start with '/'")
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c < 0x20 || c == 0x7f:
			return malformed("the path " + quote(p) + " contains a control character")
		case c == '%':
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return malformed("the path " + quote(p) + " contains a malformed percent-escape")
			}
			d := unhex(p[i+1])<<4 | unhex(p[i+2])
			if d == '/' || d == '\\' || d == '.' || d < 0x20 || d == 0x7f {
				return malformed("the path " + quote(p) + " contains an encoded '/', '\\', '.' or control character (" + p[i:i+3] + ")")
			}
			i += 2
		case !isPathChar(c):
			return malformed("the path " + quote(p) + " contains the character " + quoteByte(c) + ", which is not allowed in a path")
		}
	}
	return nil
}

// isPathChar reports whether c may appear literally in a path: an RFC 3986
// pchar other than a percent-escape, or '/'.
func isPathChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '.', '_', '~', // unreserved
		'!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', // sub-delims
		':', '@', '/':
		return true
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

func malformed(msg string) *PathError {
	return &PathError{Kind: KindMalformed, Message: msg}
}

func unknownPath(p string) *PathError {
	return &PathError{Kind: KindUnknownPath,
		Message: "the path " + quote(p) + " names no DICOMweb resource this gateway serves"}
}
