package module

import (
	"errors"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.uber.org/zap"

	"github.com/fhirimaging/caddy-fhir-imaging/module/access"
	"github.com/fhirimaging/caddy-fhir-imaging/module/fhirjson"
	"github.com/fhirimaging/caddy-fhir-imaging/module/resolve"
	"github.com/fhirimaging/caddy-fhir-imaging/module/telemetry"
)

// route finds the archives that hold the given series (or the study, when
// series is "") for connection type t, in the order they are tried (the
// first, then its replicas): what the FHIR server says of the study
// (cached), then resolve.DecideOrder. It also returns what the FHIR server
// says, or nil when the default archive was chosen without asking. Its span
// is a child of the request's; r is not changed.
func (a *App) route(r *http.Request, study, series string, t fhirjson.ConnectionType) (order []*Archive, loc *resolve.Study, err error) {
	ctx, span := telemetry.StartSpan(r.Context(), "fhir_imaging.route", attribute.String("fhir_imaging.connection_type", string(t)))
	if a.TraceUIDs {
		span.SetAttributes(attribute.String("fhir_imaging.study_uid", study), attribute.String("fhir_imaging.series_uid", series))
	}
	defer func() {
		if len(order) > 0 {
			span.SetAttributes(attribute.String("fhir_imaging.archive", order[0].name))
			if ce := a.logger.Check(zap.DebugLevel, "routing decision"); ce != nil {
				ce.Write(a.routeFields(order, loc, study, series)...)
			}
		}
		telemetry.End(span, err)
	}()
	if a.resolver == nil || a.FHIR == "" {
		if a.DefaultArchive != "" {
			return []*Archive{a.Archives[a.DefaultArchive]}, nil, nil
		}
		return nil, nil, &routeError{status: http.StatusBadGateway, msg: "no FHIR server is configured to find the archive of a study"}
	}
	loc, err = a.resolver.Study(ctx, study)
	if errors.Is(err, resolve.ErrBusy) {
		return nil, nil, &routeError{status: http.StatusServiceUnavailable, msg: "too many look-ups of studies that are not cached; try again shortly", cause: err}
	}
	if err != nil {
		status := lookupStatus(err)
		msg := "the FHIR server could not be asked where this study is"
		if status == http.StatusGatewayTimeout {
			msg = "the FHIR server did not say in time where this study is"
		}
		return nil, nil, &routeError{status: status, msg: msg, cause: err}
	}
	names, why := resolve.DecideOrder(loc, series, t, a.DefaultArchive)
	for _, n := range names {
		if ar := a.Archives[n]; ar != nil {
			order = append(order, ar)
		}
	}
	if len(order) == 0 {
		return nil, nil, &routeError{status: http.StatusNotFound, msg: why}
	}
	return order, loc, nil
}

func (a *App) routeFields(order []*Archive, loc *resolve.Study, study, series string) []zap.Field {
	f := []zap.Field{zap.String("archive", order[0].name), zap.Bool("known", loc != nil && loc.Known)}
	if len(order) > 1 {
		names := make([]string, 0, len(order)-1)
		for _, ar := range order[1:] {
			names = append(names, ar.name)
		}
		f = append(f, zap.Strings("replicas", names))
	}
	if loc != nil {
		f = append(f, zap.Strings("study_archives", loc.Archives(fhirjson.WADORS)))
	}
	if a.TraceUIDs {
		f = append(f, zap.String("study_uid", study), zap.String("series_uid", series))
	}
	return f
}

// routeFailed answers a request that could not be routed. Under authorize,
// a series or instance of an allowed study that no archive is found for is
// refused like one that is not within the study (403, the one answer to
// every refusal) rather than 404, which would tell the two apart.
func (a *App) routeFailed(w http.ResponseWriter, s *access.Session, via string, belowStudy bool, err error) error {
	var re *routeError
	if s != nil && belowStudy && errors.As(err, &re) && re.status == http.StatusNotFound {
		a.Authorize.deny(w, s, via, "no archive holds this series of the allowed study")
		return nil
	}
	return a.answerError(w, via, err)
}
