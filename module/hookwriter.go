package module

import (
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

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
