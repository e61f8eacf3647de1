package module

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/fhirimaging/caddy-fhir-imaging/module/dicom"
	"github.com/fhirimaging/caddy-fhir-imaging/module/resolve"
)

// writeError answers with status and a JSON body whose message says what
// went wrong: {"status": 404, "message": "..."}.
func writeError(w http.ResponseWriter, status int, msg string) {
	body, _ := json.Marshal(struct {
		Status  int    `json:"status"`
		Message string `json:"message"`
	}{status, msg})
	writeBody(w, status, "application/json", body)
}

// writeBody answers with status and one of the gateway's own error bodies,
// dropping the headers that described an upstream's answer.
func writeBody(w http.ResponseWriter, status int, contentType string, body []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-store")
	h.Del("Content-Length")
	h.Del("Content-Encoding")
	h.Del("ETag")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// answerError writes the answer for a refused or unroutable request and
// returns nil, or returns err itself when it is not one of the gateway's own
// errors (a *dicom.PathError or a *routeError). A failure of the gateway's
// own (5xx) is logged at error level, with its cause, in this one place.
func (a *App) answerError(w http.ResponseWriter, via string, err error) error {
	var pe *dicom.PathError
	if errors.As(err, &pe) {
		writeError(w, pe.StatusCode(), pe.Message)
		return nil
	}
	var re *routeError
	if errors.As(err, &re) {
		switch {
		case errors.Is(re.cause, resolve.ErrBusy):
			// Counted (fhir_lookups_total{result="refused"}), not logged
			// per request: a flood must not flood the log as well.
			w.Header().Set("Retry-After", "1")
		case re.status >= 500:
			a.logger.Error(re.msg, zap.String("handler", via), zap.Int("status", re.status), zap.Error(re.cause))
		}
		writeError(w, re.status, re.msg)
		return nil
	}
	return err
}

// routeError is a routing failure with the status to answer, the message
// for the client and, for the log, its cause.
type routeError struct {
	status int
	msg    string
	cause  error
}

func (e *routeError) Error() string { return e.msg }

// lookupStatus maps a failed look-up against the FHIR server to a status: 504
// when it ran out of time, 502 otherwise.
func lookupStatus(err error) int {
	var ue *resolve.UpstreamError
	if errors.As(err, &ue) && ue.Timeout {
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

// proxyStatus maps an error of an archive's reverse_proxy to a status.
func proxyStatus(err error) int {
	var he caddyhttp.HandlerError
	if errors.As(err, &he) && he.StatusCode != 0 {
		return he.StatusCode
	}
	return http.StatusBadGateway
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
