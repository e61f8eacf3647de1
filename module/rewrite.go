package module

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/fhirimaging/caddy-fhir-imaging/module/fhirjson"
	"github.com/fhirimaging/caddy-fhir-imaging/module/internal/ttlcache"
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

	// Levels lists the levels of an ImagingStudy that get URLs: "study"
	// (a WADO-RS URL of the whole study on the ImagingStudy, when all its
	// series are served through one base: always in proxy mode), "series"
	// (the WADO-RS URL of each series) and "instance" (the WADO-RS and
	// WADO-URI URLs of each instance). Leaving "instance" out keeps a large
	// search near its original size, for clients that build instance URLs
	// themselves. Default: ["series", "instance"].
	Levels []string `json:"levels,omitempty"`

	// DisableRebase turns off swapping the upstream FHIR base (the
	// fhir_imaging app's fhir setting) for the public base in answers and
	// back in requests. Default: false, so the bases are swapped whenever
	// they differ.
	DisableRebase bool `json:"disable_rebase,omitempty"`

	app        *App
	ext        fhirjson.Extensions
	levels     fhirjson.Levels
	dropExt    []string // the injected extensions' URLs, removed on write-back
	localBases []string
	upPath     string // path of the upstream FHIR base
	reads      *http.Client
	logger     *zap.Logger
	// transformers holds the rebase rules prepared for the public bases
	// seen lately: they depend on the request's host and prefix only.
	transformers *ttlcache.Cache[rebasers]
}

// levelNames are the values of FHIRRewrite.Levels.
var levelNames = map[string]fhirjson.Levels{
	"study":    fhirjson.LevelStudy,
	"series":   fhirjson.LevelSeries,
	"instance": fhirjson.LevelInstance,
}

// checkLevels checks a list of levels: known names, each at most once.
func checkLevels(levels []string) error {
	seen := map[string]bool{}
	for _, l := range levels {
		if _, ok := levelNames[l]; !ok {
			return fmt.Errorf("levels: %q is not study, series or instance", l)
		}
		if seen[l] {
			return fmt.Errorf("levels: %q is listed twice", l)
		}
		seen[l] = true
	}
	return nil
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
	if len(h.Levels) == 0 {
		h.Levels = []string{"series", "instance"}
	}
	for _, l := range h.Levels {
		h.levels |= levelNames[l]
	}
	h.dropExt = []string{h.ext.WADORS, h.ext.WADOURI}
	appIface, err := ctx.App("fhir_imaging")
	if err != nil {
		return fmt.Errorf("loading fhir_imaging app: %v", err)
	}
	h.app = appIface.(*App)
	h.reads = &http.Client{Timeout: time.Duration(h.app.LookupTimeout)}
	h.transformers = ttlcache.New[rebasers](64, time.Now)
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
	if err := checkLevels(h.Levels); err != nil {
		return err
	}
	if h.PublicBase != "" {
		if err := checkHTTPURL(h.PublicBase); err != nil {
			return fmt.Errorf("public_base: %v", err)
		}
	}
	return nil
}

// ServeHTTP works out the request's public and upstream bases, does to the
// request what must happen before the FHIR server sees it (fhirrequest.go),
// then passes it on and does to the answer what must happen before the
// client sees it (fhirresponse.go).
func (h *FHIRRewrite) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if dotSegments(r) {
		writeOutcome(w, http.StatusBadRequest, "invalid", dotSegmentsMessage)
		return nil
	}
	b := h.requestBases(r)
	w, watch, answered, err := h.request(w, r, next, b)
	if answered {
		return err
	}
	return h.respond(w, r, next, b, watch)
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*FHIRRewrite)(nil)
	_ caddy.Validator             = (*FHIRRewrite)(nil)
	_ caddyhttp.MiddlewareHandler = (*FHIRRewrite)(nil)
)
