package module

import (
	"mime"
	"strings"
)

// Small HTTP helpers of the handlers: URLs, media types, header values.

func absolute(origin, base string) string {
	if strings.HasPrefix(base, "/") {
		return origin + base
	}
	return base
}

// isFHIRJSON reports whether a Content-Type is JSON as FHIR servers send it
// (application/fhir+json, application/json, or the older
// application/json+fhir), whatever its parameters and case.
func isFHIRJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	switch mt {
	case "application/fhir+json", "application/json", "application/json+fhir":
		return true
	}
	return false
}

func headerHasToken(values []string, token string) bool {
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), token) {
				return true
			}
		}
	}
	return false
}

// schemeHost returns the scheme and host of an absolute URL.
func schemeHost(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		if j := strings.IndexByte(u[i+3:], '/'); j >= 0 {
			return u[:i+3+j]
		}
	}
	return strings.TrimRight(u, "/")
}

func firstValue(v string) string {
	v, _, _ = strings.Cut(v, ",")
	return strings.TrimSpace(v)
}

// validHostPort accepts a host[:port] without anything that could change
// the meaning of a URL built from it.
func validHostPort(s string) bool {
	if len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-.:[]_", c) >= 0) {
			return false
		}
	}
	return s != ""
}

func validPathPrefix(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == '?' || c == '#' || c == '\\' || c >= 0x7f {
			return false
		}
	}
	return len(s) <= 1024
}
