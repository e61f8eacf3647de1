package module

import (
	"bytes"
	"context"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/tidwall/gjson"
	"go.uber.org/zap"

	"github.com/fhirimaging/caddy-fhir-imaging/module/dicom"
)

// uidTags names, per QIDO-RS search resource, the attribute that identifies
// a result, used to drop the copies that several archives return.
var uidTags = map[string]string{
	"studies":   "0020000D",
	"series":    "0020000E",
	"instances": "00080018",
}

// fanOut answers a QIDO-RS search with no UID in the path by asking every
// archive at once and merging their JSON arrays: results are de-duplicated
// by UID in archive order, and limit/offset apply to the merged list. An
// archive that fails is left out and named in a Warning header; when all
// fail the answer is 502.
func (h *DICOMweb) fanOut(w http.ResponseWriter, r *http.Request, req dicom.Request) error {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, "malformed query string: "+err.Error())
		return nil
	}
	limit, offset := -1, 0
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 0 {
			writeError(w, http.StatusBadRequest, "limit must be a non-negative integer")
			return nil
		}
	}
	if v := q.Get("offset"); v != "" {
		if offset, err = strconv.Atoi(v); err != nil || offset < 0 {
			writeError(w, http.StatusBadRequest, "offset must be a non-negative integer")
			return nil
		}
	}
	// Each archive must return everything up to offset+limit, since the
	// window applies to the merged list.
	q.Del("offset")
	if limit >= 0 {
		q.Set("limit", strconv.Itoa(offset+limit))
	}
	query := q.Encode()

	type answer struct {
		body []byte
		err  string
	}
	answers := make([]answer, len(h.app.names))
	var wg sync.WaitGroup
	for i, name := range h.app.names {
		ar := h.app.Archives[name]
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, body, err := ar.fetch(r, ar.base.Path+req.Path(), query)
			switch {
			case err != nil:
				answers[i].err = err.Error()
			case status == http.StatusNoContent:
			case status != http.StatusOK:
				answers[i].err = "answered " + strconv.Itoa(status)
			default:
				answers[i].body = body
			}
		}()
	}
	wg.Wait()

	key := uidTags[req.Sub]
	seen := map[string]bool{}
	var merged [][]byte
	failed := 0
	for i, a := range answers {
		if a.err != "" {
			failed++
			w.Header().Add("Warning", `299 fhir-imaging "archive `+h.app.names[i]+` left out: `+strings.ReplaceAll(a.err, `"`, `'`)+`"`)
			h.logger.Warn("QIDO-RS fan-out: archive left out", zap.String("archive", h.app.names[i]), zap.String("error", a.err))
			continue
		}
		if len(a.body) == 0 {
			continue
		}
		arr := gjson.ParseBytes(a.body)
		if !arr.IsArray() {
			failed++
			w.Header().Add("Warning", `299 fhir-imaging "archive `+h.app.names[i]+` left out: answer is not a JSON array"`)
			continue
		}
		arr.ForEach(func(_, ds gjson.Result) bool {
			uid := ds.Get(key + ".Value.0").String()
			if uid != "" {
				if seen[uid] {
					return true
				}
				seen[uid] = true
			}
			merged = append(merged, []byte(ds.Raw))
			return true
		})
	}
	if failed == len(answers) {
		writeError(w, http.StatusBadGateway, "no archive answered the search")
		return nil
	}
	if offset > len(merged) {
		offset = len(merged)
	}
	merged = merged[offset:]
	if limit >= 0 && limit < len(merged) {
		merged = merged[:limit]
	}
	body := append(append([]byte{'['}, bytes.Join(merged, []byte{','})...), ']')
	if out, changed, err := dicom.RewriteURLs(body, h.rules(r)); err == nil && changed {
		body = out
	}
	w.Header().Set("Content-Type", "application/dicom+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, err = w.Write(body)
	}
	return err
}

// fetch sends a GET for path and query to the archive through its proxy and
// returns the whole answer. It is for small JSON answers that the gateway
// combines; it runs with its own replacer and variables so that several
// fetches of one client request may run at once.
func (ar *Archive) fetch(r *http.Request, path, query string) (int, []byte, error) {
	// reverse_proxy writes to the request's variables and replacer, so a
	// concurrent fetch needs copies of both. NewTestReplacer, despite its
	// name, is Caddy's exported way to build a replacer with the request
	// placeholders ({http.request.*}) filled in.
	vars, _ := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any)
	rr := r.Clone(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, maps.Clone(vars)))
	caddyhttp.NewTestReplacer(rr)
	rr.Method = http.MethodGet
	rr.Body = http.NoBody
	rr.ContentLength = 0
	rr.Header.Del("Accept-Encoding")
	rr.Header.Del("Content-Length")
	sink := &memoryWriter{header: http.Header{}}
	var buf bytes.Buffer
	rec := caddyhttp.NewResponseRecorder(sink, &buf, func(int, http.Header) bool { return true })
	if err := ar.serve(rec, rr, path, query); err != nil {
		return 0, nil, err
	}
	return rec.Status(), buf.Bytes(), nil
}

// memoryWriter is a ResponseWriter that only keeps headers, beneath a
// recorder that keeps the body.
type memoryWriter struct {
	header http.Header
	status int
}

func (m *memoryWriter) Header() http.Header         { return m.header }
func (m *memoryWriter) WriteHeader(status int)      { m.status = status }
func (m *memoryWriter) Write(p []byte) (int, error) { return len(p), nil }
