package module

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/tidwall/gjson"
	"go.uber.org/zap"

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

// reachable is, under authorize, the membership check over replicas: the
// first archive of order that answers decides whether the series (and
// instance) is within the allowed study; archives that cannot be asked are
// passed over. It returns the archives from that one on; false means the
// request has been answered (403 when the archive says no, 503 when none
// could be asked).
func (a *App) reachable(w http.ResponseWriter, r *http.Request, s *access.Session, order []*Archive, via, study, series, instance string) ([]*Archive, bool) {
	var lastErr error
	for i, ar := range order {
		held, err := a.holds(r, ar, study, series, instance)
		if err != nil {
			lastErr = err
			if i+1 < len(order) {
				a.logger.Warn("archive could not be asked whether it holds a series; asking its replica",
					zap.String("handler", via), zap.String("from", ar.name), zap.String("to", order[i+1].name), zap.Error(err))
			}
			continue
		}
		if !held {
			a.Authorize.deny(w, s, via, "the series or instance is not within the allowed study", a.Authorize.uidField("series_uid", series))
			return nil, false
		}
		return order[i:], true
	}
	a.Authorize.unavailable(w, via, &access.UnavailableError{What: "the archive", Err: lastErr})
	return nil, false
}

// holdsFunc returns, under authorize, the check a replica must pass before
// a failover goes to it: it holds the series (and instance) within the
// study, as it says itself.
func (a *App) holdsFunc(r *http.Request, study, series, instance string) func(*Archive) bool {
	return func(ar *Archive) bool {
		held, err := a.holds(r, ar, study, series, instance)
		if err != nil || !held {
			a.logger.Warn("replica passed over: it could not confirm that it holds the series", zap.String("archive", ar.name), zap.Bool("answered", err == nil))
			return false
		}
		return true
	}
}
