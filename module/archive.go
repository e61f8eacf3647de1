package module

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"go.opentelemetry.io/otel/attribute"

	"github.com/fhirimaging/caddy-fhir-imaging/module/fhirjson"
	"github.com/fhirimaging/caddy-fhir-imaging/module/telemetry"
)

// Archive is one DICOM archive the gateway routes to.
type Archive struct {
	// URL is the archive's DICOMweb base URL, e.g.
	// http://127.0.0.1:8042/dicom-web. Requests are proxied to
	// <URL>/studies/..., and an Endpoint whose address equals it (after
	// normalisation) means this archive.
	URL string `json:"url"`

	// WADOURI is the archive's WADO-URI base URL, e.g.
	// http://127.0.0.1:8042/wado. Default: none, and WADO-URI requests for
	// this archive are refused and no WADO-URI URL is injected for it.
	WADOURI string `json:"wado_uri,omitempty"`

	// EndpointAddresses are further Endpoint.address values that mean this
	// archive (e.g. the public address that FHIR data carries).
	EndpointAddresses []string `json:"endpoint_addresses,omitempty"`

	// PassAuthorization sends the client's Authorization header on to the
	// archive. Default: false, the header is removed; set archive
	// credentials with the proxy's request headers instead.
	PassAuthorization bool `json:"pass_authorization,omitempty"`

	// Proxy is the reverse_proxy handler that carries traffic to the
	// archive, with everything reverse_proxy offers (TLS, health checks,
	// load balancing over several upstreams, retries, header manipulation).
	// Default: one upstream at the URL's host and port, TLS for https, and
	// the Host header set to the upstream's address.
	Proxy *reverseproxy.Handler `json:"proxy,omitempty"`

	name      string
	metrics   *metrics
	traceUIDs bool
	base      *url.URL // parsed URL
	uriBase   *url.URL // parsed WADOURI, or nil
	normalURL string
}

func (ar *Archive) provision(ctx caddy.Context, name string) error {
	ar.name = name
	var err error
	if ar.base, err = parseArchiveURL(ar.URL); err != nil {
		return fmt.Errorf("url: %v", err)
	}
	ar.normalURL = fhirjson.NormalizeBase(ar.URL)
	if ar.WADOURI != "" {
		if ar.uriBase, err = parseArchiveURL(ar.WADOURI); err != nil {
			return fmt.Errorf("wado_uri: %v", err)
		}
		if !strings.EqualFold(ar.uriBase.Host, ar.base.Host) || ar.uriBase.Scheme != ar.base.Scheme {
			return fmt.Errorf("wado_uri %s must be on the same scheme, host and port as url %s, since both go through the archive's proxy", ar.WADOURI, ar.URL)
		}
	}
	for _, a := range ar.EndpointAddresses {
		if err := checkHTTPURL(a); err != nil {
			return fmt.Errorf("endpoint_address: %v", err)
		}
	}
	if ar.Proxy == nil {
		ar.Proxy = new(reverseproxy.Handler)
	}
	if len(ar.Proxy.Upstreams) == 0 && ar.Proxy.DynamicUpstreamsRaw == nil {
		ar.Proxy.Upstreams = reverseproxy.UpstreamPool{{Dial: hostPort(ar.base)}}
	}
	if ar.base.Scheme == "https" && ar.Proxy.TransportRaw == nil {
		ar.Proxy.TransportRaw = caddyconfig.JSONModuleObject(
			&reverseproxy.HTTPTransport{TLS: &reverseproxy.TLSConfig{}}, "protocol", "http", nil)
	}
	if ar.Proxy.Headers == nil {
		ar.Proxy.Headers = new(headers.Handler)
	}
	if ar.Proxy.Headers.Request == nil {
		ar.Proxy.Headers.Request = new(headers.HeaderOps)
	}
	if ar.Proxy.Headers.Request.Set.Get("Host") == "" {
		if ar.Proxy.Headers.Request.Set == nil {
			ar.Proxy.Headers.Request.Set = http.Header{}
		}
		ar.Proxy.Headers.Request.Set.Set("Host", "{http.reverse_proxy.upstream.hostport}")
	}
	return ar.Proxy.Provision(ctx)
}

func (ar *Archive) cleanup() {
	if ar.Proxy != nil {
		_ = ar.Proxy.Cleanup()
	}
}

// Name returns the archive's configured name.
func (ar *Archive) Name() string { return ar.name }

// addresses returns every normalised address that means this archive.
func (ar *Archive) addresses() []string {
	out := []string{ar.normalURL}
	if ar.WADOURI != "" {
		out = append(out, fhirjson.NormalizeBase(ar.WADOURI))
	}
	for _, a := range ar.EndpointAddresses {
		out = append(out, fhirjson.NormalizeBase(a))
	}
	return out
}

// serve proxies r to the archive at the given path (already validated, below
// the archive's own origin) and query, streaming both ways. via names the
// handler for metrics. The call is a span of its own, whose context the
// archive receives as traceparent. It returns the status written to w, 0
// when nothing was.
func (ar *Archive) serve(w http.ResponseWriter, r *http.Request, path, rawQuery, via string) (int, error) {
	ctx, span := telemetry.StartSpan(r.Context(), "fhir_imaging.archive",
		attribute.String("fhir_imaging.archive", ar.name), attribute.String("http.request.method", r.Method))
	if ar.traceUIDs {
		span.SetAttributes(attribute.String("url.path", path))
	}
	*r = *r.WithContext(ctx)
	r.URL.Path = path
	r.URL.RawPath = ""
	r.URL.RawQuery = rawQuery
	r.RequestURI = r.URL.RequestURI()
	if !ar.PassAuthorization {
		r.Header.Del("Authorization")
	}
	telemetry.Inject(ctx, r.Header)
	sw := &statusWriter{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w}}
	err := ar.Proxy.ServeHTTP(sw, r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
	span.SetAttributes(attribute.Int("http.response.status_code", sw.status))
	if ar.metrics != nil {
		ar.metrics.routed.WithLabelValues(via, ar.name, strconv.Itoa(sw.status)).Inc()
	}
	telemetry.End(span, err)
	return sw.status, err
}

// failed answers for a proxying error: with a JSON error when nothing was
// sent yet (status 0), else by handing the error to Caddy, since the answer
// is already under way.
func (ar *Archive) failed(w http.ResponseWriter, status int, err error) error {
	if status == 0 {
		writeError(w, proxyStatus(err), "archive "+ar.name+" could not be reached: "+err.Error())
		return nil
	}
	return err
}

// statusWriter notes the status of an answer on its way through.
type statusWriter struct {
	*caddyhttp.ResponseWriterWrapper
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 && code >= 200 {
		s.status = code
	}
	s.ResponseWriterWrapper.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriterWrapper.Write(b)
}

func parseArchiveURL(s string) (*url.URL, error) {
	if err := checkHTTPURL(s); err != nil {
		return nil, err
	}
	u, _ := url.Parse(strings.TrimRight(s, "/"))
	if u.User != nil {
		return nil, fmt.Errorf("%q must not carry credentials; use the proxy's header_up", s)
	}
	return u, nil
}

func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "https" {
		return net.JoinHostPort(u.Hostname(), "443")
	}
	return net.JoinHostPort(u.Hostname(), "80")
}
