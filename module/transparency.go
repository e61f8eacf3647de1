package module

import (
	"bytes"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/fhirimaging/caddy-fhir-imaging/module/fhirjson"
)

// This file holds what makes the gateway transparent to FHIR clients: the
// public base the client called, base swaps in both directions, and the
// removal of injected extensions from what clients write back.

// bases are the two sides of one request: what the client sees and what the
// FHIR server sees.
type bases struct {
	public   string // e.g. https://gw.example.org/api/fhir
	upstream string // the app's fhir setting, e.g. http://127.0.0.1:8080/fhir
	// seen is the base a FHIR server writes when it is handed the client's
	// Host (reverse_proxy's default): the request's host with the
	// upstream's path.
	seen string
	// origin anchors path-style dicomweb_base and wado_uri_base: the
	// client's scheme and host and a trusted proxy's prefix, or the scheme
	// and host of public_base.
	origin string
	// toPublic swaps upstream addresses in answers; toUpstream swaps the
	// public base in requests and drops the injected extensions.
	toPublic *fhirjson.Transformer
}

// publicBase returns the FHIR base URL the client called: scheme, host and
// port, and the path prefix under which this route serves the FHIR server's
// base. X-Forwarded-Proto, X-Forwarded-Host and X-Forwarded-Prefix are
// honoured only when the request comes from one of the server's
// trusted_proxies. A configured public_base wins over all of that.
func (h *FHIRRewrite) publicBase(r *http.Request) string {
	if h.PublicBase != "" {
		return h.PublicBase
	}
	origin, prefix := requestOrigin(r)
	return origin + prefix + h.publicPath(r)
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

// requestOrigin returns the scheme and host the client called, and the path
// prefix a proxy in front put before this server's paths. X-Forwarded-Proto,
// X-Forwarded-Host and X-Forwarded-Prefix count only when the request comes
// from one of the server's trusted_proxies.
func requestOrigin(r *http.Request) (origin, prefix string) {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	host := r.Host
	if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); trusted {
		switch p := strings.ToLower(firstValue(r.Header.Get("X-Forwarded-Proto"))); p {
		case "http", "https":
			scheme = p
		}
		if fh := firstValue(r.Header.Get("X-Forwarded-Host")); fh != "" && validHostPort(fh) {
			host = fh
		}
		if fp := strings.TrimRight(firstValue(r.Header.Get("X-Forwarded-Prefix")), "/"); strings.HasPrefix(fp, "/") && validPathPrefix(fp) {
			prefix = fp
		}
	}
	return scheme + "://" + host, prefix
}

// publicPath works out the path prefix the client used for the FHIR base.
// The request reaches this handler with the path that goes upstream,
// <upstream-path><rest>; the client sent <public-path><rest>. When the two
// cannot be lined up the upstream path is assumed.
func (h *FHIRRewrite) publicPath(r *http.Request) string {
	orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request)
	if !ok || orig.URL == nil {
		return h.upPath
	}
	cur := r.URL.EscapedPath()
	if !strings.HasPrefix(cur, h.upPath) {
		return h.upPath
	}
	rest := cur[len(h.upPath):]
	if rest != "" && rest[0] != '/' {
		return h.upPath
	}
	op := orig.URL.EscapedPath()
	if !strings.HasSuffix(op, rest) {
		return h.upPath
	}
	return strings.TrimRight(op[:len(op)-len(rest)], "/")
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

// requestBases returns the bases of one request and the transformer for
// answers, or nil when the public and the upstream base are the same or
// rebasing is off.
func (h *FHIRRewrite) requestBases(r *http.Request) bases {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	origin, prefix := requestOrigin(r)
	b := bases{
		public:   strings.TrimRight(h.publicBase(r), "/"),
		upstream: h.app.FHIR,
		seen:     scheme + "://" + r.Host + h.upPath,
		origin:   origin + prefix,
	}
	if h.PublicBase != "" {
		b.origin = schemeHost(h.PublicBase)
	}
	if h.DisableRebase || b.upstream == "" || fhirjson.NormalizeBase(b.public) == fhirjson.NormalizeBase(b.upstream) {
		return b
	}
	rules := []fhirjson.Rebase{{From: b.upstream, To: b.public}}
	// A FHIR server that was handed the client's Host (reverse_proxy's
	// default) writes links on that host with its own path.
	if fhirjson.NormalizeBase(b.seen) != fhirjson.NormalizeBase(b.public) && validHostPort(r.Host) {
		rules = append(rules, fhirjson.Rebase{From: b.seen, To: b.public})
	}
	tr, err := fhirjson.NewTransformer(rules, nil, fhirjson.NotPatch)
	if err != nil {
		h.logger.Debug("no rebasing for this request", zap.String("public_base", b.public), zap.Error(err))
		return b
	}
	b.toPublic = tr
	return b
}

// writeBack prepares a request that writes to the FHIR server: a JSON body
// (a resource, a Bundle, a JSON Patch or a FHIRPath Patch) up to
// MaxBodySize loses the extensions this gateway injects, has the public
// base swapped for the upstream one, and gets back the stored addresses of
// the Endpoints it was given the gateway's address in; everything else in
// it stays as it was. Larger, compressed or non-JSON bodies go on
// unchanged. An error means the request must not go on.
func (h *FHIRRewrite) writeBack(r *http.Request, b bases) error {
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
	default:
		return nil
	}
	var rules []fhirjson.Rebase
	if b.toPublic != nil {
		rules = []fhirjson.Rebase{{From: b.public, To: b.upstream}}
		if tr, err := fhirjson.NewTransformer(rules, nil, fhirjson.NotPatch); err == nil {
			for _, name := range []string{"Content-Location", "Link"} {
				if v := r.Header.Get(name); v != "" {
					if nv, ok := rebaseHeader(tr, name, v); ok {
						r.Header.Set(name, nv)
					}
				}
			}
		}
	}
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	if ce := strings.TrimSpace(r.Header.Get("Content-Encoding")); ce != "" && !strings.EqualFold(ce, "identity") {
		return nil
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	patch := fhirjson.NotPatch
	switch {
	case err != nil:
		return nil
	case mt == "application/json-patch+json":
		patch = fhirjson.JSONPatch
	case !isFHIRJSON(mt):
		return nil
	}
	if r.ContentLength > h.MaxBodySize {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, h.MaxBodySize+1))
	if err != nil || int64(len(body)) > h.MaxBodySize {
		// Too large (or cut short): what was read goes first, the rest follows.
		r.Body = readCloser{io.MultiReader(bytes.NewReader(body), r.Body), r.Body}
		return nil
	}
	_ = r.Body.Close()
	out := body
	tr, err := fhirjson.NewTransformer(rules, h.dropExt, patch)
	if err == nil {
		if o, changed, err := tr.Apply(body); err == nil && changed {
			out = o
			h.logger.Debug("write-back: request body cleaned", zap.Int("before", len(body)), zap.Int("after", len(out)))
		}
	}
	if h.readdressing() && patch == fhirjson.NotPatch {
		if out, err = h.restoreAddresses(r, out, b); err != nil {
			return err
		}
	}
	setBody(r, out)
	return nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// setBody replaces a request's body with b and makes the length headers
// agree with it.
func setBody(r *http.Request, b []byte) {
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	r.ContentLength = int64(len(b))
	r.TransferEncoding = nil
	r.Header.Del("Transfer-Encoding")
	r.Header.Set("Content-Length", strconv.Itoa(len(b)))
}

// rebaseHeader rewrites the URL of a Location or Content-Location header,
// or the URLs of a Link header.
func rebaseHeader(tr *fhirjson.Transformer, name, v string) (string, bool) {
	if strings.EqualFold(name, "Link") {
		return tr.LinkHeader(v)
	}
	return tr.URL(v)
}

// urlHeaders are the response headers that carry FHIR URLs.
var urlHeaders = []string{"Location", "Content-Location", "Link"}

// rebaseURLHeaders returns a hook that swaps upstream addresses for public
// ones in the URL headers of an answer when its header is written, whether
// its body is then buffered, rewritten or streamed.
func rebaseURLHeaders(tr *fhirjson.Transformer) func(http.Header) {
	return func(hdr http.Header) {
		for _, name := range urlHeaders {
			vals := hdr.Values(name) // the header's own slice: edited in place
			for i, v := range vals {
				if nv, ok := rebaseHeader(tr, name, v); ok {
					vals[i] = nv
				}
			}
		}
	}
}
