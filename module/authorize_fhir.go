package module

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/fhirimaging/caddy-fhir-imaging/module/access"
)

// This file holds what authorize changes on FHIR routes (fhir_rewrite): the
// SMART Imaging Access rule for ImagingStudy searches and the FHIR base's
// .well-known/smart-configuration. Everything else the FHIR server decides,
// with the token the client sent it.

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
	params, ok := searchParams(r)
	if !ok {
		return true // a malformed query: the FHIR server says what is wrong
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
	if access.PinsPatient(params, s.Token.Patient, []string{b.public, b.upstream}) {
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

// writeOutcome answers a FHIR request with status and an OperationOutcome
// whose single issue has the given code and message.
func writeOutcome(w http.ResponseWriter, status int, code, msg string) {
	body, _ := json.Marshal(map[string]any{
		"resourceType": "OperationOutcome",
		"issue":        []map[string]string{{"severity": "error", "code": code, "diagnostics": msg}},
	})
	writeBody(w, status, "application/fhir+json", body)
}

// memoryWriter is a ResponseWriter that keeps a bounded answer in memory.
type memoryWriter struct {
	header   http.Header
	status   int
	buf      bytes.Buffer
	limit    int64
	tooLarge bool
}

func (m *memoryWriter) Header() http.Header { return m.header }

func (m *memoryWriter) WriteHeader(status int) {
	if m.status == 0 && status >= 200 {
		m.status = status
	}
}

func (m *memoryWriter) Write(p []byte) (int, error) {
	m.WriteHeader(http.StatusOK)
	if int64(m.buf.Len()+len(p)) > m.limit {
		m.tooLarge = true
		return 0, errTooLarge
	}
	return m.buf.Write(p)
}

var errTooLarge = errors.New("answer over the size limit")
