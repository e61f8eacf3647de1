// Package resolve answers the two questions the gateway asks its FHIR server:
// what an Endpoint is (for the rewrite) and which archive holds a DICOM study
// or series (for routing). Answers are cached with a TTL in a size-bounded
// cache, concurrent misses for the same key are collapsed into one request,
// and the Endpoints missing from one response are fetched with one search.
//
// The package knows nothing of Caddy; it speaks plain HTTP to one configured
// FHIR base and never to any other address.
package resolve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/tidwall/gjson"
	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/time/rate"

	"github.com/fhirimaging/caddy-fhir-imaging/module/fhirjson"
	"github.com/fhirimaging/caddy-fhir-imaging/module/internal/ttlcache"
	"github.com/fhirimaging/caddy-fhir-imaging/module/telemetry"
)

// Config configures a Resolver.
type Config struct {
	// FHIRBase is the upstream FHIR base URL, without trailing slash.
	FHIRBase string
	// Client sends the look-ups; http.DefaultClient when nil.
	Client *http.Client
	// TTL is how long an answer is kept.
	TTL time.Duration
	// NegativeTTL is how long "not found" is kept.
	NegativeTTL time.Duration
	// Timeout bounds one look-up, whatever the caller's deadline.
	Timeout time.Duration
	// MaxEntries bounds each cache.
	MaxEntries int
	// Archive maps a normalised Endpoint address to the name of the
	// configured archive it means, or "" for none.
	Archive func(address string) string
	// BatchSize is the largest number of ids asked for in one search.
	BatchSize int
	// MaxBody bounds a FHIR answer that is read.
	MaxBody int64
	// Now is the clock (time.Now when nil); tests replace it.
	Now func() time.Time
	// OnCache, if set, is told of every cache look-up: the cache
	// ("endpoint" or "study") and whether it was a hit.
	OnCache func(cache string, hit bool)
	// OnFetch, if set, is told of every request to the FHIR server: the
	// kind ("endpoint" or "study"), the result ("found", "not_found" or
	// "error", or "refused" for a study look-up over StudyLookups, which
	// sends no request) and how long it took.
	OnFetch func(kind, result string, d time.Duration)
	// TraceUIDs puts study UIDs and Endpoint ids on spans. Off by default:
	// they identify patients' data.
	TraceUIDs bool
	// StudyLookups bounds the rate of study look-ups that miss the cache,
	// per second, with a burst of twice that: any client can send distinct
	// valid UIDs, each of which would otherwise cost a FHIR search. A look-up
	// over the bound fails with ErrBusy. Default: 50.
	StudyLookups float64
	// STU3 says that the FHIR server speaks FHIR STU3, where an
	// ImagingStudy's DICOM Study Instance UID is ImagingStudy.uid (an oid),
	// searched with the "study" parameter; R4 and later carry it in
	// identifier, searched with "identifier". With STU3 set, a study is
	// looked up with study= first and identifier= second.
	STU3 bool
}

// Resolver performs and caches look-ups. It is safe for concurrent use.
type Resolver struct {
	cfg       Config
	base      string
	endpoints *ttlcache.Cache[endpointAnswer]
	studies   *ttlcache.Cache[*Study]
	epFlights ttlcache.Flights[endpointAnswer]
	stFlights ttlcache.Flights[*Study]
	limiter   *rate.Limiter // study look-ups that miss the cache
}

type endpointAnswer struct {
	ep    fhirjson.Endpoint
	found bool
}

// New returns a Resolver for cfg, filling in defaults.
func New(cfg Config) *Resolver {
	if cfg.Client == nil {
		cfg.Client = http.DefaultClient
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 10000
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 50
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 32 << 20
	}
	if cfg.Archive == nil {
		cfg.Archive = func(string) string { return "" }
	}
	if cfg.OnCache == nil {
		cfg.OnCache = func(string, bool) {}
	}
	if cfg.OnFetch == nil {
		cfg.OnFetch = func(string, string, time.Duration) {}
	}
	if cfg.StudyLookups <= 0 {
		cfg.StudyLookups = 50
	}
	cfg.FHIRBase = strings.TrimRight(cfg.FHIRBase, "/")
	return &Resolver{
		cfg:       cfg,
		base:      fhirjson.NormalizeBase(cfg.FHIRBase),
		endpoints: ttlcache.New[endpointAnswer](cfg.MaxEntries, cfg.Now),
		studies:   ttlcache.New[*Study](cfg.MaxEntries, cfg.Now),
		limiter:   rate.NewLimiter(rate.Limit(cfg.StudyLookups), int(2*cfg.StudyLookups)),
	}
}

// Base returns the normalised FHIR base the Resolver asks.
func (r *Resolver) Base() string { return r.base }

// ErrNoFHIR is returned when no FHIR base is configured.
var ErrNoFHIR = errors.New("no FHIR server is configured for look-ups")

// ErrBusy is returned by Study when study look-ups that miss the cache
// arrive faster than Config.StudyLookups allows.
var ErrBusy = errors.New("too many look-ups of studies that are not cached")

// UpstreamError says that the FHIR server could not answer a look-up.
type UpstreamError struct {
	// Timeout is true when the look-up ran out of time.
	Timeout bool
	// Err is the underlying error.
	Err error
}

func (e *UpstreamError) Error() string {
	if e.Timeout {
		return "the FHIR server did not answer in time: " + e.Err.Error()
	}
	return "the FHIR server could not be asked: " + e.Err.Error()
}

func (e *UpstreamError) Unwrap() error { return e.Err }

// Endpoints returns the Endpoints with the given ids that exist, from the
// cache or from the FHIR server. The ids not cached are asked for in as few
// searches as possible (Endpoint?_id=a,b,c); ids already being fetched for
// another caller are waited for rather than fetched again. An error means
// that some ids could not be looked up; the map still holds what is known.
func (r *Resolver) Endpoints(ctx context.Context, ids []string) (_ map[string]fhirjson.Endpoint, err error) {
	ctx, span := telemetry.StartSpan(ctx, "fhir_imaging.endpoint_lookup", attribute.Int("fhir_imaging.endpoints", len(ids)))
	defer func() { telemetry.End(span, err) }()
	if r.cfg.TraceUIDs {
		span.SetAttributes(attribute.StringSlice("fhir_imaging.endpoint_ids", ids))
	}
	out := make(map[string]fhirjson.Endpoint, len(ids))
	hits := 0
	var lead []string
	leading := map[string]*ttlcache.Flight[endpointAnswer]{}
	waiting := map[string]*ttlcache.Flight[endpointAnswer]{}
	for _, id := range ids {
		if a, ok := r.endpoints.Get(id); ok {
			r.cfg.OnCache("endpoint", true)
			hits++
			if a.found {
				out[id] = a.ep
			}
			continue
		}
		r.cfg.OnCache("endpoint", false)
		if _, dup := leading[id]; dup {
			continue
		}
		fl, leader := r.epFlights.Join(id)
		if leader {
			leading[id] = fl
			lead = append(lead, id)
		} else {
			waiting[id] = fl
		}
	}
	span.SetAttributes(attribute.Int("fhir_imaging.cache_hits", hits), attribute.Int("fhir_imaging.fetched", len(lead)))
	var firstErr error
	if len(lead) > 0 {
		start := r.cfg.Now()
		got, err := r.fetchEndpoints(ctx, lead)
		r.cfg.OnFetch("endpoint", fetchResult(err, len(got) > 0), r.cfg.Now().Sub(start))
		firstErr = err
		for _, id := range lead {
			a := endpointAnswer{}
			if e, ok := got[id]; ok {
				a = endpointAnswer{ep: e, found: true}
				out[id] = e
				r.endpoints.Put(id, a, r.cfg.TTL)
			} else if err == nil {
				r.endpoints.Put(id, a, r.cfg.NegativeTTL)
			}
			r.epFlights.Land(id, leading[id], a, err)
		}
	}
	for id, fl := range waiting {
		select {
		case <-fl.Done:
			if fl.Err != nil && firstErr == nil {
				firstErr = fl.Err
			}
			if fl.Value.found {
				out[id] = fl.Value.ep
			}
		case <-ctx.Done():
			if firstErr == nil {
				firstErr = &UpstreamError{Timeout: true, Err: ctx.Err()}
			}
		}
	}
	return out, firstErr
}

func fetchResult(err error, found bool) string {
	switch {
	case err != nil:
		return "error"
	case found:
		return "found"
	}
	return "not_found"
}

// fetchEndpoints asks the FHIR server for the given Endpoints, BatchSize ids
// per search. When the server refuses the search, each id is read on its own.
func (r *Resolver) fetchEndpoints(ctx context.Context, ids []string) (map[string]fhirjson.Endpoint, error) {
	if r.cfg.FHIRBase == "" {
		return nil, ErrNoFHIR
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Timeout)
	defer cancel()
	got := map[string]fhirjson.Endpoint{}
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	for i := 0; i < len(ids); i += r.cfg.BatchSize {
		batch := ids[i:min(i+r.cfg.BatchSize, len(ids))]
		q := url.Values{"_id": {strings.Join(batch, ",")}, "_count": {fmt.Sprint(len(batch))}}
		body, status, err := r.get(ctx, r.cfg.FHIRBase+"/Endpoint?"+q.Encode())
		if err != nil {
			return got, err
		}
		if status/100 != 2 {
			// The server does not take this search: read one by one.
			for _, id := range batch {
				body, status, err := r.get(ctx, r.cfg.FHIRBase+"/Endpoint/"+id)
				if err != nil {
					return got, err
				}
				if status/100 == 2 {
					if e, ok := fhirjson.ParseEndpoint(string(body)); ok && e.ID == id {
						got[id] = e
					}
				} else if status != http.StatusNotFound && status != http.StatusGone {
					return got, &UpstreamError{Err: fmt.Errorf("Endpoint read answered %d", status)}
				}
			}
			continue
		}
		gjson.GetBytes(body, "entry.#.resource").ForEach(func(_, res gjson.Result) bool {
			if e, ok := fhirjson.ParseEndpoint(res.Raw); ok && want[e.ID] {
				got[e.ID] = e
			}
			return true
		})
	}
	return got, nil
}

// get sends one GET to the FHIR server and reads a bounded body.
func (r *Resolver) get(ctx context.Context, u string) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", "application/fhir+json")
	telemetry.Inject(ctx, req.Header)
	resp, err := r.cfg.Client.Do(req)
	if err != nil {
		// The URL carries UIDs; keep it out of errors, which reach logs.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, 0, &UpstreamError{Timeout: errors.Is(err, context.DeadlineExceeded) || isTimeout(err), Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, r.cfg.MaxBody+1))
	if err != nil {
		return nil, 0, &UpstreamError{Timeout: errors.Is(err, context.DeadlineExceeded) || isTimeout(err), Err: err}
	}
	if int64(len(body)) > r.cfg.MaxBody {
		return nil, 0, &UpstreamError{Err: fmt.Errorf("answer larger than %d bytes", r.cfg.MaxBody)}
	}
	return body, resp.StatusCode, nil
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// LearnEndpoint caches an Endpoint that the FHIR server sent in a search
// answer (an _include), as if it had been looked up: current, since a
// search answers current versions.
func (r *Resolver) LearnEndpoint(e fhirjson.Endpoint) {
	if fhirjson.ValidID(e.ID) {
		r.endpoints.Put(e.ID, endpointAnswer{ep: e, found: true}, r.cfg.TTL)
	}
}

// CachedEndpoint returns the Endpoint of an id from the cache alone, with
// known false when the cache holds no answer for it; found false means the
// FHIR server has no such Endpoint. A hit is counted like one of Endpoints.
func (r *Resolver) CachedEndpoint(id string) (e fhirjson.Endpoint, found, known bool) {
	a, ok := r.endpoints.Get(id)
	if !ok {
		return fhirjson.Endpoint{}, false, false
	}
	r.cfg.OnCache("endpoint", true)
	return a.ep, a.found, true
}

// PurgeEndpoint drops one cached Endpoint.
func (r *Resolver) PurgeEndpoint(id string) { r.endpoints.Delete(id) }

// PurgeStudy drops one cached study route.
func (r *Resolver) PurgeStudy(uid string) { r.studies.Delete(uid) }

// PurgeAll empties both caches.
func (r *Resolver) PurgeAll() {
	r.endpoints.Purge()
	r.studies.Purge()
}

// CacheSizes returns the number of cached Endpoints and study routes.
func (r *Resolver) CacheSizes() (endpoints, studies int) {
	return r.endpoints.Len(), r.studies.Len()
}

// CachedEndpoint is one entry of the Endpoint cache.
type CachedEndpoint struct {
	// ID is the Endpoint's id.
	ID string `json:"id"`
	// Found is false for a cached "not found".
	Found bool `json:"found"`
	// Endpoint is what was found.
	Endpoint *fhirjson.Endpoint `json:"endpoint,omitempty"`
	// Expires is when the entry goes.
	Expires time.Time `json:"expires"`
}

// CachedStudy is one entry of the study cache.
type CachedStudy struct {
	// UID is the Study Instance UID.
	UID string `json:"uid"`
	// Study is where the study is.
	Study *Study `json:"location"`
	// Expires is when the entry goes.
	Expires time.Time `json:"expires"`
}

// Snapshot lists the unexpired cache entries, sorted by key.
func (r *Resolver) Snapshot() ([]CachedEndpoint, []CachedStudy) {
	var eps []CachedEndpoint
	for id, e := range r.endpoints.Snapshot() {
		ce := CachedEndpoint{ID: id, Found: e.Value.found, Expires: e.Expires}
		if e.Value.found {
			ep := e.Value.ep
			ce.Endpoint = &ep
		}
		eps = append(eps, ce)
	}
	var sts []CachedStudy
	for uid, e := range r.studies.Snapshot() {
		sts = append(sts, CachedStudy{UID: uid, Study: e.Value, Expires: e.Expires})
	}
	sort.Slice(eps, func(i, j int) bool { return eps[i].ID < eps[j].ID })
	sort.Slice(sts, func(i, j int) bool { return sts[i].UID < sts[j].UID })
	return eps, sts
}

// PurgeStudies drops every cached study route, for changes (such as an
// Endpoint's new address) whose reach into routes is not tracked.
func (r *Resolver) PurgeStudies() { r.studies.Purge() }
