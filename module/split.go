package module

import (
	"io"
	"mime"
	"mime/multipart"
	"net/http"

	"go.uber.org/zap"

	"github.com/fhirimaging/caddy-fhir-imaging/module/dicom"
)

// serveSplitStudy answers a study-level request for a study whose series
// are spread over several archives by combining what each archive holds:
// the metadata and the series or instance lists as one JSON array, a
// retrieve as one multipart/related stream. It reports false for the
// study-level resources that cannot be combined (rendered, thumbnail),
// which then go to a single archive.
func (h *DICOMweb) serveSplitStudy(w http.ResponseWriter, r *http.Request, req dicom.Request, archives []*Archive) (bool, error) {
	h.logger.Debug("study spread over several archives: merging", zap.Int("archives", len(archives)), zap.String("sub", req.Sub))
	switch req.Sub {
	case "metadata":
		return true, h.mergeJSON(w, r, archives, req.Path(), "00080018", false, nil)
	case "series":
		return true, h.mergeJSON(w, r, archives, req.Path(), "0020000E", true, nil)
	case "instances":
		return true, h.mergeJSON(w, r, archives, req.Path(), "00080018", true, nil)
	case "":
		return true, h.mergeMultipart(w, r, req, archives)
	}
	return false, nil
}

// mergeMultipart streams the archives' multipart/related answers to a
// study retrieve, one after the other, as the parts of a single
// multipart/related answer with a boundary of its own. Nothing is
// buffered beyond what io.Copy holds. An archive that fails before
// anything was sent gives 502; one that fails midway aborts the response,
// so that the client sees a broken answer rather than a silently short
// one.
func (h *DICOMweb) mergeMultipart(w http.ResponseWriter, r *http.Request, req dicom.Request, archives []*Archive) error {
	out := multipart.NewWriter(w)
	urls := h.rules(r).URLRebaser()
	started := false
	for _, ar := range archives {
		ans, err := ar.roundTrip(r, r.Method, ar.base.Path+req.Path(), r.URL.RawQuery, "")
		if err != nil {
			if !started {
				return ar.failed(w, 0, err)
			}
			panic(http.ErrAbortHandler)
		}
		mt, params, perr := mime.ParseMediaType(ans.header.Get("Content-Type"))
		if ans.status != http.StatusOK || perr != nil || mt != "multipart/related" || params["boundary"] == "" {
			ans.close()
			if started {
				panic(http.ErrAbortHandler)
			}
			h.logger.Error("split study: an archive's part is not a multipart answer", zap.String("archive", ar.name), zap.Int("status", ans.status), zap.String("content_type", mt))
			writeError(w, http.StatusBadGateway, "archive "+ar.name+" did not answer its part of the study")
			return nil
		}
		theirs := params["boundary"]
		if !started {
			params["boundary"] = out.Boundary()
			w.Header().Set("Content-Type", mime.FormatMediaType("multipart/related", params))
			w.Header().Del("Content-Length")
			w.WriteHeader(http.StatusOK)
			if r.Method == http.MethodHead {
				ans.close()
				return nil
			}
			started = true
		}
		err = copyParts(out, multipart.NewReader(ans.body, theirs), urls)
		ans.close()
		if err != nil {
			h.logger.Error("merged retrieve broken off", zap.String("archive", ar.name), zap.Error(err))
			panic(http.ErrAbortHandler)
		}
	}
	return out.Close()
}

// copyParts writes every part of mr to out, bodies streamed, headers
// unchanged but for the URL headers, rebased by urls: a part names itself
// by the archive's address.
func copyParts(out *multipart.Writer, mr *multipart.Reader, urls *dicom.URLRebaser) error {
	for {
		part, err := mr.NextRawPart()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		for _, name := range []string{"Content-Location", "Location"} {
			if v := part.Header.Get(name); v != "" {
				if nv, ok := urls.Rebase([]byte(v)); ok {
					part.Header.Set(name, string(nv))
				}
			}
		}
		pw, err := out.CreatePart(part.Header)
		if err != nil {
			return err
		}
		if _, err := io.Copy(pw, part); err != nil {
			return err
		}
	}
}
