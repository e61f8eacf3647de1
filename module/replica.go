package module

import (
	"context"
	"errors"
	"net/http"

	"go.uber.org/zap"
)

// This file is failover between replicas: archives that FHIR says hold the
// same series (several WADO-RS or WADO-URI Endpoints of one series, or of a
// study without series-level Endpoints). A GET or HEAD that the first
// cannot answer — it cannot be reached, or it answers with a 5xx status —
// goes to the next before anything has been sent to the client. The
// decision is made on the archive's status line: no body is buffered, and
// an answer that fails after its first byte is broken off as any other.
// A 4xx is an answer (404: the archive does not hold it), not a failure.

// replicas walks the archives of one request in order.
type replicas struct {
	app    *App
	r      *http.Request
	via    string
	order  []*Archive
	i      int
	usable func(*Archive) bool // nil: every archive may be tried
	next   *Archive            // the replica chosen after a failure
}

// newReplicas returns the walk over order (not empty) for r. usable, when
// not nil, is asked before a replica is tried (under authorize: does it
// hold the series within the allowed study).
func newReplicas(a *App, r *http.Request, via string, order []*Archive, usable func(*Archive) bool) *replicas {
	return &replicas{app: a, r: r, via: via, order: order, usable: usable}
}

// first returns the archive asked first.
func (t *replicas) first() *Archive {
	t.i = 1
	return t.order[0]
}

// following finds the next archive that may be tried, or nil.
func (t *replicas) following() *Archive {
	for t.i < len(t.order) {
		ar := t.order[t.i]
		t.i++
		if t.usable == nil || t.usable(ar) {
			return ar
		}
	}
	return nil
}

// canRetry reports whether a failure of the current archive may go to a
// next one, which it then chooses (t.next). Only GET and HEAD are retried,
// and not for a client that has gone.
func (t *replicas) canRetry() bool {
	if t.r.Method != http.MethodGet && t.r.Method != http.MethodHead || t.r.Context().Err() != nil {
		return false
	}
	t.next = t.following()
	return t.next != nil
}

// writer returns the writer an attempt proxies into, in front of dst.
func (t *replicas) writer(dst http.ResponseWriter) *failoverWriter {
	t.next = nil
	return &failoverWriter{next: dst, header: dst.Header().Clone(), retry: t.canRetry}
}

// again reports whether the attempt on ar, which wrote into fw and ended
// with status and err (ar.serve's), failed in a way that goes to t.next;
// if so, the failover is logged and counted.
func (t *replicas) again(ar *Archive, fw *failoverWriter, status int, err error) bool {
	switch {
	case fw.absorbed:
	case err != nil && !fw.committed && !errors.Is(err, context.Canceled) && fw.mayRetry():
	default:
		return false
	}
	t.app.failedOver(t.via, ar, t.next, status, err)
	return true
}

// failedOver logs and counts a failover: archive names only, never what
// was asked for.
func (a *App) failedOver(via string, from, to *Archive, status int, err error) {
	fields := []zap.Field{zap.String("handler", via), zap.String("from", from.name), zap.String("to", to.name), zap.Int("status", status)}
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	a.logger.Warn("archive could not answer; trying its replica", fields...)
	if a.metrics != nil {
		a.metrics.failovers.WithLabelValues(via, from.name, to.name).Inc()
	}
}

// failoverWriter stands between the proxy and the writer an answer goes to,
// holding back an archive's failure while a replica may still answer:
// headers are kept in a map of the attempt's own until the status is known;
// a 5xx that may be retried is absorbed with its body, anything else is
// committed (headers copied, status written) and passes through.
type failoverWriter struct {
	next      http.ResponseWriter
	header    http.Header
	retry     func() bool
	decided   bool // retry was asked
	canRetry  bool // and its answer
	absorbed  bool // a 5xx was held back: the replica answers instead
	committed bool
}

func (f *failoverWriter) Header() http.Header {
	if f.committed {
		return f.next.Header()
	}
	return f.header
}

// mayRetry asks retry once.
func (f *failoverWriter) mayRetry() bool {
	if !f.decided {
		f.decided, f.canRetry = true, f.retry()
	}
	return f.canRetry
}

func (f *failoverWriter) WriteHeader(status int) {
	switch {
	case f.committed:
		f.next.WriteHeader(status)
		return
	case f.absorbed || status < 200:
		// Informational answers of an attempt that may yet be dropped
		// are not passed on.
		return
	case status >= 500 && f.mayRetry():
		f.absorbed = true
		return
	}
	h := f.next.Header()
	for k := range h {
		delete(h, k)
	}
	for k, v := range f.header {
		h[k] = v
	}
	f.committed = true
	f.next.WriteHeader(status)
}

func (f *failoverWriter) Write(b []byte) (int, error) {
	if !f.committed && !f.absorbed {
		f.WriteHeader(http.StatusOK)
	}
	if f.absorbed {
		return len(b), nil
	}
	return f.next.Write(b)
}

// FlushError flushes what was committed; an attempt held back has nothing
// to flush.
func (f *failoverWriter) FlushError() error {
	if !f.committed {
		return nil
	}
	return http.NewResponseController(f.next).Flush()
}

// Unwrap lets http.ResponseController reach the writer below.
func (f *failoverWriter) Unwrap() http.ResponseWriter { return f.next }
