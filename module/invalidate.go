package module

import (
	"github.com/tidwall/gjson"
	"go.uber.org/zap"

	"github.com/fhirimaging/caddy-fhir-imaging/module/fhirjson"
)

// invalidate drops the cache entries that a change to a FHIR resource may
// have made wrong. resourceType and id name the resource; body, when known,
// is its new content (an ImagingStudy's identifiers say which study route
// to drop). source names who told (gateway, subscription, admin).
//
//   - An ImagingStudy: the routes of the studies it names; all study routes
//     when its content is unknown (a delete).
//   - An Endpoint: that Endpoint, and all study routes, since which routes
//     an Endpoint feeds is not tracked (Endpoints change rarely).
//   - A transaction or batch Bundle: each entry as above.
func (a *App) invalidate(resourceType, id string, body []byte, source string) {
	if a.resolver == nil {
		return
	}
	switch resourceType {
	case "ImagingStudy":
		uids := studyUIDs(body)
		if len(uids) == 0 {
			a.resolver.PurgeStudies()
		}
		for _, uid := range uids {
			a.resolver.PurgeStudy(uid)
		}
	case "Endpoint":
		if id != "" {
			a.resolver.PurgeEndpoint(id)
		} else {
			a.resolver.PurgeAll()
		}
		a.resolver.PurgeStudies()
	case "Bundle":
		gjson.GetBytes(body, "entry").ForEach(func(_, e gjson.Result) bool {
			_, rt, eid := fhirjson.SplitReference(e.Get("request.url").String())
			res := e.Get("resource")
			if res.Exists() {
				rt = res.Get("resourceType").String()
				if v := res.Get("id").String(); v != "" {
					eid = v
				}
			}
			if rt == "ImagingStudy" || rt == "Endpoint" {
				a.invalidate(rt, eid, []byte(res.Raw), source)
			}
			return true
		})
		return
	default:
		return
	}
	a.metrics.invalidations.WithLabelValues(resourceType, source).Inc()
	a.logger.Debug("cache invalidated", zap.String("resource", resourceType), zap.String("source", source))
}

// studyUIDs returns the Study Instance UIDs of the ImagingStudies in body.
func studyUIDs(body []byte) []string {
	if len(body) == 0 {
		return nil
	}
	doc, err := fhirjson.Scan(body, fhirjson.ScanOptions{})
	if err != nil {
		return nil
	}
	var uids []string
	for _, st := range doc.Studies {
		if st.UID != "" {
			uids = append(uids, st.UID)
		}
	}
	return uids
}
