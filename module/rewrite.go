package module

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/encode"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/fhirimaging/caddy-fhir-imaging/module/fhirjson"
	"github.com/fhirimaging/caddy-fhir-imaging/module/telemetry"
)

func init() {
	caddy.RegisterModule(FHIRRewrite{})
}

// Rewrite modes.
const (
	// ModeProxy points injected URLs at this gateway, and only for Endpoints
	// that map to a configured archive.
	ModeProxy = "proxy"
	// ModeDirect points injected URLs at the Endpoint's own address.
	ModeDirect = "direct"
)

// Endpoint address modes.
const (
	// AddressesPublic answers archive Endpoints with the gateway's base.
	AddressesPublic = "public"
	// AddressesStored answers Endpoints as the FHIR server stores them.
	AddressesStored = "stored"
)

// FHIRRewrite is HTTP middleware for FHIR routes, placed before
// reverse_proxy. In every JSON response that carries ImagingStudy resources
// it adds to each series and instance an extension with a resolved,
// ready-to-use WADO-RS URL (and to each instance a WADO-URI URL), computed
// from ImagingStudy.endpoint and ImagingStudy.series.endpoint. Everything
// else in the body is left byte for byte as it was, and responses it should
// not rewrite pass through untouched.
//
// It also keeps the gateway transparent: the FHIR server's own base URL is
// swapped for the public one in answers (JSON string values, Location,
// Content-Location and Link headers) and back in requests, and the
// extensions it injects are removed from what clients write back (PUT,
// POST, PATCH, transaction and batch Bundles), so that a read-modify-write
// through the gateway stores what a direct one would.
type FHIRRewrite struct {
	// DICOMwebBase is where this gateway serves DICOMweb. A path is taken
	// relative to the request's scheme and host; an absolute URL is used as
	// it is. Default: /wado-rs.
	DICOMwebBase string `json:"dicomweb_base,omitempty"`

	// WADOURIBase is where this gateway serves WADO-URI, relative or
	// absolute like DICOMwebBase. Default: /wado.
	WADOURIBase string `json:"wado_uri_base,omitempty"`

	// Mode is "proxy" (URLs point at this gateway, only for Endpoints that
	// map to a configured archive) or "direct" (URLs point at the
	// Endpoint's own address). Default: proxy.
	Mode string `json:"mode,omitempty"`

	// ExtensionBase prefixes the URLs of the injected extensions, which are
	// <extension_base>wado-rs and <extension_base>wado-uri. Default:
	// https://fhirimaging.github.io/caddy-fhir-imaging/StructureDefinition/.
	ExtensionBase string `json:"extension_base,omitempty"`

	// MaxBodySize is the largest response body, in bytes after
	// decompression, that is rewritten; larger ones pass through unchanged
	// and are never held in memory whole. Default: 33554432 (32 MiB).
	MaxBodySize int64 `json:"max_body_size,omitempty"`

	// PublicBase is the FHIR base URL that clients use, such as
	// https://gw.example.org/fhir. Default: the base each request came in
	// on: its scheme, host and port, and the path prefix of this route
	// (X-Forwarded-Proto, X-Forwarded-Host and X-Forwarded-Prefix are
	// honoured only from the server's trusted_proxies).
	PublicBase string `json:"public_base,omitempty"`

	// EndpointAddresses says what the address of an Endpoint that maps to a
	// configured archive looks like in answers (read, searched, included or
	// contained): "public", the gateway's own DICOMweb base (or WADO-URI
	// base, for a WADO-URI Endpoint), so that clients that build URLs from
	// Endpoint.address (SMART Imaging Access apps) come through the gateway
	// and never see an archive's internal address; or "stored", as the FHIR
	// server has it. In mode direct it is always "stored". When a client
	// writes back an Endpoint whose address is the gateway's base, the
	// stored address is put back. Default: public.
	EndpointAddresses string `json:"endpoint_addresses,omitempty"`

	// DisableRebase turns off swapping the upstream FHIR base (the
	// fhir_imaging app's fhir setting) for the public base in answers and
	// back in requests. Default: false, so the bases are swapped whenever
	// they differ.
	DisableRebase bool `json:"disable_rebase,omitempty"`

	app        *App
	ext        fhirjson.Extensions
	dropExt    []string // the injected extensions' URLs, removed on write-back
	localBases []string
	upPath     string // path of the upstream FHIR base
	reads      *http.Client
	logger     *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (FHIRRewrite) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.fhir_rewrite",
		New: func() caddy.Module { return new(FHIRRewrite) },
	}
}

// Provision fills in defaults and connects to the fhir_imaging app.
func (h *FHIRRewrite) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.DICOMwebBase == "" {
		h.DICOMwebBase = "/wado-rs"
	}
	if h.WADOURIBase == "" {
		h.WADOURIBase = "/wado"
	}
	if h.Mode == "" {
		h.Mode = ModeProxy
	}
	if h.ExtensionBase == "" {
		h.ExtensionBase = fhirjson.DefaultExtensionBase
	}
	if h.EndpointAddresses == "" {
		h.EndpointAddresses = AddressesPublic
	}
	if h.MaxBodySize == 0 {
		h.MaxBodySize = 32 << 20
	}
	h.DICOMwebBase = strings.TrimRight(h.DICOMwebBase, "/")
	h.WADOURIBase = strings.TrimRight(h.WADOURIBase, "/")
	h.PublicBase = strings.TrimRight(h.PublicBase, "/")
	h.ext = fhirjson.ExtensionsFor(h.ExtensionBase)
	h.dropExt = []string{h.ext.WADORS, h.ext.WADOURI}
	appIface, err := ctx.App("fhir_imaging")
	if err != nil {
		return fmt.Errorf("loading fhir_imaging app: %v", err)
	}
	h.app = appIface.(*App)
	h.reads = &http.Client{Timeout: time.Duration(h.app.LookupTimeout)}
	if h.app.FHIR != "" {
		h.localBases = []string{fhirjson.NormalizeBase(h.app.FHIR)}
		if i := strings.Index(h.app.FHIR, "://"); i >= 0 {
			if j := strings.Index(h.app.FHIR[i+3:], "/"); j >= 0 {
				h.upPath = h.app.FHIR[i+3+j:]
			}
		}
	}
	return nil
}

// Validate checks the configuration.
func (h *FHIRRewrite) Validate() error {
	if h.Mode != ModeProxy && h.Mode != ModeDirect {
		return fmt.Errorf("mode must be %q or %q, not %q", ModeProxy, ModeDirect, h.Mode)
	}
	if h.EndpointAddresses != AddressesPublic && h.EndpointAddresses != AddressesStored {
		return fmt.Errorf("endpoint_addresses must be %q or %q, not %q", AddressesPublic, AddressesStored, h.EndpointAddresses)
	}
	for _, b := range []string{h.DICOMwebBase, h.WADOURIBase} {
		if strings.HasPrefix(b, "/") {
			continue
		}
		if err := checkHTTPURL(b); err != nil {
			return fmt.Errorf("base %q is neither a path nor an http(s) URL: %v", b, err)
		}
	}
	if h.MaxBodySize < 0 {
		return fmt.Errorf("max_body_size must not be negative")
	}
	if h.PublicBase != "" {
		if err := checkHTTPURL(h.PublicBase); err != nil {
			return fmt.Errorf("public_base: %v", err)
		}
	}
	return nil
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// ServeHTTP cleans a write-back request, then captures the upstream answer
// when it may need rewriting (base swap, URL injection) and rewrites it;
// every other answer streams through with its URL headers rebased.
func (h *FHIRRewrite) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	b := h.requestBases(r)
	if az := h.app.Authorize; az != nil {
		if az.cors != nil {
			if az.cors.Preflight(w, r) {
				return nil
			}
			w = newHookWriter(w, func(hdr http.Header) { az.cors.Decorate(hdr, r) })
		}
		switch rel := h.relativePath(r); {
		case rel == smartConfigurationPath && (r.Method == http.MethodGet || r.Method == http.MethodHead):
			return h.serveSMARTConfiguration(w, r, next, b)
		case !h.guardSearch(w, r, rel, b):
			return nil
		}
	}
	if err := h.writeBack(r, b); err != nil {
		writeOutcome(w, http.StatusServiceUnavailable, "transient", err.Error())
		return nil
	}
	watch := watchWrite(r)
	if b.toPublic != nil {
		w = newHookWriter(w, rebaseURLHeaders(b.toPublic))
	}
	if r.Method == http.MethodHead || r.Method == http.MethodOptions {
		h.app.metrics.rewrites.WithLabelValues("passthrough_method").Inc()
		return next.ServeHTTP(w, r)
	}
	// Ask upstream only for encodings this handler can undo, so that a
	// compressed answer can still be rewritten.
	if len(r.Header.Values("Accept-Encoding")) > 0 {
		if accepted := encode.AcceptedEncodings(r, nil); slices.Contains(accepted, "gzip") || slices.Contains(accepted, "x-gzip") {
			r.Header.Set("Accept-Encoding", "gzip")
		} else {
			r.Header.Del("Accept-Encoding")
		}
	}
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 4<<20 {
			bufPool.Put(buf)
		}
	}()
	rec := &boundedRecorder{w: w, buf: buf, limit: int(h.MaxBodySize)}
	rec.ResponseRecorder = caddyhttp.NewResponseRecorder(w, buf, h.shouldBuffer)
	if err := next.ServeHTTP(rec, r); err != nil {
		return err
	}
	// A change accepted by the FHIR server must route the very next request.
	watch.done(h.app, rec.Status())
	if !rec.captured() {
		h.app.metrics.rewrites.WithLabelValues(h.passReason(rec)).Inc()
		return nil
	}
	ctx, span := telemetry.StartSpan(r.Context(), "fhir_imaging.rewrite")
	outcome := "unchanged"
	out, ok := h.rewrite(r.WithContext(ctx), w.Header(), rec.Status(), buf.Bytes(), b, &outcome)
	span.SetAttributes(attribute.String("fhir_imaging.outcome", outcome))
	span.End()
	h.app.metrics.rewrites.WithLabelValues(outcome).Inc()
	if !ok {
		return rec.WriteResponse()
	}
	hdr := w.Header()
	hdr.Set("Content-Length", strconv.Itoa(len(out)))
	if etag := hdr.Get("ETag"); etag != "" && !strings.HasPrefix(etag, "W/") {
		// The representation changed, so a strong validator no longer holds.
		hdr.Set("ETag", "W/"+etag)
	}
	w.WriteHeader(rec.Status())
	_, err := w.Write(out)
	return err
}

// passReason names why an answer streamed through without being looked at.
func (h *FHIRRewrite) passReason(rec *boundedRecorder) string {
	if rec.overflow {
		return "passthrough_too_large"
	}
	hdr := rec.Header()
	switch {
	case rec.Status() == http.StatusNoContent || rec.Status() == http.StatusNotModified || rec.Status() == http.StatusPartialContent:
		return "passthrough_status"
	case !isFHIRJSON(hdr.Get("Content-Type")):
		return "passthrough_not_json"
	case hdr.Get("Content-Length") != "" && !h.shouldBuffer(rec.Status(), hdr):
		return "passthrough_too_large"
	}
	return "passthrough_encoding"
}

// shouldBuffer decides from the status and headers whether an answer may be
// rewritten, before any of its body is read.
func (h *FHIRRewrite) shouldBuffer(status int, hdr http.Header) bool {
	// Error answers (OperationOutcome) are buffered too: their base is
	// swapped, though nothing is injected into them.
	if status < 200 || status == http.StatusNoContent || status == http.StatusPartialContent || status == http.StatusNotModified {
		return false
	}
	if !isFHIRJSON(hdr.Get("Content-Type")) {
		return false
	}
	switch strings.ToLower(strings.TrimSpace(hdr.Get("Content-Encoding"))) {
	case "", "identity", "gzip", "x-gzip":
	default:
		return false
	}
	if cl := hdr.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err != nil || n > h.MaxBodySize {
			return false
		}
	}
	return true
}

// rewrite returns the rewritten body and true, or false when the body is
// to be sent as it came. On success the headers are adjusted for a
// decompressed body.
//
// outcome is set to what happened, for metrics: rewritten (URLs injected),
// rebased (only base URLs swapped), unchanged, or passthrough_<reason>.
func (h *FHIRRewrite) rewrite(r *http.Request, hdr http.Header, status int, body []byte, b bases, outcome *string) ([]byte, bool) {
	gz := false
	switch strings.ToLower(strings.TrimSpace(hdr.Get("Content-Encoding"))) {
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			h.logger.Debug("not rewritten: gzip body unreadable", zap.Error(err))
			*outcome = "passthrough_encoding"
			return nil, false
		}
		plain, err := io.ReadAll(io.LimitReader(zr, h.MaxBodySize+1))
		if err != nil || int64(len(plain)) > h.MaxBodySize {
			h.logger.Debug("not rewritten: gzip body unreadable or over the size limit", zap.Error(err))
			*outcome = "passthrough_too_large"
			return nil, false
		}
		body, gz = plain, true
	}
	rebased := false
	if b.toPublic != nil {
		out, changed, err := b.toPublic.Apply(body)
		if err != nil {
			h.logger.Debug("not rewritten: malformed JSON", zap.Error(err))
			*outcome = "passthrough_malformed"
			return nil, false
		}
		body, rebased = out, changed
	}
	out, injected := h.inject(r, status, body, b, outcome)
	if !injected && !rebased {
		return nil, false
	}
	if injected {
		body = out
		*outcome = "rewritten"
	} else {
		*outcome = "rebased"
	}
	if gz {
		hdr.Del("Content-Encoding")
		if !headerHasToken(hdr.Values("Vary"), "Accept-Encoding") {
			hdr.Add("Vary", "Accept-Encoding")
		}
	}
	return body, true
}

// inject adds the WADO-RS and WADO-URI extensions to the ImagingStudies of
// a successful answer, gives its archive Endpoints the gateway's address
// (see EndpointAddresses), and reports whether it changed anything.
func (h *FHIRRewrite) inject(r *http.Request, status int, body []byte, b bases, outcome *string) ([]byte, bool) {
	readdress := h.readdressing()
	if status < 200 || status > 299 ||
		!bytes.Contains(body, []byte(`"ImagingStudy"`)) && !(readdress && bytes.Contains(body, []byte(`"Endpoint"`))) {
		return nil, false
	}
	local := append(h.localBases[:len(h.localBases):len(h.localBases)], fhirjson.NormalizeBase(b.seen), fhirjson.NormalizeBase(b.public))
	doc, err := fhirjson.Scan(body, fhirjson.ScanOptions{LocalBases: local})
	if err != nil {
		h.logger.Debug("not rewritten: malformed JSON", zap.Error(err))
		*outcome = "passthrough_malformed"
		return nil, false
	}
	if len(doc.Studies) == 0 && len(doc.Endpoints) == 0 {
		return nil, false
	}
	var fetched map[string]fhirjson.Endpoint
	if ids := doc.MissingEndpoints(); len(ids) > 0 && h.app.FHIR != "" {
		fetched, err = h.app.resolver.Endpoints(r.Context(), ids)
		if err != nil {
			h.logger.Warn("Endpoint look-up failed; the affected series get no URLs", zap.Int("endpoints", len(ids)), zap.Error(err))
		}
	}
	rsBase, uriBase := absolute(b.origin, h.DICOMwebBase), absolute(b.origin, h.WADOURIBase)
	plan := func(st *fhirjson.Study, se *fhirjson.Series) fhirjson.Bases {
		var b fhirjson.Bases
		if e, ok := st.Effective(se, fhirjson.WADORS, fetched); ok {
			if h.Mode == ModeDirect {
				b.WADORS = e.Address
			} else if h.app.ArchiveFor(e.Address) != nil {
				b.WADORS = rsBase
			}
		}
		if e, ok := st.Effective(se, fhirjson.WADOURI, fetched); ok {
			if h.Mode == ModeDirect {
				b.WADOURI = e.Address
			} else if ar := h.app.ArchiveFor(e.Address); ar != nil && ar.WADOURI != "" {
				b.WADOURI = uriBase
			}
		}
		return b
	}
	var addresses fhirjson.Readdress
	if readdress {
		addresses = func(site *fhirjson.EndpointSite) (string, bool) {
			return h.publicAddress(site.Endpoint, rsBase, uriBase)
		}
	}
	out, changed, stats := doc.Rewrite(plan, addresses, h.ext)
	h.app.metrics.injected.WithLabelValues("series").Add(float64(stats.Series))
	h.app.metrics.injected.WithLabelValues("instance").Add(float64(stats.Instances))
	h.app.metrics.injected.WithLabelValues("endpoint_address").Add(float64(stats.Endpoints))
	trace.SpanFromContext(r.Context()).SetAttributes(attribute.Int("fhir_imaging.studies", len(doc.Studies)),
		attribute.Int("fhir_imaging.series_urls", stats.Series), attribute.Int("fhir_imaging.instance_urls", stats.Instances),
		attribute.Int("fhir_imaging.endpoint_addresses", stats.Endpoints))
	h.logger.Debug("rewrote FHIR response", zap.Int("studies", len(doc.Studies)), zap.Int("series_urls", stats.Series),
		zap.Int("instance_urls", stats.Instances), zap.Int("endpoint_addresses", stats.Endpoints))
	return out, changed
}

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

// Interface guards.
var (
	_ caddy.Provisioner           = (*FHIRRewrite)(nil)
	_ caddy.Validator             = (*FHIRRewrite)(nil)
	_ caddyhttp.MiddlewareHandler = (*FHIRRewrite)(nil)
)
