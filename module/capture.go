package module

import (
	"bytes"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

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
