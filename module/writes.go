package module

import (
	"bytes"
	"io"
	"net/http"

	"github.com/fhirimaging/caddy-fhir-imaging/module/fhirjson"
)

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
