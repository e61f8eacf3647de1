package module

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"sync"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/fhirimaging/caddy-fhir-imaging/module/fhirjson"
	"github.com/fhirimaging/caddy-fhir-imaging/module/fhirxml"
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

// streamWriter passes an answer on, through a fhirjson.Stream or an
// fhirxml.Stream once one is set (when its header is written), or as it is
// otherwise. With a Stream, the header is held until the Stream writes its
// first byte (or ends), so that it can still be made to fit what the Stream
// writes.
type streamWriter struct {
	http.ResponseWriter
	stream  *fhirjson.Stream
	xml     *fhirxml.Stream
	inflate *inflater // set for a gzip answer: decompressed into stream or xml
	status  int       // the status held while the Stream decides
	wrote   bool      // the header went out
	out     *outBuffer
}

// outBuffers hold what a rewriting stream writes for the client until 64
// KiB are ready. net/http sends each Write of a chunked answer as two
// system calls (the chunk header with the first 4 KiB, then the rest), so
// the stream's writes of a part each (32 KiB, as reverse_proxy reads) cost
// twice the calls of a plain proxy's; gathered to 64 KiB, they cost what a
// plain proxy's do. A write larger than half of it (an entry rewritten
// whole) goes out as it is, not copied. A flush sends what is buffered:
// reverse_proxy flushes an answer of unknown length (a FHIR server's
// chunked one) as it comes, so that one is not held back.
var outBuffers = sync.Pool{New: func() any { return &outBuffer{buf: make([]byte, 0, 64<<10)} }}

// outBuffer gathers small writes to w; see outBuffers.
type outBuffer struct {
	buf []byte
	w   io.Writer
}

func (b *outBuffer) Write(p []byte) (int, error) {
	if len(b.buf)+len(p) <= cap(b.buf) {
		b.buf = append(b.buf, p...)
		return len(p), nil
	}
	if err := b.Flush(); err != nil {
		return 0, err
	}
	if len(p) > cap(b.buf)/2 {
		return b.w.Write(p)
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// Flush writes out what is gathered.
func (b *outBuffer) Flush() error {
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.w.Write(b.buf)
	b.buf = b.buf[:0]
	return err
}

func (s *streamWriter) WriteHeader(status int) {
	if (s.stream != nil || s.xml != nil) && status >= 200 {
		s.status = status
		return
	}
	s.ResponseWriter.WriteHeader(status)
}

func (s *streamWriter) Write(p []byte) (int, error) {
	switch {
	case s.inflate != nil:
		return s.inflate.Write(p)
	case s.stream != nil:
		return s.stream.Write(p)
	case s.xml != nil:
		return s.xml.Write(p)
	}
	return s.ResponseWriter.Write(p)
}

// writeHeader writes the held header, once.
func (s *streamWriter) writeHeader() {
	if !s.wrote {
		s.wrote = true
		s.ResponseWriter.WriteHeader(s.status)
	}
}

// client returns the writer the Stream writes to: the client's, through
// an output buffer (outBuffers) that flushOut empties.
func (s *streamWriter) client() io.Writer {
	if s.out == nil {
		s.out = outBuffers.Get().(*outBuffer)
		s.out.w = writerFunc(func(p []byte) (int, error) {
			s.writeHeader()
			return s.ResponseWriter.Write(p)
		})
	}
	return s.out
}

// flushOut writes out what the output buffer holds.
func (s *streamWriter) flushOut() error {
	if s.out == nil {
		return nil
	}
	return s.out.Flush()
}

// dropOut gives the output buffer back, with whatever it still holds: once
// the answer is written out, or broken off.
func (s *streamWriter) dropOut() {
	if s.out != nil {
		s.out.buf, s.out.w = s.out.buf[:0], nil
		outBuffers.Put(s.out)
		s.out = nil
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// ReadFrom hides the underlying ReaderFrom, so that a body copied in goes
// through Write.
func (s *streamWriter) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(struct{ io.Writer }{s}, r)
}

// FlushError flushes what went out to the client; while the header is held
// there is nothing to flush (a flush would send it).
func (s *streamWriter) FlushError() error {
	if (s.stream != nil || s.xml != nil) && !s.wrote {
		return nil
	}
	if err := s.flushOut(); err != nil {
		return err
	}
	return http.NewResponseController(s.ResponseWriter).Flush()
}

// Unwrap returns the client's ResponseWriter, for http.ResponseController.
func (s *streamWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// inflater decompresses a gzip body as it streams and hands what comes out
// to dst, without ever using dst concurrently with its caller: the
// decompressing goroutine runs only while Write waits for it, and is idle
// (waiting for the next part) whenever Write has returned.
type inflater struct {
	in    chan []byte // the next compressed part
	ack   chan error  // one answer per part: the goroutine is idle again
	done  chan error  // the end of the decompression
	close sync.Once
	err   error
}

func newInflater(dst io.Writer) *inflater {
	z := &inflater{in: make(chan []byte), ack: make(chan error), done: make(chan error, 1)}
	go z.run(dst)
	return z
}

// partReader gives the decompressor the parts, answering each part's
// Write once the decompressor asks for more.
type partReader struct {
	z       *inflater
	cur     []byte
	pending bool // a part was taken and not yet answered
}

func (r *partReader) Read(p []byte) (int, error) {
	if len(r.cur) == 0 {
		if r.pending {
			r.pending = false
			r.z.ack <- nil
		}
		part, ok := <-r.z.in
		if !ok {
			return 0, io.EOF
		}
		r.cur, r.pending = part, true
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

func (z *inflater) run(dst io.Writer) {
	r := &partReader{z: z}
	zr, err := gzip.NewReader(r)
	if err == nil {
		_, err = io.Copy(dst, zr)
	}
	if err == nil && (len(r.cur) > 0 || r.pending) {
		err = errors.New("data after the end of the gzip stream")
	}
	z.done <- err
	if r.pending {
		z.ack <- err
	}
	// What comes after an error or the end is refused.
	for range z.in {
		if err == nil {
			err = errors.New("data after the end of the gzip stream")
		}
		z.ack <- err
	}
}

// Write decompresses p, returning once everything that could be
// decompressed from it has been handed on.
func (z *inflater) Write(p []byte) (int, error) {
	select {
	case err := <-z.done:
		z.done <- err // keep it for Close
		if err == nil {
			err = errors.New("data after the end of the gzip stream")
		}
		return 0, err
	default:
	}
	z.in <- p
	if err := <-z.ack; err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close ends the body and waits for the decompressor; it returns its
// error, if any. It must be called, whatever happened before; calls after
// the first return the same.
func (z *inflater) Close() error {
	z.close.Do(func() {
		close(z.in)
		z.err = <-z.done
	})
	return z.err
}
