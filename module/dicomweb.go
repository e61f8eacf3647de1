package module

import (
	"bytes"
	"errors"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/tidwall/gjson"
	"go.uber.org/zap"

	"github.com/fhirimaging/caddy-fhir-imaging/module/access"
	"github.com/fhirimaging/caddy-fhir-imaging/module/dicom"
	"github.com/fhirimaging/caddy-fhir-imaging/module/fhirjson"
	"github.com/fhirimaging/caddy-fhir-imaging/module/resolve"
)

func init() {
	caddy.RegisterModule(DICOMweb{})
}

// DICOMweb is a terminal HTTP handler that serves DICOMweb (WADO-RS, QIDO-RS,
// STOW-RS) by routing each request to the archive that holds the study or
// series it names, found through the FHIR server's ImagingStudy and Endpoint
// resources. It expects the request path relative to its DICOMweb base (use
// it under handle_path). Image data streams through unbuffered; DICOM JSON
// answers have the archives' own URLs replaced by the gateway's.
type DICOMweb struct {
	// PublicBase is the gateway's DICOMweb base as clients see it, used to
	// rewrite RetrieveURL and BulkDataURI values. Default: the request's
	// scheme and host followed by the path prefix that handle_path removed.
	PublicBase string `json:"public_base,omitempty"`

	// MaxJSONSize is the largest DICOM JSON answer, in bytes, whose URLs are
	// rewritten; a larger one streams through as the archive sent it.
	// Default: 67108864 (64 MiB).
	MaxJSONSize int64 `json:"max_json_size,omitempty"`

	app    *App
	froms  dicom.Froms // the archives' bases, rebased onto the public base per request
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (DICOMweb) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.dicomweb",
		New: func() caddy.Module { return new(DICOMweb) },
	}
}

// Provision fills in defaults and connects to the fhir_imaging app.
func (h *DICOMweb) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.MaxJSONSize == 0 {
		h.MaxJSONSize = 64 << 20
	}
	h.PublicBase = strings.TrimRight(h.PublicBase, "/")
	app, err := ctx.App("fhir_imaging")
	if err != nil {
		return err
	}
	h.app = app.(*App)
	var froms []string
	for _, name := range h.app.names {
		ar := h.app.Archives[name]
		froms = append(froms, ar.URL)
		froms = append(froms, ar.EndpointAddresses...)
	}
	// Parsed once here, not for every answer.
	if h.froms, err = dicom.ParseFroms(froms...); err != nil {
		return err
	}
	return nil
}

// Validate checks the configuration.
func (h *DICOMweb) Validate() error {
	if h.PublicBase != "" {
		if err := checkHTTPURL(h.PublicBase); err != nil {
			return err
		}
	}
	if h.MaxJSONSize < 0 {
		return errors.New("max_json_size must not be negative")
	}
	return nil
}

// ServeHTTP routes one DICOMweb request. With authorize, the request's
// token is checked first: for the study the path names, for every study a
// search answers, or for storing.
func (h *DICOMweb) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if refuseDotSegments(w, r) {
		return nil
	}
	az := h.app.Authorize
	w, sess, ok := az.admit(w, r, "dicomweb")
	if !ok {
		return nil
	}
	rawPath := r.URL.EscapedPath()
	req, err := dicom.ParsePath(rawPath)
	if err != nil {
		return h.app.answerError(w, "dicomweb", err)
	}
	var (
		order  []*Archive // the archive asked, then its replicas
		usable func(*Archive) bool
	)
	switch {
	case r.Method == http.MethodPost && req.Level == dicom.LevelRoot && req.Sub == "studies",
		r.Method == http.MethodPost && req.Level == dicom.LevelStudy && req.Sub == "":
		// STOW-RS.
		if h.app.StoreArchive == "" {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, "STOW-RS is not enabled: no store_archive is configured")
			return nil
		}
		if sess != nil && !sess.Token.ImagingStore() {
			az.deny(w, sess, "dicomweb", "storing needs a user/ or system/ scope that may create ImagingStudy")
			return nil
		}
		return h.store(w, r, h.app.Archives[h.app.StoreArchive], req)
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		allow := "GET, HEAD"
		if h.app.StoreArchive != "" && (req.Level == dicom.LevelRoot && req.Sub == "studies" || req.Level == dicom.LevelStudy && req.Sub == "") {
			allow += ", POST"
		}
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" is not supported on "+req.Path())
		return nil
	case req.Level == dicom.LevelRoot:
		// A QIDO-RS search over every archive.
		if len(h.app.names) == 0 {
			writeError(w, http.StatusNotFound, "no archive is configured")
			return nil
		}
		if sess != nil {
			return h.fanOut(w, r, req, h.visibleOnly(r, sess))
		}
		if len(h.app.names) > 1 {
			return h.fanOut(w, r, req, nil)
		}
		order = []*Archive{h.app.Archives[h.app.names[0]]}
	default:
		if sess != nil && !az.mayReadStudy(w, r, sess, "dicomweb", req.Study) {
			return nil
		}
		var loc *resolve.Study
		order, loc, err = h.app.route(r, req.Study, req.Series, fhirjson.WADORS)
		if err != nil {
			return h.app.routeFailed(w, sess, "dicomweb", req.Level != dicom.LevelStudy, err)
		}
		if sess != nil && req.Level != dicom.LevelStudy {
			if order, ok = h.app.reachable(w, r, sess, order, "dicomweb", req.Study, req.Series, req.Instance); !ok {
				return nil
			}
			usable = h.app.holdsFunc(r, req.Study, req.Series, req.Instance)
		}
		if req.Level == dicom.LevelStudy && loc != nil {
			// Spread, not every archive named: replicas of one series
			// are not merged twice.
			if names := loc.Spread(fhirjson.WADORS); len(names) > 1 {
				if done, err := h.serveSplitStudy(w, r, req, h.archives(names)); done {
					return err
				}
			}
		}
	}
	if ce := h.logger.Check(zap.DebugLevel, "routing DICOMweb request"); ce != nil {
		ce.Write(zap.String("archive", order[0].name), zap.Int("replicas", len(order)-1), zap.String("level", req.Level.String()))
	}
	if req.IsSearch() || strings.HasSuffix(req.Sub, "metadata") {
		// A DICOM JSON answer is rewritten, so it must come uncompressed;
		// an encode handler in front compresses the result.
		r.Header.Del("Accept-Encoding")
	}
	return h.proxy(w, r, order, req.Path(), req.WantsOctets(), usable)
}

// visibleOnly returns the filter that keeps, of a search's answer, the
// datasets of the studies the session's token may read; a dataset that
// names no study goes.
func (h *DICOMweb) visibleOnly(r *http.Request, sess *access.Session) keepFunc {
	return func(datasets []gjson.Result) ([]gjson.Result, error) {
		uids := make([]string, 0, len(datasets))
		for _, ds := range datasets {
			if uid := ds.Get("0020000D.Value.0").String(); dicom.ValidUID(uid) {
				uids = append(uids, uid)
			}
		}
		seen, err := h.app.Authorize.authorizer.Visible(r.Context(), sess, r.Header.Get("Authorization"), uids)
		if err != nil {
			return nil, err
		}
		kept := datasets[:0]
		for _, ds := range datasets {
			if seen[ds.Get("0020000D.Value.0").String()] {
				kept = append(kept, ds)
			}
		}
		return kept, nil
	}
}

// archives returns the configured archives with the given names.
func (h *DICOMweb) archives(names []string) []*Archive {
	out := make([]*Archive, 0, len(names))
	for _, n := range names {
		if ar := h.app.Archives[n]; ar != nil {
			out = append(out, ar)
		}
	}
	return out
}

// proxy sends r to the first archive of order at its base path followed by
// sub, keeping the query and headers, streaming the answer; a DICOM JSON
// answer has its URLs rebased. octets says that frames, bulk data or pixel
// data are asked for, whose wildcard Accept each archive narrows its own
// way. A GET or HEAD that an archive cannot answer before anything was sent
// goes to the next archive of order (a replica) that usable, when not nil,
// allows.
func (h *DICOMweb) proxy(w http.ResponseWriter, r *http.Request, order []*Archive, sub string, octets bool, usable func(*Archive) bool) error {
	rules := h.rules(r)
	buffered := !rules.Empty() && r.Method == http.MethodGet
	var buf *bytes.Buffer
	if buffered {
		buf = bufPool.Get().(*bytes.Buffer)
		defer func() {
			if buf.Cap() <= 4<<20 {
				bufPool.Put(buf)
			}
		}()
	}
	accept := slices.Clone(r.Header.Values("Accept"))
	try := newReplicas(h.app, r, "dicomweb", order, usable)
	for ar := try.first(); ar != nil; ar = try.next {
		if octets {
			if len(accept) > 0 {
				r.Header["Accept"] = slices.Clone(accept)
			}
			ar.narrowAccept(r.Header)
		}
		aw := newAnswerWriter(w, ar, "dicomweb", rules)
		var (
			dst http.ResponseWriter = aw
			rec *boundedRecorder
		)
		if buffered {
			buf.Reset()
			rec = &boundedRecorder{w: aw, buf: buf, limit: int(h.MaxJSONSize)}
			rec.ResponseRecorder = caddyhttp.NewResponseRecorder(aw, buf, h.shouldBuffer)
			dst = rec
		}
		fw := try.writer(dst)
		status, err := ar.serve(fw, r, ar.base.Path+sub, r.URL.RawQuery, "dicomweb")
		if try.again(ar, fw, status, err) {
			continue
		}
		if err != nil {
			return ar.failed(w, status, err)
		}
		if !buffered || !rec.captured() {
			return aw.finish()
		}
		body, changed, err := rules.RewriteURLs(buf.Bytes())
		if err != nil || !changed {
			return rec.WriteResponse()
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Header().Del("ETag")
		w.WriteHeader(rec.Status())
		_, err = w.Write(body)
		return err
	}
	return nil
}

// rules returns the URL rebasing rules for this request: every archive
// address to the gateway's public DICOMweb base.
func (h *DICOMweb) rules(r *http.Request) dicom.Rules {
	return h.froms.To(h.publicBase(r))
}

// publicBase is the gateway's DICOMweb base for this request: the origin the
// client called (trusted proxies' X-Forwarded-* included), then the path
// prefix that handle_path removed.
func (h *DICOMweb) publicBase(r *http.Request) string {
	if h.PublicBase != "" {
		return h.PublicBase
	}
	prefix := ""
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok {
		op, cp := orig.URL.EscapedPath(), r.URL.EscapedPath()
		if strings.HasSuffix(op, cp) {
			prefix = strings.TrimRight(op[:len(op)-len(cp)], "/")
		}
	}
	origin, proxyPrefix := requestOrigin(r)
	return origin + proxyPrefix + prefix
}

// shouldBuffer keeps successful DICOM JSON answers, the only ones whose URLs
// are rewritten.
func (h *DICOMweb) shouldBuffer(status int, hdr http.Header) bool {
	if status != http.StatusOK {
		return false
	}
	mt, _, err := mime.ParseMediaType(hdr.Get("Content-Type"))
	if err != nil || (mt != "application/dicom+json" && mt != "application/json") {
		return false
	}
	if ce := hdr.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return false
	}
	if cl := hdr.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err != nil || n > h.MaxJSONSize {
			return false
		}
	}
	return true
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*DICOMweb)(nil)
	_ caddy.Validator             = (*DICOMweb)(nil)
	_ caddyhttp.MiddlewareHandler = (*DICOMweb)(nil)
)
