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

// endpointID returns the id of a reference of the form "[base/]Endpoint/<id>"
// (a version suffix already removed) and the base before it ("" for a
// relative reference).
func endpointID(ref string) (base, id string, ok bool) {
	i := strings.LastIndex(ref, "Endpoint/")
	if i < 0 || (i > 0 && ref[i-1] != '/') {
		return "", "", false
	}
	id = ref[i+len("Endpoint/"):]
	if !ValidID(id) {
		return "", "", false
	}
	return strings.TrimSuffix(ref[:i], "/"), id, true
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
