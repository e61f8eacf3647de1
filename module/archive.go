package module

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"go.opentelemetry.io/otel/attribute"
	"go.uber.org/zap"

	"github.com/fhirimaging/caddy-fhir-imaging/module/dicom"
	"github.com/fhirimaging/caddy-fhir-imaging/module/fhirjson"
	"github.com/fhirimaging/caddy-fhir-imaging/module/telemetry"
)

// Archive is one DICOM archive the gateway routes to.
type Archive struct {
	// URL is the archive's DICOMweb base URL (its root), e.g.
	// http://127.0.0.1:8042/dicom-web,
	// http://pacs:8080/dcm4chee-arc/aets/DCM4CHEE/rs or
	// https://healthcare.googleapis.com/v1/projects/p/locations/l/datasets/d/dicomStores/s/dicomWeb.
	// Requests are proxied to <URL>/studies/..., and an Endpoint whose
	// address equals it (after normalisation, see fhirjson.ArchiveKey)
	// means this archive. A URL that ends in /studies means the root above
	// it; a query or fragment is refused (send credentials with the
	// proxy's request headers). Required.
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

	// WildcardAccept is the media type asked of this archive for frames,
	// bulk data and pixel data in place of a client's wildcard,
	// `multipart/related; type="*/*"`, which PS3.18 lets clients send (the
	// Python dicomweb-client does by default) but which some archives
	// refuse: Orthanc's DICOMweb plugin answers 400. Every other parameter
	// (transfer-syntax, q) is kept. Default: "application/octet-stream",
	// which PS3.18 requires every origin server to serve. "*/*" passes the
	// wildcard on unchanged, for archives that choose a type themselves.
	WildcardAccept string `json:"wildcard_accept,omitempty"`

	// Proxy is the reverse_proxy handler that carries traffic to the
	// archive, with everything reverse_proxy offers (TLS, health checks,
	// load balancing over several upstreams, retries, header manipulation).
	// Default: one upstream at the URL's host and port, TLS for https, and
	// the Host header set to the upstream's address.
	Proxy *reverseproxy.Handler `json:"proxy,omitempty"`

	name      string
	logger    *zap.Logger
	metrics   *metrics
	traceUIDs bool
	base      *url.URL // parsed URL
	uriBase   *url.URL // parsed WADOURI, or nil
	normalURL string
}

func (ar *Archive) provision(ctx caddy.Context, name string) error {
	ar.name = name
	ar.logger = ctx.Logger().With(zap.String("archive", name))
	var err error
	if ar.base, err = parseArchiveURL(ar.URL); err != nil {
		return fmt.Errorf("url: %v", err)
	}
	// An archive URL that names the studies resource means its root: the
	// gateway appends /studies itself.
	if root, _ := fhirjson.DICOMwebRoot(ar.URL); root != strings.TrimRight(ar.URL, "/") {
		ar.logger.Info("archive URL ends in /studies: using its DICOMweb root", zap.String("url", root))
		ar.URL = root
		ar.base, _ = parseArchiveURL(root)
	}
	ar.normalURL = fhirjson.ArchiveKey(ar.URL)
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
	if ar.WildcardAccept == "" {
		ar.WildcardAccept = "application/octet-stream"
	}
	if mt, params, err := mime.ParseMediaType(ar.WildcardAccept); err != nil || len(params) > 0 || mt != ar.WildcardAccept || !strings.Contains(mt, "/") {
		return fmt.Errorf("wildcard_accept %q must be a media type such as application/octet-stream, without parameters", ar.WildcardAccept)
	}
	if ar.Proxy == nil {
		ar.Proxy = new(reverseproxy.Handler)
	}
	if len(ar.Proxy.Upstreams) == 0 && ar.Proxy.DynamicUpstreamsRaw == nil {
		ar.Proxy.Upstreams = reverseproxy.UpstreamPool{{Dial: hostPort(ar.base)}}
	}
	if err := ar.defaultTransport(); err != nil {
		return err
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

// DefaultResponseHeaderTimeout bounds how long an archive may take to start
// answering, unless its transport says otherwise: an archive that hangs gets
// 504 instead of holding the client for ever. Archives that compute large
// answers before the first byte (study-level metadata of huge studies) may
// need more: transport http { response_header_timeout 2m }.
const DefaultResponseHeaderTimeout = 30 * time.Second

// defaultTransport fills in the archive's HTTP transport: TLS for an https
// URL, and a response header timeout. Caddy's own defaults cover the rest
// (dial 3s, idle connections 2m).
func (ar *Archive) defaultTransport() error {
	tr := new(reverseproxy.HTTPTransport)
	if ar.Proxy.TransportRaw != nil {
		var module struct {
			Protocol string `json:"protocol"`
		}
		if err := json.Unmarshal(ar.Proxy.TransportRaw, &module); err != nil {
			return fmt.Errorf("transport: %v", err)
		}
		if module.Protocol != "http" {
			return nil // another transport module: its own settings
		}
		if err := json.Unmarshal(ar.Proxy.TransportRaw, tr); err != nil {
			return fmt.Errorf("transport: %v", err)
		}
	} else if ar.base.Scheme == "https" {
		tr.TLS = new(reverseproxy.TLSConfig)
	}
	if tr.ResponseHeaderTimeout == 0 {
		tr.ResponseHeaderTimeout = caddy.Duration(DefaultResponseHeaderTimeout)
	}
	ar.Proxy.TransportRaw = caddyconfig.JSONModuleObject(tr, "protocol", "http", nil)
	return nil
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
		out = append(out, fhirjson.ArchiveKey(ar.WADOURI))
	}
	for _, a := range ar.EndpointAddresses {
		out = append(out, fhirjson.ArchiveKey(a))
	}
	return out
}

// narrowAccept replaces, in the Accept headers of a request for frames,
// bulk data or pixel data, a multipart wildcard type by what the archive
// can serve (WildcardAccept).
func (ar *Archive) narrowAccept(h http.Header) {
	if ar.WildcardAccept == "*/*" {
		return
	}
	vals := h.Values("Accept")
	for i, v := range vals {
		if nv, changed := dicom.ReplaceWildcardType(v, ar.WildcardAccept); changed {
			vals[i] = nv
		}
	}
}

// serve proxies r to the archive at the given path (already validated,
// below the archive's own origin) and query, streaming both ways, and
// returns the status written to w, 0 when nothing was. via names the
// handler for metrics. The call is a span of its own, a child of the
// request's, whose context the archive receives as traceparent. r itself
// is not changed.
func (ar *Archive) serve(w http.ResponseWriter, r *http.Request, path, rawQuery, via string) (int, error) {
	ctx, span := telemetry.StartSpan(r.Context(), "fhir_imaging.archive",
		attribute.String("fhir_imaging.archive", ar.name), attribute.String("http.request.method", r.Method))
	if ar.traceUIDs {
		span.SetAttributes(attribute.String("url.path", path))
	}
	out := r.WithContext(ctx)
	u := *r.URL
	// path is in its escaped form (as the client sent the DICOMweb path):
	// it goes on as it is, not escaped a second time.
	u.Path, u.RawPath, u.RawQuery = path, "", rawQuery
	if decoded, err := url.PathUnescape(path); err == nil && decoded != path {
		u.Path, u.RawPath = decoded, path
	}
	out.URL = &u
	out.RequestURI = u.RequestURI()
	out.Header = r.Header.Clone()
	if !ar.PassAuthorization {
		out.Header.Del("Authorization")
	}
	telemetry.Inject(ctx, out.Header)
	sw := &statusWriter{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w}}
	err := ar.Proxy.ServeHTTP(sw, out, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
	span.SetAttributes(attribute.Int("http.response.status_code", sw.status))
	if ar.metrics != nil {
		ar.metrics.routed.WithLabelValues(via, ar.name, strconv.Itoa(sw.status)).Inc()
	}
	telemetry.End(span, err)
	return sw.status, err
}

// failed answers for a proxying error: with a JSON error when nothing was
// sent yet (status 0), else by handing the error to Caddy, since the answer
// is already under way. Either way the failure is logged at error level
// (routed_requests_total counts it with code 0); the client is told which
// archive failed, not how.
func (ar *Archive) failed(w http.ResponseWriter, status int, err error) error {
	ar.logger.Error("archive could not be reached", zap.Bool("answer_started", status != 0), zap.Error(err))
	if status == 0 {
		writeError(w, proxyStatus(err), "archive "+ar.name+" could not be reached")
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

// answer is an archive's answer to a request the gateway made for itself,
// its body read as it arrives.
type answer struct {
	status int
	header http.Header
	body   io.Reader
	close  func()
}

// roundTrip is the one way the gateway asks an archive something for itself
// (a part of a merged answer, a search to combine, a membership check): it
// sends a GET or HEAD for path and query through the archive's proxy, with
// r's headers (accept, when not "", replacing its Accept; no
// Accept-Encoding, so that a body can be read), and returns as soon as the
// status and headers are known. The request has its own replacer and
// variables (caddyhttp.PrepareRequest), since the proxy writes to both and
// several round trips of one client request may run at once. The body
// streams through a pipe; close must be called.
func (ar *Archive) roundTrip(r *http.Request, method, path, query, accept string) (*answer, error) {
	rr := r.Clone(r.Context())
	rr.Method = method
	rr.Body, rr.ContentLength = http.NoBody, 0
	rr.Header.Del("Accept-Encoding")
	rr.Header.Del("Content-Length")
	if accept != "" {
		rr.Header.Set("Accept", accept)
	}
	srv, _ := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	rr = caddyhttp.PrepareRequest(rr, caddy.NewReplacer(), nil, srv)
	pr, pw := io.Pipe()
	sink := &pipeWriter{header: http.Header{}, pw: pw, ready: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := ar.serve(sink, rr, path, query, "dicomweb")
		sink.signal()
		_ = pw.CloseWithError(err)
		done <- err
	}()
	<-sink.ready
	if sink.status == 0 {
		// Nothing was written: the proxy failed before the archive answered.
		err := <-done
		if err == nil {
			err = errors.New("no answer")
		}
		return nil, err
	}
	return &answer{
		status: sink.status,
		header: sink.header,
		body:   pr,
		close: func() {
			_ = pr.CloseWithError(io.ErrClosedPipe)
			<-done
		},
	}, nil
}

// fetch is a GET round trip whose whole answer, at most limit bytes, is
// read: for the JSON answers the gateway reads itself.
func (ar *Archive) fetch(r *http.Request, path, query, accept string, limit int64) (int, []byte, error) {
	ans, err := ar.roundTrip(r, http.MethodGet, path, query, accept)
	if err != nil {
		return 0, nil, err
	}
	defer ans.close()
	body, err := io.ReadAll(io.LimitReader(ans.body, limit+1))
	switch {
	case err != nil:
		return 0, nil, err
	case int64(len(body)) > limit:
		return 0, nil, fmt.Errorf("answer larger than %d bytes", limit)
	}
	return ans.status, body, nil
}

// pipeWriter is a ResponseWriter that hands the body to a pipe and signals
// once the status is known.
type pipeWriter struct {
	header   http.Header
	status   int
	pw       *io.PipeWriter
	ready    chan struct{}
	signaled bool
}

func (p *pipeWriter) signal() {
	if !p.signaled {
		p.signaled = true
		close(p.ready)
	}
}

func (p *pipeWriter) Header() http.Header { return p.header }

func (p *pipeWriter) WriteHeader(status int) {
	if p.status == 0 && status >= 200 {
		p.status = status
		p.signal()
	}
}

func (p *pipeWriter) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	return p.pw.Write(b)
}

// FlushError lets reverse_proxy flush; the pipe has nothing to flush.
func (p *pipeWriter) FlushError() error { return nil }

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
