package resolve

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
	"go.opentelemetry.io/otel/attribute"

	"github.com/fhirimaging/caddy-fhir-imaging/module/fhirjson"
	"github.com/fhirimaging/caddy-fhir-imaging/module/telemetry"
)

// maxStudyPages bounds how many search pages are followed for one study.
const maxStudyPages = 10

// Study returns where the DICOM study with the given Study Instance UID is,
// from the cache or from one FHIR search
// (ImagingStudy?identifier=urn:dicom:uid|urn:oid:<uid>,urn:dicom:uid|<uid>&_include=ImagingStudy:endpoint;
// for an STU3 server first ImagingStudy?study=urn:oid:<uid>,<uid>&..., see
// studySearches).
// All ImagingStudy resources with that UID are combined. Concurrent calls for
// the same study share one search. The uid must already be validated.
func (r *Resolver) Study(ctx context.Context, uid string) (_ *Study, err error) {
	ctx, span := telemetry.StartSpan(ctx, "fhir_imaging.study_lookup")
	defer func() { telemetry.End(span, err) }()
	if r.cfg.TraceUIDs {
		span.SetAttributes(attribute.String("fhir_imaging.study_uid", uid))
	}
	if s, ok := r.studies.Get(uid); ok {
		r.cfg.OnCache("study", true)
		span.SetAttributes(attribute.String("fhir_imaging.cache", "hit"))
		return s, nil
	}
	r.cfg.OnCache("study", false)
	span.SetAttributes(attribute.String("fhir_imaging.cache", "miss"))
	fl, leader := r.stFlights.Join(uid)
	if !leader {
		select {
		case <-fl.Done:
			return fl.Value, fl.Err
		case <-ctx.Done():
			return nil, &UpstreamError{Timeout: true, Err: ctx.Err()}
		}
	}
	if !r.limiter.Allow() {
		r.cfg.OnFetch("study", "refused", 0)
		r.stFlights.Land(uid, fl, nil, ErrBusy)
		return nil, ErrBusy
	}
	start := r.cfg.Now()
	s, err := r.fetchStudy(ctx, uid)
	r.cfg.OnFetch("study", fetchResult(err, s != nil && s.Known), r.cfg.Now().Sub(start))
	if err == nil {
		ttl := r.cfg.TTL
		if !s.Known {
			ttl = r.cfg.NegativeTTL
		}
		r.studies.Put(uid, s, ttl)
	}
	r.stFlights.Land(uid, fl, s, err)
	return s, err
}

// Explain answers like Study but never reads or fills the cache.
func (r *Resolver) Explain(ctx context.Context, uid string) (*Study, error) {
	return r.fetchStudy(ctx, uid)
}

func (r *Resolver) fetchStudy(ctx context.Context, uid string) (*Study, error) {
	if r.cfg.FHIRBase == "" {
		return nil, ErrNoFHIR
	}
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Timeout)
	defer cancel()
	var docs []*fhirjson.Document
	for _, q := range r.studySearches(uid) {
		var err error
		if docs, err = r.searchStudy(tctx, q); err != nil {
			return nil, err
		}
		if holds(docs, uid) {
			break
		}
	}
	var missing []string
	for _, d := range docs {
		missing = append(missing, d.MissingEndpoints()...)
	}
	fetched, err := r.Endpoints(tctx, missing)
	if err != nil {
		return nil, err
	}
	s := &Study{Series: map[string]Placement{}}
	for _, d := range docs {
		for _, st := range d.Studies {
			if st.UID != uid {
				continue
			}
			s.Known = true
			if s.Default.empty() {
				s.Default = r.placement(st, nil, fetched)
			}
			for _, se := range st.Series {
				if se.UID == "" {
					continue
				}
				p := r.placement(st, se, fetched)
				if old, ok := s.Series[se.UID]; ok {
					// Several ImagingStudies list this series: keep what
					// the first said and fill in what it left open.
					if old.WADORS == "" {
						old.WADORS, old.WADORSReplicas = p.WADORS, p.WADORSReplicas
					}
					if old.WADOURI == "" {
						old.WADOURI, old.WADOURIReplicas = p.WADOURI, p.WADOURIReplicas
					}
					p = old
				}
				s.Series[se.UID] = p
			}
		}
	}
	return s, nil
}

// studySearches returns the searches that find the ImagingStudies of a
// study, to be tried in order until one finds the study. R4 and later
// carry the Study Instance UID in identifier (system urn:dicom:uid, with or
// without urn:oid:). STU3 has it in ImagingStudy.uid, of type oid and so
// written urn:oid:<uid>, searched with the uri parameter "study" (exact
// match; the bare form is asked too, for data that left the prefix out);
// STU3 data that also carries the identifier is found by the second search.
func (r *Resolver) studySearches(uid string) []url.Values {
	byIdentifier := url.Values{
		"identifier": {"urn:dicom:uid|urn:oid:" + uid + ",urn:dicom:uid|" + uid},
		"_include":   {"ImagingStudy:endpoint"},
		"_count":     {"100"},
	}
	if !r.cfg.STU3 {
		return []url.Values{byIdentifier}
	}
	byUID := url.Values{
		"study":    {"urn:oid:" + uid + "," + uid},
		"_include": {"ImagingStudy:endpoint"},
		"_count":   {"100"},
	}
	return []url.Values{byUID, byIdentifier}
}

// searchStudy runs one ImagingStudy search and reads its pages.
func (r *Resolver) searchStudy(ctx context.Context, q url.Values) ([]*fhirjson.Document, error) {
	next := r.cfg.FHIRBase + "/ImagingStudy?" + q.Encode()
	var docs []*fhirjson.Document
	for page := 0; next != "" && page < maxStudyPages; page++ {
		body, status, err := r.get(ctx, next)
		if err != nil {
			return nil, err
		}
		if status/100 != 2 {
			return nil, &UpstreamError{Err: httpStatusError(status)}
		}
		doc, err := fhirjson.Scan(body, fhirjson.ScanOptions{LocalBases: []string{r.base}})
		if err != nil {
			return nil, &UpstreamError{Err: err}
		}
		docs = append(docs, doc)
		next = r.nextLink(body)
	}
	return docs, nil
}

// holds reports whether docs hold an ImagingStudy of the study uid.
func holds(docs []*fhirjson.Document, uid string) bool {
	for _, d := range docs {
		for _, st := range d.Studies {
			if st.UID == uid {
				return true
			}
		}
	}
	return false
}

// placement maps the effective Endpoints of a series (or, with se nil, of
// the study itself) to archive names: per connection type, every listed
// Endpoint that means a configured archive, in order, each archive once.
// Endpoints of no configured archive are left out.
func (r *Resolver) placement(st *fhirjson.Study, se *fhirjson.Series, fetched map[string]fhirjson.Endpoint) Placement {
	if se == nil {
		se = &fhirjson.Series{}
	}
	var p Placement
	for _, t := range []fhirjson.ConnectionType{fhirjson.WADORS, fhirjson.WADOURI} {
		var names []string
		for _, e := range st.EffectiveAll(se, t, fetched) {
			if n := r.cfg.Archive(fhirjson.ArchiveKey(e.Address)); n != "" && !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
		p.set(t, names)
	}
	return p
}

// nextLink returns the Bundle's next link if it points at the configured FHIR
// server (scheme, host and port), and "" otherwise: the gateway never follows
// a link elsewhere.
func (r *Resolver) nextLink(body []byte) string {
	var next string
	gjson.GetBytes(body, "link").ForEach(func(_, l gjson.Result) bool {
		if l.Get("relation").String() == "next" {
			next = l.Get("url").String()
			return false
		}
		return true
	})
	if next == "" {
		return ""
	}
	nu, err1 := url.Parse(next)
	bu, err2 := url.Parse(r.cfg.FHIRBase)
	if err1 != nil || err2 != nil || !strings.EqualFold(nu.Scheme, bu.Scheme) || !strings.EqualFold(nu.Host, bu.Host) {
		return ""
	}
	return next
}

type httpStatusError int

func (e httpStatusError) Error() string {
	return "the FHIR search answered " + http.StatusText(int(e)) + " (" + strconv.Itoa(int(e)) + ")"
}
