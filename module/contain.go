package module

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/tidwall/gjson"

	"github.com/fhirimaging/caddy-fhir-imaging/module/access"
	"github.com/fhirimaging/caddy-fhir-imaging/module/dicom"
	"github.com/fhirimaging/caddy-fhir-imaging/module/internal/ttlcache"
)

// membership remembers which series and instances an archive holds within
// which study, as the archive itself answered. It guards the paths that name
// a series or an instance under a study: access is decided for the study,
// and no archive is trusted to refuse /studies/<allowed>/series/<another
// study's series> by itself (Orthanc's WADO-URI, for one, finds an object
// by its objectUID alone). These are facts about the data, shared by every
// client, and never hold anything of a token.
type membership struct {
	held    *ttlcache.Cache[bool]
	flights ttlcache.Flights[bool]
}

// holds reports whether archive ar holds the series within the study, and,
// when instance is not "", that instance within the series. It asks the
// archive with QIDO-RS (studies/{study}/series/{series}/instances, narrowed
// to the instance when there is one) and checks the UIDs of what comes
// back. Answers are kept for cache_ttl (negative_ttl for "no").
func (a *App) holds(r *http.Request, ar *Archive, study, series, instance string) (bool, error) {
	key := ar.name + "|" + study + "|" + series + "|" + instance
	if v, ok := a.members.held.Get(key); ok {
		return v, nil
	}
	fl, leader := a.members.flights.Join(key)
	if !leader {
		select {
		case <-fl.Done:
			return fl.Value, fl.Err
		case <-r.Context().Done():
			return false, r.Context().Err()
		}
	}
	held, err := a.askHolds(r, ar, study, series, instance)
	if err == nil {
		ttl := a.CacheTTL
		if !held {
			ttl = a.NegativeTTL
		}
		a.members.held.Put(key, held, time.Duration(ttl))
	}
	a.members.flights.Land(key, fl, held, err)
	return held, err
}

func (a *App) askHolds(r *http.Request, ar *Archive, study, series, instance string) (bool, error) {
	q := url.Values{"includefield": {"0020000D,0020000E,00080018"}}
	if instance != "" {
		q.Set("SOPInstanceUID", instance)
	}
	rr := r.WithContext(context.WithoutCancel(r.Context()))
	status, body, err := ar.fetch(rr, ar.base.Path+dicom.SeriesPath(study, series)+"/instances", q.Encode(), "application/dicom+json", 64<<20)
	switch {
	case err != nil:
		return false, err
	case status == http.StatusNoContent, status == http.StatusNotFound:
		return false, nil
	case status != http.StatusOK:
		return false, fmt.Errorf("the archive's QIDO-RS search answered %d", status)
	case !gjson.ValidBytes(body) || !gjson.ParseBytes(body).IsArray():
		return false, fmt.Errorf("the archive's QIDO-RS answer is not a JSON array")
	}
	held := false
	gjson.ParseBytes(body).ForEach(func(_, ds gjson.Result) bool {
		if !matches(ds, "0020000D", study) || !matches(ds, "0020000E", series) {
			return true
		}
		if instance == "" || ds.Get("00080018.Value.0").String() == instance {
			held = true
			return false
		}
		return true
	})
	return held, nil
}

// matches reports whether a DICOM JSON dataset's attribute is absent or
// holds uid: an archive may leave out the UIDs the path already fixed.
func matches(ds gjson.Result, tag, uid string) bool {
	v := ds.Get(tag + ".Value.0")
	return !v.Exists() || v.String() == uid
}

// mayReach reports whether the series (and instance, when not "") that a
// request for an allowed study names is held within that study by the
// archive it goes to; when not, or when the archive cannot say, the
// request has been answered (403 or 503).
func (a *App) mayReach(w http.ResponseWriter, r *http.Request, s *access.Session, ar *Archive, via, study, series, instance string) bool {
	held, err := a.holds(r, ar, study, series, instance)
	switch {
	case err != nil:
		a.Authorize.unavailable(w, via, &access.UnavailableError{What: "the archive", Err: err})
		return false
	case !held:
		a.Authorize.deny(w, s, via, "the series or instance is not within the allowed study", a.Authorize.uidField("series_uid", series))
		return false
	}
	return true
}
