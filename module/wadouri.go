package module

import (
	"net/http"
	"net/url"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/fhirimaging/caddy-fhir-imaging/module/dicom"
	"github.com/fhirimaging/caddy-fhir-imaging/module/fhirjson"
)

func init() {
	caddy.RegisterModule(WADOURI{})
}

// WADOURI is a terminal HTTP handler that serves WADO-URI
// (?requestType=WADO&studyUID=..&seriesUID=..&objectUID=..) by proxying the
// request, with its query unchanged, to the WADO-URI base of the archive that
// holds the series. The answer streams through.
type WADOURI struct {
	app    *App
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (WADOURI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.wado_uri",
		New: func() caddy.Module { return new(WADOURI) },
	}
}

// Provision connects to the fhir_imaging app.
func (h *WADOURI) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	app, err := ctx.App("fhir_imaging")
	if err != nil {
		return err
	}
	h.app = app.(*App)
	return nil
}

// ServeHTTP routes one WADO-URI request. With authorize, the request's
// token must be allowed the study, and the archive must hold the object
// within that study and series: WADO-URI archives may find an object by its
// objectUID alone.
func (h *WADOURI) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if refuseDotSegments(w, r) {
		return nil
	}
	az := h.app.Authorize
	w, sess, ok := az.admit(w, r, "wado_uri")
	if !ok {
		return nil
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "WADO-URI takes GET or HEAD only")
		return nil
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, "malformed query string: "+err.Error())
		return nil
	}
	ref, err := dicom.ParseWADOURI(q)
	if err != nil {
		return h.app.answerError(w, "wado_uri", err)
	}
	if sess != nil && !az.mayReadStudy(w, r, sess, "wado_uri", ref.Study) {
		return nil
	}
	order, _, err := h.app.route(r, ref.Study, ref.Series, fhirjson.WADOURI)
	if err != nil {
		return h.app.routeFailed(w, sess, "wado_uri", true, err)
	}
	// Only archives with a WADO-URI base can serve it.
	withURI := make([]*Archive, 0, len(order))
	for _, ar := range order {
		if ar.uriBase != nil {
			withURI = append(withURI, ar)
		}
	}
	if len(withURI) == 0 {
		writeError(w, http.StatusNotFound, "archive "+order[0].name+" holds this series but has no wado_uri base configured")
		return nil
	}
	order = withURI
	var usable func(*Archive) bool
	if sess != nil {
		if order, ok = h.app.reachable(w, r, sess, order, "wado_uri", ref.Study, ref.Series, ref.Object); !ok {
			return nil
		}
		usable = h.app.holdsFunc(r, ref.Study, ref.Series, ref.Object)
	}
	if ce := h.logger.Check(zap.DebugLevel, "routing WADO-URI request"); ce != nil {
		ce.Write(zap.String("archive", order[0].name), zap.Int("replicas", len(order)-1))
	}
	// An archive's error answer is replaced by the gateway's own; one that
	// cannot answer before anything was sent is replaced by its replica.
	try := newReplicas(h.app, r, "wado_uri", order, usable)
	for ar := try.first(); ar != nil; ar = try.next {
		aw := newAnswerWriter(w, ar, "wado_uri", dicom.Rules{})
		fw := try.writer(aw)
		status, err := ar.serve(fw, r, ar.uriBase.Path, r.URL.RawQuery, "wado_uri")
		if try.again(ar, fw, status, err) {
			continue
		}
		if err != nil {
			return ar.failed(w, status, err)
		}
		return aw.finish()
	}
	return nil
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*WADOURI)(nil)
	_ caddyhttp.MiddlewareHandler = (*WADOURI)(nil)
)
