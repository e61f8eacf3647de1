package module

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the gateway's Prometheus metrics. They are registered anew in
// Caddy's metrics registry of each config load, so they survive reloads.
type metrics struct {
	rewrites      *prometheus.CounterVec
	injected      *prometheus.CounterVec
	cacheLookups  *prometheus.CounterVec
	fetches       *prometheus.CounterVec
	fetchSeconds  *prometheus.HistogramVec
	routed        *prometheus.CounterVec
	mergeLeftOut  *prometheus.CounterVec
	failovers     *prometheus.CounterVec
	invalidations *prometheus.CounterVec
	registrations *prometheus.CounterVec

	accessDecisions    *prometheus.CounterVec
	accessChecks       *prometheus.CounterVec
	accessCheckSeconds *prometheus.HistogramVec
}

const namespace = "caddy_fhir_imaging"

// newMetrics registers the gateway's metrics in reg. size reports the number
// of entries of a cache ("endpoint" or "study"), and hitRatio the share of
// its look-ups that were hits.
func newMetrics(reg prometheus.Registerer, size func(cache string) int, hitRatio func(cache string) float64) (*metrics, error) {
	m := &metrics{
		rewrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "rewrites_total",
			Help: "FHIR responses seen by fhir_rewrite, by outcome: rewritten, unchanged (nothing to inject) or passed through with the reason.",
		}, []string{"outcome"}),
		injected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "injected_urls_total",
			Help: "What fhir_rewrite put into answers, by kind: series and instance URLs, and Endpoint addresses (endpoint_address).",
		}, []string{"kind"}),
		cacheLookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "cache_lookups_total",
			Help: "Look-ups in the gateway's caches, by cache (endpoint, study) and result (hit, miss).",
		}, []string{"cache", "result"}),
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "fhir_lookups_total",
			Help: "Requests to the FHIR server, by kind (endpoint, study) and result (found, not_found, error).",
		}, []string{"kind", "result"}),
		fetchSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "fhir_lookup_duration_seconds",
			Help:    "Time taken by look-ups against the FHIR server, by kind (endpoint, study).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"kind"}),
		routed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "routed_requests_total",
			Help: "Requests sent to archives, by handler (dicomweb, wado_uri), archive and HTTP status code (0 when the archive could not be reached).",
		}, []string{"handler", "archive", "code"}),
		mergeLeftOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "merge_partial_failures_total",
			Help: "Archives left out of a merged answer (QIDO-RS fan-out, a study split across archives), by archive.",
		}, []string{"archive"}),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "archive_failovers_total",
			Help: "Requests that an archive could not answer (no connection, or a 5xx status) and that went to its replica instead, by handler, the archive that failed (from) and the replica (to).",
		}, []string{"handler", "from", "to"}),
		invalidations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "cache_invalidations_total",
			Help: "Cache entries dropped because a resource changed, by resource type and source (gateway, subscription, admin, registration).",
		}, []string{"resource", "source"}),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "imaging_study_registrations_total",
			Help: "Studies stored through the gateway and registered in FHIR (register_imaging_study), by result (created, updated, unchanged, failed).",
		}, []string{"result"}),
		accessDecisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "access_refusals_total",
			Help: "Requests refused by access control (authorize), by handler and result (unauthenticated, forbidden, unavailable).",
		}, []string{"handler", "result"}),
		accessChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "access_checks_total",
			Help: "Questions asked for access decisions, by kind (introspect, fhir_lookup) and result (active, inactive, ok, error); cached answers are not counted.",
		}, []string{"kind", "result"}),
		accessCheckSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "access_check_duration_seconds",
			Help:    "Time taken by the questions asked for access decisions, by kind (introspect, fhir_lookup).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"kind"}),
	}
	var err error
	for _, v := range []**prometheus.CounterVec{&m.rewrites, &m.injected, &m.cacheLookups, &m.fetches, &m.routed, &m.mergeLeftOut, &m.failovers, &m.invalidations, &m.registrations, &m.accessDecisions, &m.accessChecks} {
		if *v, err = register(reg, *v); err != nil {
			return nil, err
		}
	}
	for _, v := range []**prometheus.HistogramVec{&m.fetchSeconds, &m.accessCheckSeconds} {
		if *v, err = register(reg, *v); err != nil {
			return nil, err
		}
	}
	var gauges []prometheus.Collector
	for _, cache := range []string{"endpoint", "study"} {
		labels := prometheus.Labels{"cache": cache}
		gauges = append(gauges,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Namespace: namespace, Name: "cache_entries", ConstLabels: labels,
				Help: "Entries in the gateway's caches.",
			}, func() float64 { return float64(size(cache)) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Namespace: namespace, Name: "cache_hit_ratio", ConstLabels: labels,
				Help: "Share of cache look-ups that were hits since the config was loaded.",
			}, func() float64 { return hitRatio(cache) }))
	}
	for _, g := range gauges {
		if _, err := register(reg, g); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// register registers c, or returns the collector already registered in its
// place.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

func (m *metrics) fetched(kind, result string, d time.Duration) {
	m.fetches.WithLabelValues(kind, result).Inc()
	m.fetchSeconds.WithLabelValues(kind).Observe(d.Seconds())
}

func (m *metrics) accessCheck(kind, result string, d time.Duration) {
	m.accessChecks.WithLabelValues(kind, result).Inc()
	m.accessCheckSeconds.WithLabelValues(kind).Observe(d.Seconds())
}
