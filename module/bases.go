package module

import (
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/fhirimaging/caddy-fhir-imaging/module/fhirjson"
	"github.com/fhirimaging/caddy-fhir-imaging/module/fhirxml"
)

// The two bases of a FHIR request, which keep the gateway transparent to
// FHIR clients: the public base the client called and the FHIR server's own
// (upstream) base, and the swap between them in URL headers. Bodies are
// swapped by the request side (write-back) and the response side.

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
	// toPublic swaps upstream addresses in JSON answers, toPublicXML in
	// XML answers.
	toPublic    *fhirjson.Transformer
	toPublicXML *fhirxml.Rebaser
}

// rebasers are the prepared swaps of one public base, for JSON and XML.
type rebasers struct {
	json *fhirjson.Transformer
	xml  *fhirxml.Rebaser
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
	seen := fhirjson.NormalizeBase(b.seen) != fhirjson.NormalizeBase(b.public) && validHostPort(r.Host)
	key := b.public
	if seen {
		key += "\x00" + b.seen
	}
	if rbs, ok := h.transformers.Get(key); ok {
		b.toPublic, b.toPublicXML = rbs.json, rbs.xml
		return b
	}
	rules := []fhirjson.Rebase{{From: b.upstream, To: b.public}}
	xmlRules := []fhirxml.Rebase{{From: b.upstream, To: b.public}}
	// A FHIR server that was handed the client's Host (reverse_proxy's
	// default) writes links on that host with its own path.
	if seen {
		rules = append(rules, fhirjson.Rebase{From: b.seen, To: b.public})
		xmlRules = append(xmlRules, fhirxml.Rebase{From: b.seen, To: b.public})
	}
	tr, err := fhirjson.NewTransformer(rules, nil, fhirjson.NotPatch)
	if err != nil {
		h.logger.Debug("no rebasing for this request", zap.String("public_base", b.public), zap.Error(err))
		return b
	}
	rx, err := fhirxml.NewRebaser(xmlRules)
	if err != nil {
		h.logger.Debug("no rebasing for this request", zap.String("public_base", b.public), zap.Error(err))
		return b
	}
	h.transformers.Put(key, rebasers{json: tr, xml: rx}, time.Hour)
	b.toPublic, b.toPublicXML = tr, rx
	return b
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

// rebaseHeader rewrites the URL of a Location or Content-Location header,
// or the URLs of a Link header.
func rebaseHeader(tr *fhirjson.Transformer, name, v string) (string, bool) {
	if strings.EqualFold(name, "Link") {
		return tr.LinkHeader(v)
	}
	return tr.URL(v)
}
