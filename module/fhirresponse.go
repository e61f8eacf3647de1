package module

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/encode"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/fhirimaging/caddy-fhir-imaging/module/fhirjson"
	"github.com/fhirimaging/caddy-fhir-imaging/module/fhirxml"
	"github.com/fhirimaging/caddy-fhir-imaging/module/telemetry"
)

// The response side of fhir_rewrite: what happens to the FHIR server's
// answer before the client sees it, top to bottom in the order respond()
// does it.

// respond passes the request on to the FHIR server and does to the answer
// what the gateway does before the client sees it, in this order: URL
// headers get the public base as they are written; an answer that may need
// rewriting (JSON, not too large) is captured, anything else streams
// through; a write the FHIR server accepted drops what it changes from the
// caches, so that the very next request routes by it; the captured body is
// rewritten (decompressed, rebased, URLs injected, archive Endpoint
// addresses made public) and written once.
func (h *FHIRRewrite) respond(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, b bases, watch *writeWatch) error {
	if b.toPublic != nil {
		w = newHookWriter(w, rebaseURLHeaders(b.toPublic))
	}
	if r.Method == http.MethodHead || r.Method == http.MethodOptions {
		h.app.metrics.rewrites.WithLabelValues("passthrough_method").Inc()
		return next.ServeHTTP(w, r)
	}
	// Ask upstream only for encodings this handler can undo, so that a
	// compressed answer can still be rewritten.
	if len(r.Header.Values("Accept-Encoding")) > 0 {
		if accepted := encode.AcceptedEncodings(r, nil); slices.Contains(accepted, "gzip") || slices.Contains(accepted, "x-gzip") {
			r.Header.Set("Accept-Encoding", "gzip")
		} else {
			r.Header.Del("Accept-Encoding")
		}
	}
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 4<<20 {
			bufPool.Put(buf)
		}
	}()
	sw := &streamWriter{ResponseWriter: w}
	var streamSpan trace.Span
	decide := func(status int, hdr http.Header) bool {
		if b.toPublicXML != nil && h.shouldStreamXML(status, hdr) {
			h.startXML(sw, hdr, b)
			return false
		}
		if !h.shouldStream(status, hdr) {
			return h.shouldBuffer(status, hdr)
		}
		var ctx context.Context
		ctx, streamSpan = telemetry.StartSpan(r.Context(), "fhir_imaging.rewrite")
		decoded := isGzip(hdr.Get("Content-Encoding"))
		sw.stream = h.newStream(sw, r.WithContext(ctx), b, decoded)
		if decoded {
			sw.inflate = newInflater(sw.stream)
		}
		return false
	}
	defer func() {
		if sw.inflate != nil {
			sw.inflate.Close() // its goroutine ends, even when the proxy panics
		}
		sw.dropOut()
	}()
	rec := &boundedRecorder{w: sw, buf: buf, limit: int(h.MaxBodySize)}
	rec.ResponseRecorder = caddyhttp.NewResponseRecorder(sw, buf, decide)
	err := next.ServeHTTP(rec, r)
	if sw.xml != nil {
		return h.endXML(sw, err, watch, rec.Status())
	}
	if sw.stream != nil {
		return h.endStream(r, sw, streamSpan, err, watch, rec.Status())
	}
	if err != nil {
		return err
	}
	watch.done(h.app, rec.Status())
	if !rec.captured() {
		h.app.metrics.rewrites.WithLabelValues(h.passReason(rec)).Inc()
		return nil
	}
	ctx, span := telemetry.StartSpan(r.Context(), "fhir_imaging.rewrite")
	outcome := "unchanged"
	dst := outPool.Get().(*[]byte)
	defer func() {
		if cap(*dst) <= 16<<20 {
			outPool.Put(dst)
		}
	}()
	out, ok := h.rewrite(r.WithContext(ctx), w.Header(), rec.Status(), buf.Bytes(), b, &outcome, dst)
	span.SetAttributes(attribute.String("fhir_imaging.outcome", outcome))
	span.End()
	h.app.metrics.rewrites.WithLabelValues(outcome).Inc()
	if !ok {
		return rec.WriteResponse()
	}
	hdr := w.Header()
	hdr.Set("Content-Length", strconv.Itoa(len(out)))
	weakenETag(hdr)
	w.WriteHeader(rec.Status())
	_, err = w.Write(out)
	return err
}

// weakenETag makes a strong ETag weak: the representation changed, so a
// strong validator no longer holds.
func weakenETag(hdr http.Header) {
	if etag := hdr.Get("ETag"); etag != "" && !strings.HasPrefix(etag, "W/") {
		hdr.Set("ETag", "W/"+etag)
	}
}

// shouldStream decides from the status and headers whether an answer is
// rewritten as it streams (fhirjson.Stream): a successful FHIR JSON
// answer, of any length, uncompressed or gzip (decompressed as it comes).
func (h *FHIRRewrite) shouldStream(status int, hdr http.Header) bool {
	if status < 200 || status > 299 || status == http.StatusNoContent || status == http.StatusPartialContent {
		return false
	}
	switch ce := strings.ToLower(strings.TrimSpace(hdr.Get("Content-Encoding"))); {
	case ce == "", ce == "identity", isGzip(ce):
	default:
		return false
	}
	return isFHIRJSON(hdr.Get("Content-Type"))
}

// isGzip reports whether a Content-Encoding is gzip.
func isGzip(ce string) bool {
	switch strings.ToLower(strings.TrimSpace(ce)) {
	case "gzip", "x-gzip":
		return true
	}
	return false
}

// newStream sets up the rewrite of an answer as it streams to the client
// through sw: entries go out as they come, unless one needs an Endpoint
// look-up. The header goes out with the first byte: without a length and
// with a weak ETag for a Bundle that streams, with the right length for a
// body rewritten whole, as it came for a body passed on unchanged.
func (h *FHIRRewrite) newStream(sw *streamWriter, r *http.Request, b bases, decoded bool) *fhirjson.Stream {
	rw := h.rewriting(r, b)
	opts := fhirjson.StreamOptions{
		Scan:      rw.scan,
		Rewrite:   rw.opts,
		Plan:      rw.plan,
		Readdress: rw.readdress,
		Lookup:    rw.lookup,
		MaxHold:   int(min(h.MaxBodySize, math.MaxInt32)),
	}
	if n, err := strconv.Atoi(sw.Header().Get("Content-Length")); err == nil && n > 0 {
		opts.SizeHint = n
	}
	if h.app.FHIR != "" {
		opts.Cached = h.app.resolver.CachedEndpoint
		opts.Learn = h.app.resolver.LearnEndpoint
	}
	opts.Start = func(length int, changed bool) {
		hdr := sw.Header()
		if decoded {
			// Sent as it is decompressed: no longer the server's bytes.
			hdr.Del("Content-Encoding")
			if !headerHasToken(hdr.Values("Vary"), "Accept-Encoding") {
				hdr.Add("Vary", "Accept-Encoding")
			}
			changed = true
		}
		if changed {
			if length >= 0 {
				hdr.Set("Content-Length", strconv.Itoa(length))
			} else {
				hdr.Del("Content-Length")
			}
			weakenETag(hdr)
		}
		sw.writeHeader()
	}
	return fhirjson.NewStream(sw.client(), opts)
}

// endStream finishes an answer rewritten as it streamed, once the FHIR
// server's answer is complete (err is what passing it on returned).
func (h *FHIRRewrite) endStream(r *http.Request, sw *streamWriter, span trace.Span, err error, watch *writeWatch, status int) error {
	st := sw.stream
	defer span.End()
	if err := h.endInput(sw, err, "FHIR answer"); err != nil {
		return err
	}
	err = st.Close()
	if ferr := sw.flushOut(); err == nil {
		err = ferr
	}
	sw.writeHeader() // an answer with no body
	watch.done(h.app, status)
	stats := st.Stats()
	outcome := "unchanged"
	switch {
	case st.Malformed():
		outcome = "passthrough_malformed"
	case stats.Edited:
		outcome = "rewritten"
	case stats.Rebased > 0:
		outcome = "rebased"
	}
	h.count(span, stats, st.Studies())
	span.SetAttributes(attribute.String("fhir_imaging.outcome", outcome), attribute.Bool("fhir_imaging.streamed", true),
		attribute.Bool("fhir_imaging.held", st.Held()))
	h.app.metrics.rewrites.WithLabelValues(outcome).Inc()
	return err
}

// endInput ends the reading of a FHIR answer that streamed through sw (err
// is what passing it on returned): its gzip, if any, is checked, and an
// answer that broke off, or whose gzip did, ends the client's answer as
// reverse_proxy ends one whose stream breaks: 502 when nothing went out,
// else cut off (the handler panics with http.ErrAbortHandler), so that
// what came is not taken for the whole. It returns nil when the answer
// came whole.
func (h *FHIRRewrite) endInput(sw *streamWriter, err error, what string) error {
	if sw.inflate != nil {
		if zerr := sw.inflate.Close(); zerr != nil && err == nil {
			err = zerr
		}
	}
	if err == nil {
		return nil
	}
	h.app.metrics.rewrites.WithLabelValues("passthrough_broken").Inc()
	h.logger.Error(what+" broken off while it streamed", zap.Error(err))
	if !sw.wrote {
		return caddyhttp.Error(http.StatusBadGateway, err)
	}
	_ = sw.flushOut()
	_ = http.NewResponseController(sw.ResponseWriter).Flush()
	panic(http.ErrAbortHandler)
}

// shouldStreamXML decides from the status and headers whether an answer is
// a FHIR XML body whose bases are swapped as it streams (fhirxml.Stream):
// any answer with a body (errors included, as for JSON), uncompressed or
// gzip.
func (h *FHIRRewrite) shouldStreamXML(status int, hdr http.Header) bool {
	if status < 200 || status == http.StatusNoContent || status == http.StatusPartialContent || status == http.StatusNotModified {
		return false
	}
	switch ce := strings.ToLower(strings.TrimSpace(hdr.Get("Content-Encoding"))); {
	case ce == "", ce == "identity", isGzip(ce):
	default:
		return false
	}
	return isFHIRXML(hdr.Get("Content-Type"))
}

// startXML sets up the base swap of an XML answer as it streams to the
// client through sw. The answer's length is not known before its end, so
// it goes without Content-Length, and a strong ETag becomes weak; a gzip
// answer is decompressed as it comes and sent plain (encode compresses it
// again).
func (h *FHIRRewrite) startXML(sw *streamWriter, hdr http.Header, b bases) {
	// What is held back at a time: one start tag, bounded like a body.
	sw.xml = b.toPublicXML.NewStream(sw.client(), int(min(h.MaxBodySize, fhirxml.DefaultMaxHold)))
	if isGzip(hdr.Get("Content-Encoding")) {
		hdr.Del("Content-Encoding")
		if !headerHasToken(hdr.Values("Vary"), "Accept-Encoding") {
			hdr.Add("Vary", "Accept-Encoding")
		}
		sw.inflate = newInflater(sw.xml)
	}
	hdr.Del("Content-Length")
	weakenETag(hdr)
}

// endXML finishes an XML answer whose bases were swapped as it streamed,
// once the FHIR server's answer is complete (err is what passing it on
// returned).
func (h *FHIRRewrite) endXML(sw *streamWriter, err error, watch *writeWatch, status int) error {
	if err := h.endInput(sw, err, "FHIR XML answer"); err != nil {
		return err
	}
	err = sw.xml.Close()
	if ferr := sw.flushOut(); err == nil {
		err = ferr
	}
	sw.writeHeader() // an answer with no body
	watch.done(h.app, status)
	outcome := "unchanged"
	switch {
	case sw.xml.Malformed():
		outcome = "passthrough_malformed"
	case sw.xml.Rebased() > 0:
		outcome = "rebased"
	}
	h.app.metrics.rewrites.WithLabelValues(outcome).Inc()
	return err
}

// outPool holds the buffers that rewritten bodies are written into.
var outPool = sync.Pool{New: func() any { return new([]byte) }}

// shouldBuffer decides from the status and headers whether an answer may be
// rewritten, before any of its body is read.
func (h *FHIRRewrite) shouldBuffer(status int, hdr http.Header) bool {
	// Error answers (OperationOutcome) are buffered too: their base is
	// swapped, though nothing is injected into them.
	if status < 200 || status == http.StatusNoContent || status == http.StatusPartialContent || status == http.StatusNotModified {
		return false
	}
	if !isFHIRJSON(hdr.Get("Content-Type")) {
		return false
	}
	switch strings.ToLower(strings.TrimSpace(hdr.Get("Content-Encoding"))) {
	case "", "identity", "gzip", "x-gzip":
	default:
		return false
	}
	if cl := hdr.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err != nil || n > h.MaxBodySize {
			return false
		}
	}
	return true
}

// passReason names why an answer streamed through without being looked at.
func (h *FHIRRewrite) passReason(rec *boundedRecorder) string {
	if rec.overflow {
		return "passthrough_too_large"
	}
	hdr := rec.Header()
	switch {
	case rec.Status() == http.StatusNoContent || rec.Status() == http.StatusNotModified || rec.Status() == http.StatusPartialContent:
		return "passthrough_status"
	case !isFHIRJSON(hdr.Get("Content-Type")):
		return "passthrough_not_json"
	case hdr.Get("Content-Length") != "" && !h.shouldBuffer(rec.Status(), hdr):
		return "passthrough_too_large"
	}
	return "passthrough_encoding"
}

// done drops the affected cache entries if the FHIR server accepted the
// write (status 2xx).
func (w *writeWatch) done(app *App, status int) {
	if w == nil || status < 200 || status > 299 {
		return
	}
	var body []byte
	if !w.truncated {
		body = w.body.Bytes()
	}
	rt := w.resourceType
	if rt == "" {
		if len(body) == 0 {
			return
		}
		rt = "Bundle"
	}
	app.invalidate(rt, w.id, body, "gateway")
}

// rewrite returns the rewritten body and true, or false when the body is
// to be sent as it came. On success the headers are adjusted for a
// decompressed body.
//
// outcome is set to what happened, for metrics: rewritten (URLs injected),
// rebased (only base URLs swapped), unchanged, or passthrough_<reason>.
func (h *FHIRRewrite) rewrite(r *http.Request, hdr http.Header, status int, body []byte, b bases, outcome *string, dst *[]byte) ([]byte, bool) {
	gz := false
	switch strings.ToLower(strings.TrimSpace(hdr.Get("Content-Encoding"))) {
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			h.logger.Debug("not rewritten: gzip body unreadable", zap.Error(err))
			*outcome = "passthrough_encoding"
			return nil, false
		}
		plain, err := io.ReadAll(io.LimitReader(zr, h.MaxBodySize+1))
		if err != nil || int64(len(plain)) > h.MaxBodySize {
			h.logger.Debug("not rewritten: gzip body unreadable or over the size limit", zap.Error(err))
			*outcome = "passthrough_too_large"
			return nil, false
		}
		body, gz = plain, true
	}
	var out []byte
	if h.mayInject(status, body) {
		// One pass: the base swap and the injection together.
		var err error
		out, err = h.inject(r, body, b, outcome, dst)
		if err != nil {
			h.logger.Debug("not rewritten: malformed JSON", zap.Error(err))
			*outcome = "passthrough_malformed"
			return nil, false
		}
	} else if b.toPublic != nil {
		rebased, changed, err := b.toPublic.Apply(body)
		if err != nil {
			h.logger.Debug("not rewritten: malformed JSON", zap.Error(err))
			*outcome = "passthrough_malformed"
			return nil, false
		}
		if changed {
			out, *outcome = rebased, "rebased"
		}
	}
	if out == nil {
		return nil, false
	}
	body = out
	if gz {
		hdr.Del("Content-Encoding")
		if !headerHasToken(hdr.Values("Vary"), "Accept-Encoding") {
			hdr.Add("Vary", "Accept-Encoding")
		}
	}
	return body, true
}

// mayInject reports whether a body may hold something to inject or
// readdress: a successful answer that names an ImagingStudy, or an
// Endpoint when Endpoints are readdressed.
func (h *FHIRRewrite) mayInject(status int, body []byte) bool {
	if status < 200 || status > 299 {
		return false
	}
	return bytes.Contains(body, []byte(`"ImagingStudy"`)) || h.readdressing() && bytes.Contains(body, []byte(`"Endpoint"`))
}

// inject reads body once and writes it to dst with the public base swapped
// in, the WADO-RS and WADO-URI extensions added to its ImagingStudies, and
// its archive Endpoints given the gateway's address (see
// EndpointAddresses). It returns nil when nothing changed, and sets outcome
// to rewritten or rebased otherwise.
func (h *FHIRRewrite) inject(r *http.Request, body []byte, b bases, outcome *string, dst *[]byte) ([]byte, error) {
	rw := h.rewriting(r, b)
	doc, err := fhirjson.Scan(body, rw.scan)
	if err != nil {
		return nil, err
	}
	var fetched map[string]fhirjson.Endpoint
	if ids := doc.MissingEndpoints(); len(ids) > 0 {
		fetched = rw.lookup(ids)
	}
	out, changed, stats := doc.AppendRewrite((*dst)[:0], rw.plan(fetched), rw.readdress, rw.opts)
	*dst = out
	h.count(trace.SpanFromContext(r.Context()), stats, len(doc.Studies))
	switch {
	case !changed:
		return nil, nil
	case stats.Edited:
		*outcome = "rewritten"
	default:
		*outcome = "rebased"
	}
	return out, nil
}

// rewriting is how the answers to one request are rewritten: the same for
// a body rewritten whole and one rewritten as it streams.
type rewriting struct {
	scan      fhirjson.ScanOptions
	opts      fhirjson.Options
	plan      func(fetched map[string]fhirjson.Endpoint) fhirjson.Planner
	readdress fhirjson.Readdress
	lookup    func(ids []string) map[string]fhirjson.Endpoint
}

// rewriting sets up the rewrite of the answers to r.
func (h *FHIRRewrite) rewriting(r *http.Request, b bases) rewriting {
	rsBase, uriBase := absolute(b.origin, h.DICOMwebBase), absolute(b.origin, h.WADOURIBase)
	rw := rewriting{
		scan: fhirjson.ScanOptions{
			LocalBases: append(h.localBases[:len(h.localBases):len(h.localBases)], fhirjson.NormalizeBase(b.seen), fhirjson.NormalizeBase(b.public)),
			Rebase:     b.toPublic,
		},
		opts: fhirjson.Options{Ext: h.ext, Levels: h.levels},
		plan: func(fetched map[string]fhirjson.Endpoint) fhirjson.Planner {
			return func(st *fhirjson.Study, se *fhirjson.Series) fhirjson.Bases {
				var b fhirjson.Bases
				if h.Mode == ModeDirect {
					if e, ok := st.Effective(se, fhirjson.WADORS, fetched); ok {
						b.WADORS = directBase(e.Address)
					}
					if e, ok := st.Effective(se, fhirjson.WADOURI, fetched); ok {
						b.WADOURI = directBase(e.Address)
					}
					return b
				}
				// Proxy mode: any effective Endpoint of a configured
				// archive (the first may be a replica the gateway does
				// not know), as routing decides.
				for _, e := range st.EffectiveAll(se, fhirjson.WADORS, fetched) {
					if h.app.ArchiveFor(e.Address) != nil {
						b.WADORS = rsBase
						break
					}
				}
				for _, e := range st.EffectiveAll(se, fhirjson.WADOURI, fetched) {
					if ar := h.app.ArchiveFor(e.Address); ar != nil && ar.WADOURI != "" {
						b.WADOURI = uriBase
						break
					}
				}
				return b
			}
		},
		lookup: func(ids []string) map[string]fhirjson.Endpoint {
			if h.app.FHIR == "" {
				return nil
			}
			fetched, err := h.app.resolver.Endpoints(r.Context(), ids)
			if err != nil {
				h.logger.Warn("Endpoint look-up failed; the affected series get no URLs", zap.Int("endpoints", len(ids)), zap.Error(err))
			}
			return fetched
		},
	}
	if h.readdressing() {
		rw.readdress = func(site *fhirjson.EndpointSite) (string, bool) {
			return h.publicAddress(site.Endpoint, rsBase, uriBase)
		}
	}
	return rw
}

// directBase is the base of the URLs injected in direct mode for an
// Endpoint address: its DICOMweb root (a trailing /studies dropped), or ""
// (no URL) for an address with a query or fragment, which cannot be told
// apart from the path that would follow it: the URL built on it would not
// be the archive's.
func directBase(address string) string {
	root, query := fhirjson.DICOMwebRoot(address)
	if query {
		return ""
	}
	return root
}

// count records what a rewrite injected in the metrics, its span and the
// debug log.
func (h *FHIRRewrite) count(span trace.Span, stats fhirjson.Stats, studies int) {
	h.app.metrics.injected.WithLabelValues("series").Add(float64(stats.Series))
	h.app.metrics.injected.WithLabelValues("instance").Add(float64(stats.Instances))
	h.app.metrics.injected.WithLabelValues("endpoint_address").Add(float64(stats.Endpoints))
	span.SetAttributes(attribute.Int("fhir_imaging.studies", studies),
		attribute.Int("fhir_imaging.series_urls", stats.Series), attribute.Int("fhir_imaging.instance_urls", stats.Instances),
		attribute.Int("fhir_imaging.endpoint_addresses", stats.Endpoints))
	if ce := h.logger.Check(zap.DebugLevel, "rewrote FHIR response"); ce != nil {
		ce.Write(zap.Int("studies", studies), zap.Int("series_urls", stats.Series),
			zap.Int("instance_urls", stats.Instances), zap.Int("endpoint_addresses", stats.Endpoints))
	}
}

// readdressing reports whether archive Endpoints are answered with the
// gateway's address.
func (h *FHIRRewrite) readdressing() bool {
	return h.Mode == ModeProxy && h.EndpointAddresses == AddressesPublic
}

// publicAddress returns the gateway's address for an Endpoint that means a
// configured archive: the gateway's WADO-URI base for one that serves
// WADO-URI only (or whose address is the archive's wado_uri), else its
// DICOMweb base. It returns false for any other Endpoint.
func (h *FHIRRewrite) publicAddress(e fhirjson.Endpoint, rsBase, uriBase string) (string, bool) {
	ar := h.app.ArchiveFor(e.Address)
	if ar == nil {
		return "", false
	}
	wadoURI := ar.WADOURI != "" && fhirjson.ArchiveKey(e.Address) == fhirjson.ArchiveKey(ar.WADOURI)
	if wadoURI || e.Has(fhirjson.WADOURI) && !e.Has(fhirjson.WADORS) {
		return uriBase, true
	}
	return rsBase, true
}
