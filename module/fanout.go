package module

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

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
// archive at once and merging the answers. keep, when not nil, filters the
// merged datasets before the limit/offset window applies (access control).
func (h *DICOMweb) fanOut(w http.ResponseWriter, r *http.Request, req dicom.Request, keep keepFunc) error {
	return h.mergeJSON(w, r, h.archives(h.app.names), req.Path(), uidTags[req.Sub], true, keep)
}

// keepFunc filters merged DICOM JSON datasets.
type keepFunc func([]gjson.Result) ([]gjson.Result, error)

// maxWindow is the largest limit asked of an archive.
const maxWindow = 1 << 30

// window is the limit/offset of a QIDO-RS search, applied to a merged list.
type window struct {
	limit, offset int // limit -1: none
}

// mergeJSON asks the given archives at once for path (with the request's
// query) and answers with their JSON arrays merged: datasets are
// de-duplicated by the attribute key (when they carry it) in archive order,
// kept or dropped by keep (when not nil), and, with windowed, limit/offset
// apply to the merged list rather than to each archive. An archive that
// fails is left out and named in a Warning header; when all fail the
// answer is 502.
func (h *DICOMweb) mergeJSON(w http.ResponseWriter, r *http.Request, archives []*Archive, path, key string, windowed bool, keep keepFunc) error {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, "malformed query string: "+err.Error())
		return nil
	}
	win, query := window{limit: -1}, r.URL.RawQuery
	if windowed {
		if win, err = takeWindow(q); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return nil
		}
		query = win.forArchives(query, keep != nil)
	}
	answers := askAll(r, archives, path, query, h.MaxJSONSize)
	datasets, spread, failed := h.combine(w, archives, answers, key)
	if failed == len(archives) {
		writeError(w, http.StatusBadGateway, "no archive answered")
		return nil
	}
	if keep != nil {
		if datasets, err = keep(datasets); err != nil {
			h.app.Authorize.unavailable(w, "dicomweb", err)
			return nil
		}
	}
	datasets = win.apply(datasets)
	if key == uidTags["studies"] && len(spread) > 0 {
		h.countSpreadStudies(r, datasets, spread)
	}
	body := make([]byte, 0, 2+len(datasets)*512)
	body = append(body, '[')
	for i, ds := range datasets {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, ds.Raw...)
	}
	body = append(body, ']')
	if out, changed, err := h.rules(r).RewriteURLs(body); err == nil && changed {
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

// takeWindow reads limit and offset from q.
func takeWindow(q url.Values) (window, error) {
	win := window{limit: -1}
	var err error
	if v := q.Get("limit"); v != "" {
		if win.limit, err = strconv.Atoi(v); err != nil || win.limit < 0 {
			return win, errors.New("limit must be a non-negative integer")
		}
	}
	if v := q.Get("offset"); v != "" {
		if win.offset, err = strconv.Atoi(v); err != nil || win.offset < 0 {
			return win, errors.New("offset must be a non-negative integer")
		}
	}
	return win, nil
}

// forArchives returns the raw query to send each archive: each must return
// everything up to offset+limit, since the window applies to the merged
// list; with all, everything, since the merged list is filtered before the
// window applies. Every other parameter goes on exactly as the client
// encoded it: an archive may read "includefield=a,b" and not
// "includefield=a%2Cb".
func (win window) forArchives(raw string, all bool) string {
	var kept []string
	for _, pair := range strings.Split(raw, "&") {
		key, _, _ := strings.Cut(pair, "=")
		if k, err := url.QueryUnescape(key); err == nil {
			key = k // %6Fffset is offset too, as takeWindow read it
		}
		if pair == "" || key == "limit" || key == "offset" {
			continue
		}
		kept = append(kept, pair)
	}
	// A window beyond any archive's answer (or one whose end overflows) asks
	// for everything.
	if end := win.offset + win.limit; !all && win.limit >= 0 && end >= win.offset && end <= maxWindow {
		kept = append(kept, "limit="+strconv.Itoa(end))
	}
	return strings.Join(kept, "&")
}

func (win window) apply(ds []gjson.Result) []gjson.Result {
	ds = ds[min(win.offset, len(ds)):]
	if win.limit >= 0 && win.limit < len(ds) {
		ds = ds[:win.limit]
	}
	return ds
}

// archiveAnswer is one archive's answer to a merged request: its body, or
// why it is left out.
type archiveAnswer struct {
	body []byte
	err  string
}

// askAll sends the same GET to every archive at once.
func askAll(r *http.Request, archives []*Archive, path, query string, limit int64) []archiveAnswer {
	answers := make([]archiveAnswer, len(archives))
	var wg sync.WaitGroup
	for i, ar := range archives {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, body, err := ar.fetch(r, ar.base.Path+path, query, "", limit)
			switch {
			case err != nil:
				ar.logger.Error("archive could not be reached for a merged answer", zap.Error(err))
				answers[i].err = "could not be reached"
			case status == http.StatusNoContent:
			case status != http.StatusOK:
				answers[i].err = "answered " + strconv.Itoa(status)
			default:
				answers[i].body = body
			}
		}()
	}
	wg.Wait()
	return answers
}

// combine concatenates the archives' JSON arrays, dropping the datasets
// whose key attribute was already seen, and returns how many archives were
// left out (named in a Warning header and the log). The datasets of a
// study search that more than one archive answered for are returned by
// UID in spread, to have their study-level counts combined.
func (h *DICOMweb) combine(w http.ResponseWriter, archives []*Archive, answers []archiveAnswer, key string) (merged []gjson.Result, spread map[string]*spreadStudy, failed int) {
	type firstCopy struct{ archive, index int }
	seen := map[string]firstCopy{}
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
					if first, ok := seen[uid]; ok {
						if key == uidTags["studies"] {
							st := spread[uid]
							if st == nil {
								if spread == nil {
									spread = map[string]*spreadStudy{}
								}
								st = &spreadStudy{archives: []*Archive{archives[first.archive]}, copies: []gjson.Result{merged[first.index]}}
								spread[uid] = st
							}
							st.archives = append(st.archives, archives[i])
							st.copies = append(st.copies, ds)
						}
						return true
					}
					seen[uid] = firstCopy{archive: i, index: len(merged)}
				}
			}
			merged = append(merged, ds)
			return true
		})
	}
	return merged, spread, failed
}
