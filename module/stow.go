package module

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/tidwall/gjson"
	"go.uber.org/zap"

	"github.com/fhirimaging/caddy-fhir-imaging/module/dicom"
	"github.com/fhirimaging/caddy-fhir-imaging/module/registrar"
)

// STOW-RS through the gateway: the upload streams to the store archive;
// the archive's answer (small: a list of references) is held to point its
// RetrieveURLs at the gateway and, with register_imaging_study, while the
// stored studies are registered in FHIR.

// maxStoreAnswer bounds the STOW-RS answer held for registration; a larger
// one streams through and its studies are not registered (logged).
const maxStoreAnswer = 16 << 20

// maxRegisteredStudies bounds the studies registered for one request.
const maxRegisteredStudies = 100

// qidoPage is the page size of the archive searches that gather a study's
// facts; maxQIDOPages bounds them.
const (
	qidoPage     = 1000
	maxQIDOPages = 100
)

// store sends a STOW-RS request to the store archive, and answers with the
// archive's answer, its RetrieveURLs on the gateway; with
// register_imaging_study, it registers what was stored first.
func (h *DICOMweb) store(w http.ResponseWriter, r *http.Request, ar *Archive, req dicom.Request) error {
	path := ar.base.Path + req.Path()
	if ce := h.logger.Check(zap.DebugLevel, "routing DICOMweb request"); ce != nil {
		ce.Write(zap.String("archive", ar.name), zap.String("level", "store"))
	}
	reg := h.app.RegisterImagingStudy
	registering := reg != nil && reg.registrar != nil
	r.Header.Del("Accept-Encoding") // the answer is read; an encode handler in front compresses it
	buf := new(bytes.Buffer)
	// An answer that is not held (an error, chiefly) goes through an
	// answerWriter: an archive's error body in the gateway's words, a DICOM
	// one (a 409 with its FailedSOPSequence) as it is.
	aw := newAnswerWriter(w, ar, "dicomweb", dicom.Rules{})
	rec := &boundedRecorder{w: aw, buf: buf, limit: maxStoreAnswer}
	rec.ResponseRecorder = caddyhttp.NewResponseRecorder(aw, buf, func(status int, hdr http.Header) bool {
		if shouldBufferStore(status, hdr) {
			return true
		}
		if registering && (status == http.StatusOK || status == http.StatusAccepted) {
			// Stored, but the answer goes on as it is: the client is told too.
			hdr.Add("Warning", `299 fhir-imaging "stored, but not registered in FHIR: the archive's answer could not be read"`)
		}
		return false
	})
	status, err := ar.serve(rec, r, path, r.URL.RawQuery, "dicomweb")
	if err != nil {
		return ar.failed(w, status, err)
	}
	if !rec.captured() {
		if err := aw.finish(); err != nil {
			return err
		}
		if registering && (status == http.StatusOK || status == http.StatusAccepted) {
			h.app.metrics.registrations.WithLabelValues("failed").Inc()
			h.logger.Error("stored, but not registered in FHIR: the archive's STOW-RS answer could not be read (not DICOM JSON or XML, compressed, or over 16 MiB)",
				zap.String("archive", ar.name), zap.Int("status", status))
		}
		return nil
	}
	code, hdr, body := rec.Status(), w.Header(), buf.Bytes()
	if registering && (code == http.StatusOK || code == http.StatusAccepted) {
		if err := h.registerStored(r, ar, req, hdr.Get("Content-Type"), body); err != nil {
			h.app.metrics.registrations.WithLabelValues("failed").Inc()
			h.logger.Error("stored, but not registered in FHIR", zap.String("archive", ar.name), zap.Error(err))
			hdr.Add("Warning", `299 fhir-imaging "stored, but not registered in FHIR: `+warningText(err)+`"`)
			code = http.StatusAccepted
		}
	}
	if mt, _, _ := mime.ParseMediaType(hdr.Get("Content-Type")); mt == "application/dicom+json" || mt == "application/json" {
		if out, changed, err := h.rules(r).RewriteURLs(body); err == nil && changed {
			body = out
		}
	}
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	hdr.Del("ETag")
	w.WriteHeader(code)
	_, err = w.Write(body)
	return err
}

// shouldBufferStore holds a successful STOW-RS answer in DICOM JSON or XML
// that is not compressed.
func shouldBufferStore(status int, hdr http.Header) bool {
	if status != http.StatusOK && status != http.StatusAccepted {
		return false
	}
	if ce := hdr.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return false
	}
	mt, _, err := mime.ParseMediaType(hdr.Get("Content-Type"))
	if err != nil {
		return false
	}
	switch mt {
	case "application/dicom+json", "application/json", "application/dicom+xml", "application/xml", "text/xml":
	default:
		return false
	}
	if cl := hdr.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err != nil || n > maxStoreAnswer {
			return false
		}
	}
	return true
}

// warningText is what the Warning header says of a registration failure:
// the kind of failure, nothing of the data.
func warningText(err error) string {
	var fe *registrar.FHIRError
	switch {
	case errors.As(err, &fe) && fe.Status != 0:
		return fmt.Sprintf("the FHIR server answered %d to a %s", fe.Status, strings.ToLower(fe.What[:1])+fe.What[1:])
	case errors.As(err, &fe):
		return "the FHIR server could not be reached"
	case errors.Is(err, registrar.ErrConflict):
		return "the ImagingStudy kept changing under the update"
	case errors.Is(err, registrar.ErrAmbiguous):
		return "several ImagingStudies carry the study UID"
	case errors.Is(err, context.DeadlineExceeded):
		return "registration ran out of time"
	}
	return "the archive's answer or its study could not be read"
}

// registerStored registers the studies a STOW-RS answer says were stored. It
// runs to its end (or its timeout) even when the client goes away.
func (h *DICOMweb) registerStored(r *http.Request, ar *Archive, req dicom.Request, contentType string, body []byte) error {
	reg := h.app.RegisterImagingStudy
	ans, err := dicom.ParseStoreAnswer(contentType, body)
	if err != nil {
		return err
	}
	if len(ans.Stored) == 0 {
		return nil // nothing stored, nothing to register
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), time.Duration(reg.Timeout))
	defer cancel()
	qr := archiveRequest(ctx, r)
	studies := ans.Studies()
	if req.Level == dicom.LevelStudy && !contains(studies, req.Study) {
		studies = append(studies, req.Study)
	}
	// An instance the answer does not place in a study is looked up.
	if len(studies) == 0 || req.Level != dicom.LevelStudy {
		for _, in := range ans.Stored {
			if in.Study != "" {
				continue
			}
			uid, err := h.studyOf(qr, ar, in.SOPInstance)
			if err != nil {
				return err
			}
			if uid != "" && !contains(studies, uid) {
				studies = append(studies, uid)
			}
			if len(studies) > maxRegisteredStudies {
				break
			}
		}
	}
	if len(studies) > maxRegisteredStudies {
		return fmt.Errorf("the request stored instances of more than %d studies", maxRegisteredStudies)
	}
	for _, uid := range studies {
		facts, err := h.studyFacts(qr, ar, uid)
		if err != nil {
			return err
		}
		if len(facts.Series) == 0 {
			return errors.New("the archive's QIDO-RS search does not list the stored study")
		}
		t0 := time.Now()
		res, err := reg.registrar.Register(ctx, facts)
		if err != nil {
			return err
		}
		h.app.metrics.registrations.WithLabelValues(res.Action).Inc()
		if res.Body != nil {
			h.app.invalidate("ImagingStudy", res.ID, res.Body, "registration")
		}
		fields := []zap.Field{zap.String("archive", ar.name), zap.String("action", res.Action), zap.String("subject", res.Subject),
			zap.Int("attempts", res.Attempts), zap.Int("series", len(facts.Series)), zap.Int("instances", facts.Instances()), zap.Duration("took", time.Since(t0))}
		if h.app.TraceUIDs {
			fields = append(fields, zap.String("study_uid", uid), zap.String("imaging_study", res.ID))
		}
		h.logger.Info("ImagingStudy registered", fields...)
		if res.Action != "unchanged" && (res.Subject == "none" || res.Subject == "ambiguous") {
			h.logger.Warn("ImagingStudy registered without a subject: no single Patient has the study's PatientID as identifier", zap.String("subject", res.Subject))
		}
	}
	return nil
}

// archiveRequest is a GET for the gateway's own questions to the archive
// after a store: r's context values, ctx's deadline, no body, and of r's
// headers only Authorization (which the archive gets only with
// pass_authorization).
func archiveRequest(ctx context.Context, r *http.Request) *http.Request {
	qr := r.Clone(ctx)
	qr.Method = http.MethodGet
	qr.Body, qr.ContentLength, qr.TransferEncoding = http.NoBody, 0, nil
	qr.Header = http.Header{}
	if a := r.Header.Get("Authorization"); a != "" {
		qr.Header.Set("Authorization", a)
	}
	return qr
}

// studyOf asks the archive which study holds a SOP instance.
func (h *DICOMweb) studyOf(qr *http.Request, ar *Archive, sop string) (string, error) {
	q := url.Values{"SOPInstanceUID": {sop}, "includefield": {"0020000D"}}
	datasets, err := h.qido(qr, ar, ar.base.Path+"/instances", q)
	if err != nil {
		return "", err
	}
	for _, ds := range datasets {
		if uid := ds.Get("0020000D.Value.0").String(); dicom.ValidUID(uid) {
			return uid, nil
		}
	}
	return "", nil
}

// studyFacts gathers what the archive says about a study: an
// instance-level QIDO-RS search of it, page by page.
func (h *DICOMweb) studyFacts(qr *http.Request, ar *Archive, uid string) (*registrar.Study, error) {
	var all []gjson.Result
	seen := map[string]bool{}
	for page := 0; page < maxQIDOPages; page++ {
		q := url.Values{"includefield": {strings.Join(registrar.IncludeFields, ",")},
			"limit": {strconv.Itoa(qidoPage)}, "offset": {strconv.Itoa(page * qidoPage)}}
		datasets, err := h.qido(qr, ar, ar.base.Path+dicom.StudyPath(uid)+"/instances", q)
		if err != nil {
			return nil, err
		}
		fresh := 0
		for _, ds := range datasets {
			if sop := ds.Get("00080018.Value.0").String(); !seen[sop] {
				seen[sop] = true
				fresh++
				all = append(all, ds)
			}
		}
		if len(datasets) < qidoPage || fresh == 0 {
			break
		}
	}
	return registrar.FromDatasets(uid, all), nil
}

// qido runs one QIDO-RS search at the archive and returns its datasets.
func (h *DICOMweb) qido(qr *http.Request, ar *Archive, path string, q url.Values) ([]gjson.Result, error) {
	status, body, err := ar.fetch(qr, path, q.Encode(), "application/dicom+json", 64<<20)
	switch {
	case err != nil:
		return nil, fmt.Errorf("the archive's QIDO-RS search failed: %v", err)
	case status == http.StatusNoContent, status == http.StatusNotFound:
		return nil, nil
	case status != http.StatusOK:
		return nil, fmt.Errorf("the archive's QIDO-RS search answered %d", status)
	case !gjson.ValidBytes(body) || !gjson.ParseBytes(body).IsArray():
		return nil, errors.New("the archive's QIDO-RS answer is not a JSON array")
	}
	return gjson.ParseBytes(body).Array(), nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
