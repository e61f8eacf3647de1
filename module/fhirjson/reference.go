package fhirjson

import "strings"

// ValidID reports whether s is a FHIR logical id: 1 to 64 characters of
// letters, digits, '-' and '.'. Only such ids are ever put in a look-up URL.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// stripHistory removes a trailing "/_history/<version>" from a reference.
func stripHistory(ref string) string {
	if i := strings.LastIndex(ref, "/_history/"); i >= 0 && !strings.Contains(ref[i+len("/_history/"):], "/") {
		return ref[:i]
	}
	return ref
}

// SplitReference reads a FHIR reference or request URL of the form
// "[base/]Type[/id][/_history/version][?query]" into the base before the
// type ("" for a relative one), the resource type and the id ("" when the
// URL names a type only, as a create or a search does). It returns three
// empty strings when the URL names no resource type. The id is not
// checked; see ValidID.
func SplitReference(u string) (base, resourceType, id string) {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		u = u[:i]
	}
	u = strings.TrimRight(stripHistory(strings.TrimRight(u, "/")), "/")
	last, rest := lastSegment(u)
	if prev, before := lastSegment(rest); rest != "" && IsResourceType(prev) {
		return before, prev, last
	}
	if IsResourceType(last) {
		return rest, last, ""
	}
	return "", "", ""
}

// lastSegment splits u at its last slash.
func lastSegment(u string) (last, rest string) {
	i := strings.LastIndexByte(u, '/')
	if i < 0 {
		return u, ""
	}
	return u[i+1:], u[:i]
}

// IsResourceType reports whether s looks like a FHIR resource type name:
// an upper-case letter, then letters.
func IsResourceType(s string) bool {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// NormalizeBase returns a FHIR base URL in the form used for comparisons:
// scheme and host lower-cased, default port dropped, trailing slash dropped.
func NormalizeBase(u string) string {
	u = strings.TrimRight(strings.TrimSpace(u), "/")
	i := strings.Index(u, "://")
	if i < 0 {
		return u
	}
	scheme := strings.ToLower(u[:i])
	rest := u[i+3:]
	host, path := rest, ""
	if j := strings.IndexAny(rest, "/?#"); j >= 0 {
		host, path = rest[:j], rest[j:]
	}
	host = strings.ToLower(host)
	switch {
	case scheme == "http" && strings.HasSuffix(host, ":80"):
		host = strings.TrimSuffix(host, ":80")
	case scheme == "https" && strings.HasSuffix(host, ":443"):
		host = strings.TrimSuffix(host, ":443")
	}
	return scheme + "://" + host + path
}
