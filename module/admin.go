package module

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/fhirimaging/caddy-fhir-imaging/module/dicom"
	"github.com/fhirimaging/caddy-fhir-imaging/module/fhirjson"
	"github.com/fhirimaging/caddy-fhir-imaging/module/resolve"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI is the admin.api.fhir_imaging module: routes on Caddy's admin
// endpoint to look into and manage the gateway's caches.
//
//	GET    /fhir_imaging/cache                  what is cached (Endpoints, study routes), with expiry
//	DELETE /fhir_imaging/cache                  drop everything
//	DELETE /fhir_imaging/cache/studies/<uid>    drop one study route
//	DELETE /fhir_imaging/cache/endpoints/<id>   drop one Endpoint
//	GET    /fhir_imaging/explain/<study-uid>[?series=<uid>]
//	                                            ask the FHIR server now (bypassing and not filling the cache)
//	                                            where the study and its series route, and why
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.fhir_imaging",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Routes returns the admin routes.
func (a AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/fhir_imaging/cache", Handler: caddy.AdminHandlerFunc(a.cache)},
		{Pattern: "/fhir_imaging/cache/", Handler: caddy.AdminHandlerFunc(a.cacheEntry)},
		{Pattern: "/fhir_imaging/explain/", Handler: caddy.AdminHandlerFunc(a.explain)},
	}
}

func currentApp() (*App, error) {
	app, err := caddy.ActiveContext().AppIfConfigured("fhir_imaging")
	if err != nil || app == nil {
		return nil, caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("the fhir_imaging app is not configured")}
	}
	return app.(*App), nil
}

func apiError(status int, format string, args ...any) error {
	return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf(format, args...)}
}

func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (AdminAPI) cache(w http.ResponseWriter, r *http.Request) error {
	app, err := currentApp()
	if err != nil {
		return err
	}
	switch r.Method {
	case http.MethodGet:
		eps, sts := app.resolver.Snapshot()
		if eps == nil {
			eps = []resolve.CachedEndpoint{}
		}
		if sts == nil {
			sts = []resolve.CachedStudy{}
		}
		return writeJSON(w, map[string]any{"endpoints": eps, "studies": sts})
	case http.MethodDelete:
		app.resolver.PurgeAll()
		app.metrics.invalidations.WithLabelValues("all", "admin").Inc()
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return apiError(http.StatusMethodNotAllowed, "method %s not allowed", r.Method)
}

func (AdminAPI) cacheEntry(w http.ResponseWriter, r *http.Request) error {
	app, err := currentApp()
	if err != nil {
		return err
	}
	if r.Method != http.MethodDelete {
		return apiError(http.StatusMethodNotAllowed, "method %s not allowed", r.Method)
	}
	kind, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/fhir_imaging/cache/"), "/")
	switch {
	case kind == "studies" && dicom.ValidUID(key):
		app.resolver.PurgeStudy(key)
		app.metrics.invalidations.WithLabelValues("ImagingStudy", "admin").Inc()
	case kind == "endpoints" && fhirjson.ValidID(key):
		app.resolver.PurgeEndpoint(key)
		app.metrics.invalidations.WithLabelValues("Endpoint", "admin").Inc()
	default:
		return apiError(http.StatusNotFound, "use /fhir_imaging/cache/studies/<uid> or /fhir_imaging/cache/endpoints/<id>")
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// explanation is the answer of the explain route.
type explanation struct {
	Study   string         `json:"study"`
	Series  string         `json:"series,omitempty"`
	FHIR    string         `json:"fhir"`
	Found   *resolve.Study `json:"found"`
	WADORS  string         `json:"wado_rs_archive"`
	WADOURI string         `json:"wado_uri_archive"`
	// WADORSOrder and WADOURIOrder are the archives tried, in order: the
	// first, then its replicas.
	WADORSOrder  []string `json:"wado_rs_order"`
	WADOURIOrder []string `json:"wado_uri_order"`
	// Spread lists the archives whose answers a study-level request
	// merges, when the study is spread over several.
	Spread []string `json:"merged_archives,omitempty"`
	Why    string   `json:"why"`
}

func (AdminAPI) explain(w http.ResponseWriter, r *http.Request) error {
	app, err := currentApp()
	if err != nil {
		return err
	}
	if r.Method != http.MethodGet {
		return apiError(http.StatusMethodNotAllowed, "method %s not allowed", r.Method)
	}
	study := strings.TrimPrefix(r.URL.Path, "/fhir_imaging/explain/")
	series := r.URL.Query().Get("series")
	if !dicom.ValidUID(study) || (series != "" && !dicom.ValidUID(series)) {
		return apiError(http.StatusBadRequest, "not a DICOM UID")
	}
	loc, err := app.resolver.Explain(r.Context(), study)
	if err != nil {
		return apiError(http.StatusBadGateway, "%v", err)
	}
	ex := explanation{Study: study, Series: series, FHIR: app.FHIR, Found: loc}
	ex.WADORSOrder, ex.Why = resolve.DecideOrder(loc, series, fhirjson.WADORS, app.DefaultArchive)
	ex.WADOURIOrder, _ = resolve.DecideOrder(loc, series, fhirjson.WADOURI, app.DefaultArchive)
	// WADO-URI is served only by archives with a wado_uri base.
	ex.WADOURIOrder = slices.DeleteFunc(ex.WADOURIOrder, func(n string) bool {
		ar := app.Archives[n]
		return ar == nil || ar.uriBase == nil
	})
	if ex.WADORSOrder == nil {
		ex.WADORSOrder = []string{}
	}
	if ex.WADOURIOrder == nil {
		ex.WADOURIOrder = []string{}
	}
	if len(ex.WADORSOrder) > 0 {
		ex.WADORS = ex.WADORSOrder[0]
	}
	if len(ex.WADOURIOrder) > 0 {
		ex.WADOURI = ex.WADOURIOrder[0]
	}
	if series == "" && loc.Known {
		ex.Spread = loc.Spread(fhirjson.WADORS)
	}
	return writeJSON(w, ex)
}

// Interface guards.
var _ caddy.AdminRouter = (*AdminAPI)(nil)
