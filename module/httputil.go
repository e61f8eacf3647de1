package module

import (
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
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

// isFHIRXML reports whether a Content-Type is FHIR XML (or plain XML, which
// FHIR servers also answer with).
func isFHIRXML(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	switch mt {
	case "application/fhir+xml", "application/xml+fhir", "application/xml", "text/xml":
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

// dotSegments reports whether the path the client sent (before Caddy
// cleaned it for route matching) holds a "." or ".." segment, plainly or
// percent-encoded (%2e, %2E, and an encoded slash around one), or an
// escape that does not decode. Caddy matches routes on the cleaned path, so
// such a request can walk from one route into another
// (/wado-rs/studies/1/../../fhir/Patient reaches the /fhir route); every
// gateway handler refuses it before doing anything.
func dotSegments(r *http.Request) bool {
	raw := r.RequestURI
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.RequestURI != "" {
		raw = orig.RequestURI
	}
	if raw == "" && r.URL != nil {
		raw = r.URL.EscapedPath()
	}
	raw, _, _ = strings.Cut(raw, "?")
	if i := strings.Index(raw, "://"); i >= 0 { // an absolute-form request target
		if j := strings.IndexByte(raw[i+3:], '/'); j >= 0 {
			raw = raw[i+3+j:]
		} else {
			raw = ""
		}
	}
	p, err := url.PathUnescape(raw)
	if err != nil {
		return true
	}
	for _, seg := range strings.Split(strings.ReplaceAll(p, "\\", "/"), "/") {
		// A Java server drops ";parameters" from a segment before it
		// resolves "..": "..;x" is a dot segment there.
		seg, _, _ = strings.Cut(seg, ";")
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// dotSegmentsMessage says why a request with dot segments is refused.
const dotSegmentsMessage = "the request path must not contain \".\" or \"..\" segments, plain or percent-encoded"

// refuseDotSegments answers 400 for a request whose path holds dot segments
// (see dotSegments) and reports whether it did.
func refuseDotSegments(w http.ResponseWriter, r *http.Request) bool {
	if !dotSegments(r) {
		return false
	}
	writeError(w, http.StatusBadRequest, dotSegmentsMessage)
	return true
}
