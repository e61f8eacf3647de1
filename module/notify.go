package module

import (
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/tidwall/gjson"
	"go.uber.org/zap"

	"github.com/fhirimaging/caddy-fhir-imaging/module/fhirjson"
)

func init() {
	caddy.RegisterModule(FHIRNotify{})
}

// FHIRNotify is a terminal HTTP handler that takes the FHIR server's
// rest-hook notifications for the Subscriptions that the fhir_imaging app's
// subscribe setting registers, and drops from the caches what the change
// affects. HAPI sends PUT <notify-url>/<Type>/<id> with the resource, or a
// POST to <notify-url> without one. It expects the request path relative to
// the notify URL (use it under handle_path).
//
// It is an ordinary route of a site, not a route of Caddy's admin API, so
// that the FHIR server can reach it without the admin API being on the
// network: guard it like any other route (remote_ip, basic_auth, mTLS).
type FHIRNotify struct {
	app    *App
	logger *zap.Logger
}

// maxNotification bounds a notification's body.
const maxNotification = 8 << 20

// CaddyModule returns the Caddy module information.
func (FHIRNotify) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.fhir_notify",
		New: func() caddy.Module { return new(FHIRNotify) },
	}
}

// Provision connects to the fhir_imaging app.
func (h *FHIRNotify) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	app, err := ctx.App("fhir_imaging")
	if err != nil {
		return err
	}
	h.app = app.(*App)
	return nil
}

// ServeHTTP takes one notification.
func (h *FHIRNotify) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if refuseDotSegments(w, r) {
		return nil
	}
	switch r.Method {
	case http.MethodPut, http.MethodPost, http.MethodDelete:
	default:
		w.Header().Set("Allow", "PUT, POST, DELETE")
		writeError(w, http.StatusMethodNotAllowed, "a notification is a PUT, POST or DELETE")
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxNotification+1))
	if err != nil || len(body) > maxNotification {
		writeError(w, http.StatusBadRequest, "the notification could not be read, or is larger than 8 MiB")
		return nil
	}
	_, rt, id := fhirjson.SplitReference(r.URL.Path)
	if t := gjson.GetBytes(body, "resourceType").String(); t != "" {
		rt = t
	}
	switch rt {
	case "ImagingStudy", "Endpoint", "Bundle":
		h.app.invalidate(rt, id, body, "subscription")
	case "":
		// A notification without payload: the resource is not named, so
		// drop every study route; Endpoints expire by TTL.
		h.app.resolver.PurgeStudies()
		h.app.metrics.invalidations.WithLabelValues("unknown", "subscription").Inc()
	}
	if ce := h.logger.Check(zap.DebugLevel, "FHIR notification"); ce != nil {
		ce.Write(zap.String("resource_type", rt))
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*FHIRNotify)(nil)
	_ caddyhttp.MiddlewareHandler = (*FHIRNotify)(nil)
)
