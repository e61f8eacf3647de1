package access

import (
	"net/http"
	"slices"
	"strings"
)

// CORS answers browser apps from the origins it allows: preflight requests
// are answered without a token, and every answer to an allowed origin,
// errors included, says that origin may read it, so that a SMART app in a
// browser sees a 401 or 403 for what it is rather than a network error.
type CORS struct {
	any     bool
	origins map[string]bool
}

// NewCORS returns the CORS policy for the given origins ("*" allows any),
// or nil when there are none: no CORS headers at all.
func NewCORS(origins []string) *CORS {
	if len(origins) == 0 {
		return nil
	}
	c := &CORS{origins: map[string]bool{}}
	for _, o := range origins {
		if o == "*" {
			c.any = true
		}
		c.origins[strings.TrimRight(strings.ToLower(o), "/")] = true
	}
	return c
}

// corsMethods are the methods the gateway's routes take.
const corsMethods = "GET, HEAD, POST, PUT, PATCH, DELETE"

// corsExposed are the answer headers a browser app may read.
const corsExposed = "WWW-Authenticate, Content-Location, Location, ETag, Link, Warning, Retry-After"

// allowed returns the Access-Control-Allow-Origin value for the request's
// Origin, or "".
func (c *CORS) allowed(r *http.Request) string {
	if c == nil {
		return ""
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return ""
	}
	if c.any {
		return "*"
	}
	if c.origins[strings.TrimRight(strings.ToLower(origin), "/")] {
		return origin
	}
	return ""
}

// Preflight answers a CORS preflight request (OPTIONS with Origin and
// Access-Control-Request-Method) and reports whether it did. A preflight
// from an origin that is not allowed gets 204 without any CORS header, so
// the browser refuses the actual request.
func (c *CORS) Preflight(w http.ResponseWriter, r *http.Request) bool {
	if c == nil || r.Method != http.MethodOptions || r.Header.Get("Origin") == "" || r.Header.Get("Access-Control-Request-Method") == "" {
		return false
	}
	h := w.Header()
	h.Add("Vary", "Origin")
	h.Add("Vary", "Access-Control-Request-Method")
	h.Add("Vary", "Access-Control-Request-Headers")
	if origin := c.allowed(r); origin != "" {
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Methods", corsMethods)
		if req := r.Header.Get("Access-Control-Request-Headers"); req != "" && validHeaderList(req) {
			h.Set("Access-Control-Allow-Headers", req)
		}
		h.Set("Access-Control-Max-Age", "600")
	}
	w.WriteHeader(http.StatusNoContent)
	return true
}

// Decorate sets the CORS headers of an actual answer to r on h, replacing
// any an upstream sent.
func (c *CORS) Decorate(h http.Header, r *http.Request) {
	if c == nil {
		return
	}
	h.Del("Access-Control-Allow-Origin")
	h.Del("Access-Control-Expose-Headers")
	if !slices.Contains(h.Values("Vary"), "Origin") {
		h.Add("Vary", "Origin")
	}
	if origin := c.allowed(r); origin != "" {
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Expose-Headers", corsExposed)
	}
}

// validHeaderList accepts a comma-separated list of header names, so that
// what is echoed back cannot carry anything else.
func validHeaderList(s string) bool {
	if len(s) > 1024 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_, ", c) >= 0) {
			return false
		}
	}
	return true
}
