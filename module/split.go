package module

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"sort"

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
	var rnd [16]byte
	_, _ = rand.Read(rnd[:])
	boundary := "fhir-imaging-" + hex.EncodeToString(rnd[:])
	started := false
	for _, ar := range archives {
		ans, err := ar.open(r, ar.base.Path+req.Path(), r.URL.RawQuery)
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
			if ans.status == http.StatusOK {
				writeError(w, http.StatusBadGateway, "archive "+ar.name+" did not answer multipart/related")
			} else {
				writeError(w, http.StatusBadGateway, fmt.Sprintf("archive %s answered %d for its part of the study", ar.name, ans.status))
			}
			return nil
		}
		if !started && r.Method == http.MethodHead {
			ans.close()
			w.Header().Set("Content-Type", mime.FormatMediaType("multipart/related", withBoundary(params, boundary)))
			w.Header().Del("Content-Length")
			w.WriteHeader(http.StatusOK)
			return nil
		}
		if !started {
			w.Header().Set("Content-Type", mime.FormatMediaType("multipart/related", withBoundary(params, boundary)))
			w.Header().Del("Content-Length")
			w.WriteHeader(http.StatusOK)
			started = true
		}
		err = copyParts(w, multipart.NewReader(ans.body, params["boundary"]), boundary)
		ans.close()
		if err != nil {
			h.logger.Warn("merged retrieve broken off", zap.String("archive", ar.name), zap.Error(err))
			panic(http.ErrAbortHandler)
		}
	}
	_, err := io.WriteString(w, "--"+boundary+"--\r\n")
	return err
}

// withBoundary returns the media type parameters with another boundary.
func withBoundary(params map[string]string, boundary string) map[string]string {
	out := map[string]string{"boundary": boundary}
	for k, v := range params {
		if k != "boundary" {
			out[k] = v
		}
	}
	return out
}

// copyParts writes every part of mr to w under the given boundary, headers
// unchanged and bodies streamed.
func copyParts(w io.Writer, mr *multipart.Reader, boundary string) error {
	for {
		part, err := mr.NextRawPart()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := io.WriteString(w, "--"+boundary+"\r\n"+formatHeader(part.Header)+"\r\n"); err != nil {
			return err
		}
		if _, err := io.Copy(w, part); err != nil {
			return err
		}
		if _, err := io.WriteString(w, "\r\n"); err != nil {
			return err
		}
	}
}

func formatHeader(h textproto.MIMEHeader) string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := ""
	for _, k := range keys {
		for _, v := range h[k] {
			s += k + ": " + v + "\r\n"
		}
	}
	return s
}

// answer is an archive's answer whose body is read as it arrives.
type answer struct {
	status int
	header http.Header
	body   io.Reader
	close  func()
}

// open sends r's method (GET or HEAD) for path and query to the archive
// through its proxy and returns as soon as the status and headers are
// known; the body is then read from a pipe that the proxy fills.
func (ar *Archive) open(r *http.Request, path, query string) (*answer, error) {
	rr := subrequest(r)
	pr, pw := io.Pipe()
	pw2 := &pipeWriter{header: http.Header{}, pw: pw, ready: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := ar.serve(pw2, rr, path, query, "dicomweb")
		pw2.signal()
		_ = pw.CloseWithError(err)
		done <- err
	}()
	<-pw2.ready
	if pw2.status == 0 {
		// Nothing was written: the proxy failed before the archive answered.
		err := <-done
		if err == nil {
			err = fmt.Errorf("no answer")
		}
		return nil, err
	}
	return &answer{
		status: pw2.status,
		header: pw2.header,
		body:   pr,
		close: func() {
			_ = pr.CloseWithError(io.ErrClosedPipe)
			<-done
		},
	}, nil
}

// pipeWriter is a ResponseWriter that hands the body to a pipe and signals
// once the status is known.
type pipeWriter struct {
	header   http.Header
	status   int
	pw       *io.PipeWriter
	ready    chan struct{}
	signaled bool
}

func (p *pipeWriter) signal() {
	if !p.signaled {
		p.signaled = true
		close(p.ready)
	}
}

func (p *pipeWriter) Header() http.Header { return p.header }

func (p *pipeWriter) WriteHeader(status int) {
	if p.status == 0 && status >= 200 {
		p.status = status
		p.signal()
	}
}

func (p *pipeWriter) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	return p.pw.Write(b)
}

// FlushError lets reverse_proxy flush; the pipe has nothing to flush.
func (p *pipeWriter) FlushError() error { return nil }
