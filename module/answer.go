package module

import (
	"mime"
	"net/http"
	"strconv"

	"go.uber.org/zap"

	"github.com/fhirimaging/caddy-fhir-imaging/module/dicom"
)

// answerWriter stands between an archive's proxied answer and the client,
// so that nothing of the archive's own addresses or words reaches the
// client:
//   - an error answer (4xx, 5xx) is replaced by the gateway's own error,
//     with the same status: an archive's error body is its own text, with
//     its internal paths, labelled as it likes. A DICOM body is kept: a
//     STOW-RS failure (409 with a FailedSOPSequence) is the standard's
//     own answer;
//   - a multipart/related answer streams with each part's Content-Location
//     (Orthanc names every frame by its own URL) rebased to the gateway's
//     public base, by a dicom.PartRebaser that holds nothing but a part's
//     header block; its Content-Length is kept when the first part needs
//     no longer headers (the header waits for that part's headers).
//
// Everything else passes through untouched. finish must be called once the
// proxy is done.
type answerWriter struct {
	w      http.ResponseWriter
	ar     *Archive
	via    string
	rules  dicom.Rules
	parts  *dicom.PartRebaser
	status int
	drop   bool // the archive's error body, replaced
}

// newAnswerWriter wraps w for an answer of ar. rules rebase the parts'
// headers (none: parts pass unchanged).
func newAnswerWriter(w http.ResponseWriter, ar *Archive, via string, rules dicom.Rules) *answerWriter {
	return &answerWriter{w: w, ar: ar, via: via, rules: rules}
}

func (a *answerWriter) Header() http.Header { return a.w.Header() }

// Unwrap lets http.ResponseController reach the writer below (flushing).
func (a *answerWriter) Unwrap() http.ResponseWriter { return a.w }

func (a *answerWriter) WriteHeader(status int) {
	if status < 200 || a.status != 0 {
		a.w.WriteHeader(status)
		return
	}
	a.status = status
	switch {
	case status >= 400 && !dicomBody(a.w.Header()):
		a.drop = true
		msg := "archive " + a.ar.name + " answered " + strconv.Itoa(status) + " " + http.StatusText(status)
		if status == http.StatusNotFound {
			msg = "not found in archive " + a.ar.name
		}
		log := a.ar.logger.Warn
		if status >= 500 {
			log = a.ar.logger.Error
		}
		log("archive answered with an error", zap.String("handler", a.via), zap.Int("status", status))
		writeError(a.w, status, msg)
		return
	case status == http.StatusOK && !a.rules.Empty():
		if mt, params, err := mime.ParseMediaType(a.w.Header().Get("Content-Type")); err == nil && mt == "multipart/related" && params["boundary"] != "" {
			pr := dicom.NewPartRebaser(a.w, params["boundary"], a.rules.URLRebaser())
			a.parts = pr
			if a.w.Header().Get("Content-Length") == "" {
				a.w.Header().Del("ETag") // the archive's bytes, not these
				break
			}
			// A known length is worth keeping (a client reads a
			// chunked gigabyte a fifth slower): when the first part
			// needs no longer headers, the answer keeps it, and later
			// parts are rebased in the same bytes (dicom.KeepLength).
			// The header waits for that part.
			pr.KeepLength(func(changes bool) bool {
				hdr := a.w.Header()
				if changes {
					hdr.Del("Content-Length")
					hdr.Del("ETag")
				} else {
					weakenETag(hdr)
				}
				a.w.WriteHeader(status)
				return !changes
			})
			return
		}
	}
	a.w.WriteHeader(status)
}

func (a *answerWriter) Write(b []byte) (int, error) {
	if a.status == 0 {
		a.WriteHeader(http.StatusOK)
	}
	switch {
	case a.drop:
		return len(b), nil
	case a.parts != nil:
		return a.parts.Write(b)
	}
	return a.w.Write(b)
}

// finish writes what the part rebaser still holds.
func (a *answerWriter) finish() error {
	if a.parts != nil {
		return a.parts.Close()
	}
	return nil
}

// dicomBody reports whether an answer's body is DICOM JSON or XML, the
// standard's own structured answers.
func dicomBody(h http.Header) bool {
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	return mt == "application/dicom+json" || mt == "application/dicom+xml"
}
