// Package module holds the Caddy modules of caddy-fhir-imaging: the
// fhir_imaging app and the fhir_rewrite, dicomweb and wado_uri HTTP handlers.
// They are thin glue between Caddy and the pure logic in the fhirjson, dicom
// and resolve packages.
package module

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/fhirimaging/caddy-fhir-imaging/module/fhirjson"
	"github.com/fhirimaging/caddy-fhir-imaging/module/internal/ttlcache"
	"github.com/fhirimaging/caddy-fhir-imaging/module/resolve"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the fhir_imaging app: the state that the gateway's handlers share.
// It knows the upstream FHIR server used for look-ups, the named DICOM
// archives (each proxied by its own embedded reverse_proxy), and the cache
// that maps Endpoints and DICOM studies to archives.
type App struct {
	// FHIR is the base URL of the upstream FHIR server, used to look up
	// Endpoint and ImagingStudy resources, e.g. http://127.0.0.1:8080/fhir.
	// Without it, only Endpoints carried in a response itself are used and
	// DICOMweb requests cannot be routed.
	FHIR string `json:"fhir,omitempty"`

	// FHIRVersion is the FHIR version the FHIR server speaks, for the
	// searches the gateway sends it: "r4" (R4, R4B and R5, which carry a
	// study's DICOM UID in ImagingStudy.identifier, searched with
	// identifier=urn:dicom:uid|...) or "stu3" (STU3, which carries it in
	// ImagingStudy.uid as urn:oid:<uid>, searched with study=; a study is
	// then looked up with study= first and identifier= second). Answers
	// are read the same way whatever it says: the rewrite finds the UIDs of
	// every version. Default: r4.
	FHIRVersion string `json:"fhir_version,omitempty"`

	// FHIRCredentials, when set, authenticate the gateway's own requests to
	// the FHIR server (look-ups for routing and for Endpoints, and
	// Subscriptions) with an OAuth 2.0 client_credentials token. Default:
	// none, the requests carry no credentials.
	FHIRCredentials *ClientCredentials `json:"fhir_credentials,omitempty"`

	// Archives are the DICOM archives the gateway may contact, by name.
	// No request is ever sent to an address that is not one of them.
	Archives map[string]*Archive `json:"archives,omitempty"`

	// CacheTTL is how long a resolved Endpoint or study location is kept.
	// Default (also for 0): 5m.
	CacheTTL caddy.Duration `json:"cache_ttl,omitempty"`

	// NegativeTTL is how long "this Endpoint or study is not known" is kept.
	// Default (also for 0): 10s.
	NegativeTTL caddy.Duration `json:"negative_ttl,omitempty"`

	// CacheSize bounds the number of entries of each cache (Endpoints,
	// studies, archive membership, tokens). Default (also for 0): 10000.
	CacheSize int `json:"cache_size,omitempty"`

	// LookupTimeout bounds one look-up against the FHIR server. A look-up
	// that fails or times out leaves the affected series without injected
	// URLs and never fails a FHIR response. Default: 2s.
	LookupTimeout caddy.Duration `json:"lookup_timeout,omitempty"`

	// LookupRate bounds, per second, the study look-ups that miss the cache
	// (a burst of twice as many is allowed): any client can send distinct
	// valid UIDs, each of which would otherwise cost a FHIR search. Requests
	// over the bound get 503 with Retry-After. Default (also for 0): 50.
	LookupRate float64 `json:"lookup_rate,omitempty"`

	// StoreArchive names the archive that receives STOW-RS (POST /studies).
	// Default: none, and STOW-RS is refused.
	StoreArchive string `json:"store_archive,omitempty"`

	// RegisterImagingStudy, when set, creates or updates the ImagingStudy
	// of every study stored through the gateway (STOW-RS to the
	// store_archive) in the FHIR server before the client gets the
	// archive's answer, so that the images are found at once. It needs
	// fhir and store_archive. Default: none, stored images are not
	// registered.
	RegisterImagingStudy *Registration `json:"register_imaging_study,omitempty"`

	// DefaultArchive names the archive asked for a study that the FHIR
	// server does not know. Default: none, and such requests get 404.
	DefaultArchive string `json:"default_archive,omitempty"`

	// Subscribe is this instance's notify URL as the FHIR server can reach
	// it: a route of one of its sites that serves the fhir_notify handler,
	// e.g. https://gateway-1.internal:8443/fhir_imaging/notify. When set,
	// the app registers FHIR rest-hook Subscriptions on ImagingStudy and
	// Endpoint changes that point there, and deletes them when the last
	// config that uses them is gone, so that changes made through any
	// gateway instance or directly in the FHIR server drop the affected
	// cache entries at once. Default: none; entries then live until their
	// TTL or a change made through this instance.
	Subscribe string `json:"subscribe,omitempty"`

	// Authorize, when set, requires a SMART bearer token on every DICOMweb
	// and WADO-URI request and lets it read only the studies that the FHIR
	// server shows that token. Default: none, and DICOMweb and WADO-URI are
	// open to every client that can reach them (a warning says so at
	// start).
	Authorize *Authorize `json:"authorize,omitempty"`

	// TraceUIDs puts study, series and instance UIDs and Endpoint ids on
	// trace spans and in debug logs. Default: off, since UIDs identify
	// patients' data.
	TraceUIDs bool `json:"trace_uids,omitempty"`

	resolver  *resolve.Resolver
	members   *membership
	addresses map[string]string // normalised address → archive name
	names     []string          // archive names, sorted
	logger    *zap.Logger
	metrics   *metrics
	lookups   *cacheCounts
	subs      *subscriptions
	releases  []func() // let go of what is kept across reloads (shared.go)
}

// The values of App.FHIRVersion.
const (
	FHIRVersionR4   = "r4"
	FHIRVersionSTU3 = "stu3"
)

// cacheCounts counts cache hits and misses per cache (endpoint, study).
type cacheCounts struct {
	hits, misses [2]atomic.Int64
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "fhir_imaging",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision fills in defaults, provisions the archives and sets up the
// resolver.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	if a.CacheTTL == 0 {
		a.CacheTTL = caddy.Duration(5 * time.Minute)
	}
	if a.NegativeTTL == 0 {
		a.NegativeTTL = caddy.Duration(10 * time.Second)
	}
	if a.CacheSize == 0 {
		a.CacheSize = 10000
	}
	if a.LookupTimeout == 0 {
		a.LookupTimeout = caddy.Duration(2 * time.Second)
	}
	if a.LookupRate == 0 {
		a.LookupRate = 50
	}
	a.FHIR = strings.TrimRight(a.FHIR, "/")
	if a.FHIRVersion == "" {
		a.FHIRVersion = FHIRVersionR4
	}
	a.addresses = map[string]string{}
	a.names = a.names[:0]
	for name, ar := range a.Archives {
		if ar == nil {
			return fmt.Errorf("archive %q: no configuration", name)
		}
		if err := ar.provision(ctx, name); err != nil {
			return fmt.Errorf("archive %q: %v", name, err)
		}
		for _, addr := range ar.addresses() {
			if other, dup := a.addresses[addr]; dup && other != name {
				return fmt.Errorf("address %s is claimed by archives %q and %q", addr, other, name)
			}
			a.addresses[addr] = name
		}
		a.names = append(a.names, name)
	}
	sort.Strings(a.names)
	var err error
	a.lookups = new(cacheCounts)
	a.metrics, err = newMetrics(ctx.GetMetricsRegistry(), a.cacheSize, a.hitRatio)
	if err != nil {
		return fmt.Errorf("registering metrics: %v", err)
	}
	for _, ar := range a.Archives {
		ar.metrics = a.metrics
		ar.traceUIDs = a.TraceUIDs
	}
	rt, err := share(a, poolKey("fhir_imaging.routing", a.FHIR, addressKey(a.addresses), durationKey(a.CacheTTL),
		durationKey(a.NegativeTTL), durationKey(a.LookupTimeout), a.CacheSize, a.LookupRate, credentialsKey(a.FHIRCredentials), a.TraceUIDs, a.FHIRVersion),
		a.newRouting)
	if err != nil {
		return err
	}
	a.resolver, a.members = rt.resolver, rt.members
	if a.Subscribe != "" {
		a.subs, err = share(a, poolKey("fhir_imaging.subscriptions", a.FHIR, a.Subscribe, credentialsKey(a.FHIRCredentials)),
			func(func() *App) (*subscriptions, func(), error) {
				client := &http.Client{Timeout: 10 * time.Second}
				if a.FHIRCredentials != nil {
					client = a.FHIRCredentials.client(client)
				}
				s := &subscriptions{fhir: a.FHIR, callback: a.Subscribe, client: client, logger: a.logger}
				return s, s.stop, nil
			})
		if err != nil {
			return err
		}
	}
	if a.Authorize != nil {
		if err := a.Authorize.provision(a); err != nil {
			return err
		}
	}
	if a.RegisterImagingStudy != nil && a.Archives[a.StoreArchive] != nil {
		a.RegisterImagingStudy.provision(a)
	}
	return nil
}

// routing is what routes requests, kept across config reloads: the FHIR
// look-ups with their caches, and what archives were found to hold.
type routing struct {
	resolver *resolve.Resolver
	members  *membership
}

// newRouting makes the routing state for a's settings. It keeps its own
// copy of the archive addresses, and counts into the newest config's
// metrics.
func (a *App) newRouting(newest func() *App) (*routing, func(), error) {
	addresses := maps.Clone(a.addresses)
	client := &http.Client{Timeout: time.Duration(a.LookupTimeout)}
	if a.FHIRCredentials != nil {
		client = a.FHIRCredentials.client(client)
	}
	res := resolve.New(resolve.Config{
		FHIRBase:    a.FHIR,
		Client:      client,
		TTL:         time.Duration(a.CacheTTL),
		NegativeTTL: time.Duration(a.NegativeTTL),
		Timeout:     time.Duration(a.LookupTimeout),
		MaxEntries:  a.CacheSize,
		Archive:     func(normalized string) string { return addresses[normalized] },
		OnCache: func(cache string, hit bool) {
			if app := newest(); app != nil {
				app.cacheLookup(cache, hit)
			}
		},
		OnFetch: func(kind, result string, d time.Duration) {
			if app := newest(); app != nil {
				app.metrics.fetched(kind, result, d)
			}
		},
		TraceUIDs:    a.TraceUIDs,
		StudyLookups: a.LookupRate,
		STU3:         a.FHIRVersion == FHIRVersionSTU3,
	})
	return &routing{resolver: res, members: &membership{held: ttlcache.New[bool](a.CacheSize, nil)}}, nil, nil
}

func cacheIndex(cache string) int {
	if cache == "study" {
		return 1
	}
	return 0
}

func (a *App) cacheLookup(cache string, hit bool) {
	result := "miss"
	if hit {
		result = "hit"
		a.lookups.hits[cacheIndex(cache)].Add(1)
	} else {
		a.lookups.misses[cacheIndex(cache)].Add(1)
	}
	a.metrics.cacheLookups.WithLabelValues(cache, result).Inc()
}

func (a *App) hitRatio(cache string) float64 {
	h, m := a.lookups.hits[cacheIndex(cache)].Load(), a.lookups.misses[cacheIndex(cache)].Load()
	if h+m == 0 {
		return 0
	}
	return float64(h) / float64(h+m)
}

func (a *App) cacheSize(cache string) int {
	if a.resolver == nil {
		return 0
	}
	endpoints, studies := a.resolver.CacheSizes()
	if cache == "study" {
		return studies
	}
	return endpoints
}

// Validate checks the configuration; it is fast and contacts nothing. A
// JSON config is held to the same rules as a Caddyfile.
func (a *App) Validate() error {
	for _, d := range []struct {
		name string
		v    caddy.Duration
	}{{"cache_ttl", a.CacheTTL}, {"negative_ttl", a.NegativeTTL}, {"lookup_timeout", a.LookupTimeout}} {
		if d.v < 0 {
			return fmt.Errorf("%s must not be negative", d.name)
		}
	}
	switch a.FHIRVersion {
	case "", FHIRVersionR4, FHIRVersionSTU3:
	default:
		return fmt.Errorf("fhir_version must be %s or %s, not %q", FHIRVersionR4, FHIRVersionSTU3, a.FHIRVersion)
	}
	if a.CacheSize < 0 {
		return fmt.Errorf("cache_size must not be negative")
	}
	if a.LookupRate < 0 {
		return fmt.Errorf("lookup_rate must not be negative")
	}
	if a.FHIR != "" {
		if err := checkHTTPURL(a.FHIR); err != nil {
			return fmt.Errorf("fhir: %v", err)
		}
	}
	if a.Subscribe != "" {
		if a.FHIR == "" {
			return fmt.Errorf("subscribe needs fhir")
		}
		if err := checkHTTPURL(a.Subscribe); err != nil {
			return fmt.Errorf("subscribe: %v", err)
		}
	}
	if a.FHIRCredentials != nil {
		if err := a.FHIRCredentials.validate(); err != nil {
			return fmt.Errorf("fhir credentials: %v", err)
		}
	}
	if a.Authorize != nil {
		if err := a.Authorize.validate(a); err != nil {
			return fmt.Errorf("authorize: %v", err)
		}
	}
	if a.RegisterImagingStudy != nil {
		if err := a.RegisterImagingStudy.validate(a); err != nil {
			return fmt.Errorf("register_imaging_study: %v", err)
		}
	}
	for _, n := range []struct{ what, name string }{{"store_archive", a.StoreArchive}, {"default_archive", a.DefaultArchive}} {
		if n.name != "" && a.Archives[n.name] == nil {
			return fmt.Errorf("%s: no archive named %q", n.what, n.name)
		}
	}
	return nil
}

// Start registers the FHIR Subscriptions, if configured and not already
// registered by an earlier config, in the background, and warns when
// images are open to anyone.
func (a *App) Start() error {
	if a.Authorize == nil {
		a.logger.Warn("DICOMweb and WADO-URI are open to every client that can reach them: no authorize block is configured")
	}
	if a.subs != nil {
		a.subs.start()
	}
	return nil
}

// Stop does nothing: what outlives this config (caches, Subscriptions) is
// let go of in Cleanup, and goes when no config uses it any more.
func (a *App) Stop() error { return nil }

// Cleanup lets go of the state kept across reloads and releases the
// archives' proxies. It is safe to call at any point.
func (a *App) Cleanup() error {
	for i := len(a.releases) - 1; i >= 0; i-- {
		a.releases[i]()
	}
	a.releases = nil
	for _, ar := range a.Archives {
		if ar != nil {
			ar.cleanup()
		}
	}
	return nil
}

// Archive returns the archive with the given name, or nil.
func (a *App) Archive(name string) *Archive { return a.Archives[name] }

// Resolver returns the app's resolver.
func (a *App) Resolver() *resolve.Resolver { return a.resolver }

// ArchiveFor returns the archive an Endpoint address means, or nil.
func (a *App) ArchiveFor(address string) *Archive {
	if n := a.addresses[fhirjson.ArchiveKey(address)]; n != "" {
		return a.Archives[n]
	}
	return nil
}

func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q is not an http or https URL", s)
	}
	if u.Host == "" {
		return fmt.Errorf("%q has no host", s)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q must not have a query or fragment", s)
	}
	return nil
}

// Interface guards.
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
