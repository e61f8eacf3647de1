package module

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/tidwall/gjson"
	"go.uber.org/zap"

	"github.com/fhirimaging/caddy-fhir-imaging/module/access"
	"github.com/fhirimaging/caddy-fhir-imaging/module/fhirjson"
	"github.com/fhirimaging/caddy-fhir-imaging/module/fhirxml"
)

// The request side of fhir_rewrite: what happens to a FHIR request before
// the FHIR server sees it, top to bottom in the order request() does it.

// request does to a FHIR request what the gateway does before the FHIR
// server sees it, in this order: a browser's CORS preflight is answered and
// the answer made readable by the allowed origins (authorize's cors); the
// FHIR base's smart-configuration is answered; a patient-bound token's
// ImagingStudy search that does not name its patient is refused (403); a
// body written back loses the injected extensions, gets the upstream base
// and the stored Endpoint addresses back; and a write that may change
// routing is watched. It returns the writer for the answer and the watch,
// or answered = true (with the error to return) when it answered itself.
func (h *FHIRRewrite) request(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, b bases) (_ http.ResponseWriter, _ *writeWatch, answered bool, err error) {
	if az := h.app.Authorize; az != nil {
		if az.cors != nil {
			if az.cors.Preflight(w, r) {
				return w, nil, true, nil
			}
			w = newHookWriter(w, func(hdr http.Header) { az.cors.Decorate(hdr, r) })
		}
		switch rel := h.relativePath(r); {
		case rel == smartConfigurationPath && (r.Method == http.MethodGet || r.Method == http.MethodHead):
			return w, nil, true, h.serveSMARTConfiguration(w, r, next, b)
		case !h.guardSearch(w, r, rel, b):
			return w, nil, true, nil
		}
	}
	if err := h.writeBack(r, b); err != nil {
		writeOutcome(w, http.StatusServiceUnavailable, "transient", err.Error())
		return w, nil, true, nil
	}
	return w, watchWrite(r), false, nil
}

// smartConfigurationPath is the SMART discovery document, relative to the
// FHIR base.
const smartConfigurationPath = ".well-known/smart-configuration"

// relativePath returns the request's path relative to the upstream FHIR
// base, without a leading slash ("ImagingStudy", "Patient/p1/ImagingStudy",
// "" for the base itself).
func (h *FHIRRewrite) relativePath(r *http.Request) string {
	p := r.URL.Path
	if h.upPath != "" && (p == h.upPath || strings.HasPrefix(p, h.upPath+"/")) {
		p = p[len(h.upPath):]
	}
	return strings.Trim(p, "/")
}

// serveSMARTConfiguration answers <fhir base>/.well-known/smart-configuration:
// the FHIR server's own document with the SMART Imaging Access
// capabilities added, or, when it has none, one built from the
// authorization server's metadata.
func (h *FHIRRewrite) serveSMARTConfiguration(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, b bases) error {
	az := h.app.Authorize
	r.Header.Del("Accept-Encoding")
	up := &memoryWriter{header: http.Header{}, limit: 1 << 20}
	var doc []byte
	if err := next.ServeHTTP(up, r); err == nil && up.status == http.StatusOK && isFHIRJSON(up.header.Get("Content-Type")) && up.header.Get("Content-Encoding") == "" {
		if out, err := access.AddCapabilities(up.buf.Bytes()); err == nil {
			doc = out
			if b.toPublic != nil {
				if rebased, changed, err := b.toPublic.Apply(doc); err == nil && changed {
					doc = rebased
				}
			}
		}
	}
	if doc == nil {
		var err error
		if doc, err = az.smartConfiguration(r.Context()); err != nil {
			az.logger.Error("no SMART configuration: the FHIR server has none and the authorization server's metadata could not be had", zap.String("issuer", az.issuer), zap.Error(err))
			writeError(w, http.StatusServiceUnavailable, "the SMART configuration is unavailable: the authorization server's metadata could not be had")
			return nil
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(doc)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	_, err := w.Write(doc)
	return err
}

// guardSearch applies the SMART Imaging Access rule to an ImagingStudy
// search made with a patient-bound token: it must name the token's patient,
// else it gets 403 (not an empty Bundle). It reports whether the request
// may go on to the FHIR server; when not, it has been answered. Requests
// without a token, or with one the authorization server does not know,
// go on: the FHIR server answers them.
func (h *FHIRRewrite) guardSearch(w http.ResponseWriter, r *http.Request, rel string, b bases) bool {
	header := r.Header.Get("Authorization")
	if header == "" {
		return true
	}
	// Parameters the gateway cannot read, the FHIR server may read
	// otherwise (a Java server splits only on "&", not ";"): such a search
	// is classified by its path alone and cannot pin a patient.
	params, readable := searchParams(r)
	if !readable {
		params = url.Values{"_unreadable": {""}}
	}
	kind, pathPatient := access.ClassifySearch(rel, params)
	if kind == access.NotImagingSearch {
		return true
	}
	az := h.app.Authorize
	s, err := az.authorizer.Authenticate(r.Context(), header)
	var ae *access.AuthError
	switch {
	case errors.As(err, &ae):
		return true
	case err != nil:
		az.decided("fhir_rewrite", "unavailable")
		az.logger.Error("access could not be checked; request refused", zap.String("handler", "fhir_rewrite"), zap.Error(err))
		writeOutcome(w, http.StatusServiceUnavailable, "transient", "access could not be checked: the authorization server is unavailable")
		return false
	case !s.Token.PatientBound():
		return true
	}
	if kind == access.CompartmentSearch {
		params = cloneValues(params)
		params.Add("patient", pathPatient)
	}
	if readable && access.PinsPatient(params, s.Token.Patient, []string{b.public, b.upstream}) {
		return true
	}
	az.decided("fhir_rewrite", "forbidden")
	az.logger.Info("request refused: ImagingStudy search not limited to the token's patient", zap.String("handler", "fhir_rewrite"), zap.String("client_id", s.Token.ClientID))
	writeOutcome(w, http.StatusForbidden, "forbidden", "with this token, ImagingStudy searches must name the token's patient (patient=<id>)")
	return false
}

// searchParams returns the parameters of a search: the query, and for a
// POST with a form body, the body's too (the body is put back for the FHIR
// server). ok is false when either cannot be parsed.
func searchParams(r *http.Request) (url.Values, bool) {
	params, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, false
	}
	if r.Method != http.MethodPost || r.Body == nil || r.Body == http.NoBody {
		return params, true
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		return params, true
	}
	const maxForm = 1 << 20
	body, err := io.ReadAll(io.LimitReader(r.Body, maxForm+1))
	_ = r.Body.Close()
	setBody(r, body)
	if err != nil || len(body) > maxForm {
		return nil, false
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, false
	}
	for k, vs := range form {
		params[k] = append(params[k], vs...)
	}
	return params, true
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v)+1)
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// writeBack prepares a request that writes to the FHIR server: a JSON body
// (a resource, a Bundle, a JSON Patch or a FHIRPath Patch) up to
// MaxBodySize loses the extensions this gateway injects, has the public
// base swapped for the upstream one, and gets back the stored addresses of
// the Endpoints it was given the gateway's address in; everything else in
// it stays as it was. Larger, compressed or non-JSON bodies go on
// unchanged. An error means the request must not go on.
func (h *FHIRRewrite) writeBack(r *http.Request, b bases) error {
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
	default:
		return nil
	}
	var rules []fhirjson.Rebase
	if b.toPublic != nil {
		rules = []fhirjson.Rebase{{From: b.public, To: b.upstream}}
		if tr, err := fhirjson.NewTransformer(rules, nil, fhirjson.NotPatch); err == nil {
			for _, name := range []string{"Content-Location", "Link"} {
				if v := r.Header.Get(name); v != "" {
					if nv, ok := rebaseHeader(tr, name, v); ok {
						r.Header.Set(name, nv)
					}
				}
			}
		}
	}
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	if ce := strings.TrimSpace(r.Header.Get("Content-Encoding")); ce != "" && !strings.EqualFold(ce, "identity") {
		return nil
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	patch := fhirjson.NotPatch
	switch {
	case err != nil:
		return nil
	case mt == "application/json-patch+json":
		patch = fhirjson.JSONPatch
	case isFHIRXML(mt):
		h.writeBackXML(r, b)
		return nil
	case !isFHIRJSON(mt):
		return nil
	}
	if r.ContentLength > h.MaxBodySize {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, h.MaxBodySize+1))
	if err != nil || int64(len(body)) > h.MaxBodySize {
		// Too large (or cut short): what was read goes first, the rest follows.
		r.Body = readCloser{io.MultiReader(bytes.NewReader(body), r.Body), r.Body}
		return nil
	}
	_ = r.Body.Close()
	out := body
	tr, err := fhirjson.NewTransformer(rules, h.dropExt, patch)
	if err == nil {
		if o, changed, err := tr.Apply(body); err == nil && changed {
			out = o
			h.logger.Debug("write-back: request body cleaned", zap.Int("before", len(body)), zap.Int("after", len(out)))
		}
	}
	if h.readdressing() && patch == fhirjson.NotPatch {
		if out, err = h.restoreAddresses(r, out, b); err != nil {
			return err
		}
	}
	setBody(r, out)
	return nil
}

// writeBackXML swaps the public base for the upstream one in an XML body
// written back, as writeBack does in JSON (XML answers carry the public
// base too), up to MaxBodySize; a larger body goes on unchanged. No
// extension is injected into XML, so none is removed.
func (h *FHIRRewrite) writeBackXML(r *http.Request, b bases) {
	if b.toPublicXML == nil || r.ContentLength > h.MaxBodySize {
		return
	}
	rx, err := fhirxml.NewRebaser([]fhirxml.Rebase{{From: b.public, To: b.upstream}})
	if err != nil {
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, h.MaxBodySize+1))
	if err != nil || int64(len(body)) > h.MaxBodySize {
		r.Body = readCloser{io.MultiReader(bytes.NewReader(body), r.Body), r.Body}
		return
	}
	_ = r.Body.Close()
	if out, changed := rx.Apply(body); changed {
		h.logger.Debug("write-back: XML body rebased", zap.Int("before", len(body)), zap.Int("after", len(out)))
		body = out
	}
	setBody(r, body)
}

// restoreAddresses puts back the stored address of every Endpoint (standalone
// or contained) in a written body whose address is the gateway's own base,
// as it was given in an answer. The stored resource is read from the FHIR
// server with the client's own Authorization header. An Endpoint the FHIR
// server does not have (a create) keeps what the client wrote.
func (h *FHIRRewrite) restoreAddresses(r *http.Request, body []byte, b bases) ([]byte, error) {
	rsBase, uriBase := absolute(b.origin, h.DICOMwebBase), absolute(b.origin, h.WADOURIBase)
	if !bytes.Contains(body, []byte(`"Endpoint"`)) || !bytes.Contains(body, []byte(rsBase)) && !bytes.Contains(body, []byte(uriBase)) {
		return body, nil
	}
	doc, err := fhirjson.Scan(body, fhirjson.ScanOptions{})
	if err != nil {
		return body, nil
	}
	ours := map[string]bool{fhirjson.NormalizeBase(rsBase): true, fhirjson.NormalizeBase(uriBase): true}
	stored := map[string]*fhirjson.Document{} // "Type/id" → the stored resource
	var failed error
	restore := func(site *fhirjson.EndpointSite) (string, bool) {
		if failed != nil || !ours[fhirjson.NormalizeBase(site.Endpoint.Address)] {
			return "", false
		}
		addr, ok, err := h.storedAddress(r, site, stored)
		if err != nil {
			failed = err
		}
		return addr, ok
	}
	none := func(*fhirjson.Study, *fhirjson.Series) fhirjson.Bases { return fhirjson.Bases{} }
	out, changed, stats := doc.Rewrite(none, restore, h.ext)
	if failed != nil {
		return nil, failed
	}
	if changed {
		h.logger.Debug("write-back: stored Endpoint addresses put back", zap.Int("endpoints", stats.Endpoints))
		return out, nil
	}
	return body, nil
}

// errStoredAddress is returned when the stored address of an Endpoint that
// a client writes back could not be read.
var errStoredAddress = errors.New("the stored address of an Endpoint written back with the gateway's address could not be read")

// storedAddress returns the address the FHIR server has for the Endpoint
// at site: Endpoint/<id>, or the Endpoint of that id contained in the
// resource that contains it. ok is false when there is none to put back.
func (h *FHIRRewrite) storedAddress(r *http.Request, site *fhirjson.EndpointSite, stored map[string]*fhirjson.Document) (string, bool, error) {
	ref := "Endpoint/" + site.Endpoint.ID
	if site.Container != "" {
		ref = site.Container
	}
	rt, id, _ := strings.Cut(ref, "/")
	if !fhirjson.IsResourceType(rt) || !fhirjson.ValidID(id) || !fhirjson.ValidID(site.Endpoint.ID) {
		return "", false, nil
	}
	doc, seen := stored[ref]
	if !seen {
		var err error
		if doc, err = h.readStored(r, ref); err != nil {
			h.logger.Error("write-back refused: the stored Endpoint address could not be read", zap.String("resource_type", rt), zap.Error(err))
			return "", false, errStoredAddress
		}
		stored[ref] = doc
	}
	if doc == nil {
		return "", false, nil
	}
	for _, s := range doc.Endpoints {
		if s.Container == site.Container && s.Endpoint.ID == site.Endpoint.ID {
			return s.Address(), true, nil
		}
	}
	return "", false, nil
}

// readStored reads one resource from the upstream FHIR server with the
// client's Authorization header; nil when the server has none to show
// (404, 410) or will not show it to this client (401, 403: the write is then
// the FHIR server's to judge).
func (h *FHIRRewrite) readStored(r *http.Request, ref string) (*fhirjson.Document, error) {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, h.app.FHIR+"/"+ref, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/fhir+json")
	if a := r.Header.Get("Authorization"); a != "" {
		req.Header.Set("Authorization", a)
	}
	resp, err := h.reads.Do(req)
	if err != nil {
		return nil, errors.Unwrap(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, h.MaxBodySize))
	switch {
	case err != nil:
		return nil, err
	case resp.StatusCode == http.StatusNotFound, resp.StatusCode == http.StatusGone,
		resp.StatusCode == http.StatusUnauthorized, resp.StatusCode == http.StatusForbidden:
		return nil, nil
	case resp.StatusCode != http.StatusOK || !gjson.ValidBytes(body):
		return nil, fmt.Errorf("the read answered %d", resp.StatusCode)
	}
	return fhirjson.Scan(body, fhirjson.ScanOptions{})
}

type readCloser struct {
	io.Reader
	io.Closer
}

// setBody replaces a request's body with b and makes the length headers
// agree with it.
func setBody(r *http.Request, b []byte) {
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	r.ContentLength = int64(len(b))
	r.TransferEncoding = nil
	r.Header.Del("Transfer-Encoding")
	r.Header.Set("Content-Length", strconv.Itoa(len(b)))
}

// maxCapturedWrite bounds how much of a write's request body is kept to see
// which studies it touches; a larger body drops every study route instead.
const maxCapturedWrite = 1 << 20

// writeWatch notes a FHIR write on its way through fhir_rewrite so that,
// once the FHIR server has accepted it, the cache entries it may have made
// wrong are dropped. The request body streams to the server as before; at
// most maxCapturedWrite bytes of it are copied aside.
type writeWatch struct {
	resourceType, id string
	body             *bytes.Buffer
	truncated        bool
}

// watchWrite returns a watch for a request that may change ImagingStudy or
// Endpoint resources (a write to one of them, or a Bundle posted to the
// base), or nil.
func watchWrite(r *http.Request) *writeWatch {
	switch r.Method {
	case http.MethodPut, http.MethodPost, http.MethodPatch, http.MethodDelete:
	default:
		return nil
	}
	_, rt, id := fhirjson.SplitReference(r.URL.Path)
	switch rt {
	case "ImagingStudy", "Endpoint", "":
	default:
		return nil
	}
	if rt == "" && r.Method != http.MethodPost {
		return nil
	}
	w := &writeWatch{resourceType: rt, id: id, body: new(bytes.Buffer)}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &teeBody{ReadCloser: r.Body, w: w}
	}
	return w
}

// teeBody copies what is read from a request body into the watch, up to
// its bound.
type teeBody struct {
	io.ReadCloser
	w *writeWatch
}

func (t *teeBody) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	if n > 0 && !t.w.truncated {
		if t.w.body.Len()+n > maxCapturedWrite {
			t.w.truncated = true
			t.w.body.Reset()
		} else {
			t.w.body.Write(p[:n])
		}
	}
	return n, err
}
