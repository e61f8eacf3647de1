package module

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"sync"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// The ResponseWriters the handlers wrap around an answer: to change its
// headers as they are written, to capture a body that may be rewritten
// (bounded), to keep a small answer in memory; and the buffers they share.

// memoryWriter is a ResponseWriter that keeps a bounded answer in memory.
type memoryWriter struct {
	header http.Header
	status int
	buf    bytes.Buffer
	limit  int64
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
		return 0, errTooLarge
	}
	return m.buf.Write(p)
}

var errTooLarge = errors.New("answer over the size limit")

// boundedRecorder wraps a Caddy ResponseRecorder so that a buffered body
// never grows past a limit: once it would, the status, the headers and what
// was buffered are written out and the rest of the body streams through
// unchanged. Caddy's recorder buffers without bound, which is fine when the
// length is known up front but not for a chunked upstream answer.
type boundedRecorder struct {
	caddyhttp.ResponseRecorder
	w        http.ResponseWriter
	buf      *bytes.Buffer
	limit    int
	overflow bool
}

func (b *boundedRecorder) Write(p []byte) (int, error) {
	if b.overflow {
		return b.w.Write(p)
	}
	n, err := b.ResponseRecorder.Write(p)
	if err == nil && b.ResponseRecorder.Buffered() && b.buf.Len() > b.limit {
		b.overflow = true
		b.w.WriteHeader(b.ResponseRecorder.Status())
		_, err = b.w.Write(b.buf.Bytes())
		b.buf.Reset()
	}
	return n, err
}

// hookWriter lets a handler change the headers of an answer at the moment
// they are written, whoever writes them (a proxy, a merge, an error), and
// whether the body then streams or not.
type hookWriter struct {
	*caddyhttp.ResponseWriterWrapper
	hook  func(http.Header)
	wrote bool
}

func newHookWriter(w http.ResponseWriter, hook func(http.Header)) *hookWriter {
	return &hookWriter{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, hook: hook}
}

// WriteHeader runs the hook before any header goes out; informational
// answers (1xx) get it too, the final one only once.
func (w *hookWriter) WriteHeader(status int) {
	if !w.wrote {
		w.hook(w.ResponseWriterWrapper.Header())
		if status >= 200 {
			w.wrote = true
		}
	}
	w.ResponseWriterWrapper.WriteHeader(status)
}

func (w *hookWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriterWrapper.Write(p)
}

func (w *hookWriter) ReadFrom(r io.Reader) (int64, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriterWrapper.ReadFrom(r)
}

// FlushError flushes the client connection once the response streams, and
// does nothing while it is being buffered.
func (b *boundedRecorder) FlushError() error {
	if b.overflow {
		return http.NewResponseController(b.w).Flush()
	}
	return http.NewResponseController(b.ResponseRecorder).Flush()
}

// Unwrap returns the recorder, for http.ResponseController.
func (b *boundedRecorder) Unwrap() http.ResponseWriter { return b.ResponseRecorder }

// captured reports whether the whole body is in the buffer.
func (b *boundedRecorder) captured() bool {
	return b.ResponseRecorder.Buffered() && !b.overflow
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}
