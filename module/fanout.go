package module

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
// archive at once and merging the answers.
func (h *DICOMweb) fanOut(w http.ResponseWriter, r *http.Request, req dicom.Request) error {
	return h.mergeJSON(w, r, h.archives(h.app.names), req.Path(), uidTags[req.Sub], true)
}

// mergeJSON asks the given archives at once for path (with the request's
// query) and answers with their JSON arrays merged: datasets are
// de-duplicated by the attribute key (when they carry it) in archive order,
// and, with window, limit/offset apply to the merged list rather than to
// each archive. An archive that fails is left out and named in a Warning
// header; when all fail the answer is 502.
func (h *DICOMweb) mergeJSON(w http.ResponseWriter, r *http.Request, archives []*Archive, path, key string, window bool) error {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, "malformed query string: "+err.Error())
		return nil
	}
	limit, offset := -1, 0
	if window {
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
		// Each archive must return everything up to offset+limit, since
		// the window applies to the merged list.
		q.Del("offset")
		if limit >= 0 {
			q.Set("limit", strconv.Itoa(offset+limit))
		}
	}
	query := q.Encode()

	type answer struct {
		body []byte
		err  string
	}
	answers := make([]answer, len(archives))
	var wg sync.WaitGroup
	for i, ar := range archives {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, body, err := ar.fetch(r, ar.base.Path+path, query, h.MaxJSONSize)
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

	seen := map[string]bool{}
	var merged [][]byte
	failed := 0
	leaveOut := func(ar *Archive, why string) {
		failed++
		h.app.metrics.mergeLeftOut.WithLabelValues(ar.name).Inc()
		w.Header().Add("Warning", `299 fhir-imaging "archive `+ar.name+` left out: `+strings.ReplaceAll(why, `"`, `'`)+`"`)
		h.logger.Warn("merged DICOMweb answer: archive left out", zap.String("archive", ar.name), zap.String("error", why))
	}
	for i, a := range answers {
		if a.err != "" {
			leaveOut(archives[i], a.err)
			continue
		}
		if len(a.body) == 0 {
			continue
		}
		arr := gjson.ParseBytes(a.body)
		if !arr.IsArray() {
			leaveOut(archives[i], "answer is not a JSON array")
			continue
		}
		arr.ForEach(func(_, ds gjson.Result) bool {
			if key != "" {
				if uid := ds.Get(key + ".Value.0").String(); uid != "" {
					if seen[uid] {
						return true
					}
					seen[uid] = true
				}
			}
			merged = append(merged, []byte(ds.Raw))
			return true
		})
	}
	if failed == len(answers) {
		writeError(w, http.StatusBadGateway, "no archive answered")
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
// returns the whole answer, which must not exceed limit bytes. It is for the
// JSON answers that the gateway combines; it runs with its own replacer and
// variables so that several fetches of one client request may run at once.
func (ar *Archive) fetch(r *http.Request, path, query string, limit int64) (int, []byte, error) {
	rr := subrequest(r)
	rr.Method = http.MethodGet
	rr.Body = http.NoBody
	rr.ContentLength = 0
	rr.Header.Del("Accept-Encoding")
	rr.Header.Del("Content-Length")
	sink := &memoryWriter{header: http.Header{}, limit: limit}
	if _, err := ar.serve(sink, rr, path, query, "dicomweb"); err != nil {
		return 0, nil, err
	}
	if sink.tooLarge {
		return 0, nil, fmt.Errorf("answer larger than %d bytes", limit)
	}
	if sink.status == 0 {
		sink.status = http.StatusOK
	}
	return sink.status, sink.buf.Bytes(), nil
}

// subrequest returns a copy of r with its own copies of the request's
// variables and replacer: reverse_proxy writes to both, so requests to
// archives made for one client request must not share them.
// NewTestReplacer, despite its name, is Caddy's exported way to build a
// replacer with the request placeholders ({http.request.*}) filled in.
func subrequest(r *http.Request) *http.Request {
	vars, _ := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any)
	rr := r.Clone(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, maps.Clone(vars)))
	caddyhttp.NewTestReplacer(rr)
	return rr
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
