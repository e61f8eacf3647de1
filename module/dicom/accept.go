package dicom

import (
	"strings"
)

// WantsOctets reports whether r asks for raw pixel or bulk data (frames,
// bulk data, pixel data), the resources PS3.18 answers with
// application/octet-stream unless the client asks for a compressed type.
func (r Request) WantsOctets() bool {
	if r.Level != LevelInstance && r.Level != LevelSeries && r.Level != LevelStudy {
		return false
	}
	head, rest, _ := strings.Cut(r.Sub, "/")
	switch head {
	case "bulk", "bulkdata", "pixeldata":
		return true
	case "frames":
		// frames/{list}, not frames/{list}/rendered or /thumbnail.
		return !strings.Contains(rest, "/")
	}
	return false
}

// ReplaceWildcardType returns accept with the type parameter of every
// multipart/related media range that asks for any type (type="*/*")
// replaced by mediaType, and whether anything changed. Every other media
// range, and every other parameter (transfer-syntax, q), is kept as it was
// written; the ranges keep their order. mediaType is a type/subtype such
// as "application/octet-stream".
//
// PS3.18 lets a client ask for frames or bulk data with
// `multipart/related; type="*/*"`, leaving the choice to the origin
// server; some archives refuse it (Orthanc's DICOMweb plugin answers 400),
// and every archive must serve application/octet-stream.
func ReplaceWildcardType(accept, mediaType string) (string, bool) {
	if !strings.Contains(accept, "*/*") {
		return accept, false
	}
	ranges := splitQuoted(accept, ',')
	changed := false
	for i, rg := range ranges {
		params := splitQuoted(rg, ';')
		if len(params) < 2 || !strings.EqualFold(strings.TrimSpace(params[0]), "multipart/related") {
			continue
		}
		for j := 1; j < len(params); j++ {
			k, v, ok := strings.Cut(params[j], "=")
			if !ok || !strings.EqualFold(strings.TrimSpace(k), "type") {
				continue
			}
			if strings.Trim(strings.TrimSpace(v), `"`) != "*/*" {
				continue
			}
			params[j] = k + `="` + mediaType + `"`
			changed = true
		}
		ranges[i] = strings.Join(params, ";")
	}
	if !changed {
		return accept, false
	}
	return strings.Join(ranges, ","), true
}

// splitQuoted splits s at every sep that is not inside a quoted string
// (RFC 9110 quoted-string, with backslash escapes).
func splitQuoted(s string, sep byte) []string {
	var out []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == sep:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}
