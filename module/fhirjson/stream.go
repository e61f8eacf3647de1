package fhirjson

import (
	"bytes"
	"io"
	"maps"
	"slices"
	"sync"

	"github.com/fhirimaging/caddy-fhir-imaging/module/internal/jsontext"
)

// A Stream rewrites a FHIR JSON body as it arrives, writing out what is
// done while the rest is still on its way, the way nginx's sub_filter
// does, instead of waiting for the whole body.
//
// It reads a Bundle entry by entry (and any other object in it, such as a
// link, the same way). The Bundle's own string members get their base
// swapped as they come. An entry that names no
// ImagingStudy and no Endpoint gets its base swapped and goes out; one
// that does is read like a whole body (Scan), its references resolved
// from itself, the Endpoints of the entries before it, and the look-ups
// the caller already holds (StreamOptions.Cached), and goes out
// rewritten. Only an entry that needs a look-up waits: from it on the
// answer is held until its end, when the Endpoints included after it are
// known and the remaining ones are looked up once (StreamOptions.Lookup).
// Anything but a Bundle (a single resource, an OperationOutcome) is held
// and rewritten whole at the end.
//
// The output is what Scan and AppendRewrite give for the whole body, with
// one difference: an entry written out before a later entry of the same
// Bundle included its Endpoint resolves that reference from the look-ups
// already held instead (the same Endpoint, unless it changed within the
// cache's lifetime).
//
// A body that turns out not to be JSON is passed on as it comes from
// there on (what went out before stays as it went out); more than
// StreamOptions.MaxHold bytes held are written out with the look-ups held
// so far, and streaming goes on; a single entry larger than that is passed
// on as it comes, with the rest of the body.
type Stream struct {
	w    io.Writer
	opts StreamOptions

	buf  []byte // the body from offset base on: what is not written out yet
	base int    // body offset of buf[0]
	pos  int    // body offset of the next byte to read
	out  int    // body offset up to which the output is written or held

	stack     []byte // the containers open around pos: the Bundle, arrays in it
	expectKey bool   // the next string is an object key
	key       []byte // the last key of the Bundle's own members, as written
	typeSeen  bool   // the Bundle's type was read
	searchset bool   // it is "searchset"
	state     streamState
	edits     []edit // base swaps between out and pos, outside entries

	// An entry being read: where it starts and how far it is read.
	entryStart int
	entryDepth int
	entryStr   bool // in a string, which opened at entryQuote
	entryQuote int
	lastEntry  int // the length of the last entry read

	held     []segment
	heldSize int
	waited   bool // something was held
	started  bool // Start was called
	pooled   *[]byte
	studies  int
	known    *Index
	scratch  Document
	dst      []byte
	stats    Stats
	err      error
}

type streamState uint8

const (
	stRoot     streamState = iota // before the body's first byte
	stFirstKey                    // the root object opened: its first key tells whether it is a Bundle
	stRootType                    // the key was resourceType: its value tells
	stBundle                      // a Bundle, read as it comes
	stEntry                       // inside an entry of it
	stEnd                         // the Bundle is closed
	stWhole                       // not a Bundle: held whole until the end
	stRaw                         // not JSON after all: passed on as it comes
)

// segment is a held part of the body: bytes with their base swaps, or an
// entry read whole.
type segment struct {
	start, end int
	edits      []edit
	doc        *Document
}

// StreamOptions set up a Stream.
type StreamOptions struct {
	// Scan is how entries (and bodies that are not Bundles) are read.
	// Scan.Known is set by the Stream.
	Scan ScanOptions
	// Rewrite is how they are rewritten.
	Rewrite Options
	// Plan returns the planner for the Endpoints looked up.
	Plan func(fetched map[string]Endpoint) Planner
	// Readdress, if set, gives Endpoints their addresses.
	Readdress Readdress
	// Cached returns the Endpoint of an id from the look-ups already held,
	// with known false when there is none held; found false means the FHIR
	// server has no such Endpoint. It may be nil.
	Cached func(id string) (e Endpoint, found, known bool)
	// Lookup looks up Endpoints by id, once per Stream, at its end. It may
	// be nil.
	Lookup func(ids []string) map[string]Endpoint
	// MaxHold is the most bytes held at a time. Default: 32 MiB.
	MaxHold int
	// SizeHint is the length of the body when it is known (its
	// Content-Length), to make room for it at once.
	SizeHint int
	// Learn, if set, is given the Endpoint resources of a searchset
	// Bundle's entries whose fullUrl is Endpoint/<id> on one of
	// Scan.LocalBases, for the caller to keep as look-ups: a search
	// answers their current versions.
	Learn func(e Endpoint)
	// Start, if set, is called once, before the first byte is written:
	// with the length of the whole output and whether it differs from the
	// body when the body was held whole; with -1 and true when a Bundle
	// streams; with -1 and false when the body goes out as it came.
	Start func(length int, changed bool)
}

// NewStream returns a Stream that writes the rewritten body to w.
func NewStream(w io.Writer, opts StreamOptions) *Stream {
	if opts.MaxHold <= 0 {
		opts.MaxHold = 32 << 20
	}
	bp := streamBufs.Get().(*[]byte)
	if opts.SizeHint > 0 && cap(*bp) < min(opts.SizeHint, opts.MaxHold) {
		*bp = make([]byte, 0, min(opts.SizeHint, opts.MaxHold)+512)
	}
	s := &Stream{w: w, opts: opts, known: NewIndex(), buf: (*bp)[:0], pooled: bp}
	s.opts.Scan.Known = s.known
	return s
}

// Stats returns what the Stream has done so far.
func (s *Stream) Stats() Stats { return s.stats }

// Malformed reports whether the body turned out not to be JSON, so that
// the rest of it was passed on as it came.
func (s *Stream) Malformed() bool { return s.state == stRaw }

// Studies returns the number of ImagingStudies read so far.
func (s *Stream) Studies() int { return s.studies }

// Held reports whether part of the body had to wait for the end.
func (s *Stream) Held() bool { return s.waited || s.state == stWhole }

// Write takes the next part of the body.
func (s *Stream) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if s.state == stRaw {
		return s.write(p)
	}
	s.buf = append(s.buf, p...)
	if s.state == stWhole {
		if len(s.buf) > s.opts.MaxHold {
			return len(p), s.toRaw()
		}
		return len(p), nil
	}
	if err := s.read(); err != nil {
		return len(p), err
	}
	if s.state == stWhole && len(s.buf) > s.opts.MaxHold {
		return len(p), s.toRaw()
	}
	return len(p), s.flush()
}

// start calls StreamOptions.Start once.
func (s *Stream) start(length int, changed bool) {
	if !s.started {
		s.started = true
		if s.opts.Start != nil {
			s.opts.Start(length, changed)
		}
	}
}

// streamBufs holds the buffers of finished Streams.
var streamBufs = sync.Pool{New: func() any { return new([]byte) }}

// Close writes out what is left once the body is complete. The Stream may
// not be used after.
func (s *Stream) Close() error {
	err := s.close()
	if s.pooled != nil && cap(s.buf) <= 64<<20 {
		*s.pooled = s.buf[:0]
		streamBufs.Put(s.pooled)
	}
	s.buf, s.pooled, s.held = nil, nil, nil
	return err
}

func (s *Stream) close() error {
	if s.err != nil {
		return s.err
	}
	switch s.state {
	case stRaw:
		return nil
	case stWhole:
		return s.whole()
	case stEnd:
		return s.release(true)
	}
	// The body ended inside the Bundle: not JSON.
	return s.toRaw()
}

func (s *Stream) write(p []byte) (int, error) {
	s.start(-1, true)
	n, err := s.w.Write(p)
	if err != nil {
		s.err = err
	}
	return n, err
}

// read advances pos through the Bundle's skeleton as far as buf goes.
func (s *Stream) read() error {
	for s.pos < s.base+len(s.buf) && s.state != stRaw && s.state != stWhole {
		if s.state == stEntry {
			done, err := s.readEntry()
			if err != nil || !done {
				return err
			}
			continue
		}
		b := s.buf[s.pos-s.base]
		switch b {
		case ' ', '\t', '\r', '\n':
			s.pos++
		case '"':
			end := stringEnd(s.buf, s.pos-s.base, s.pos-s.base+1)
			if end < 0 {
				return nil // the rest of it is still to come
			}
			if err := s.str(s.pos-s.base, end); err != nil {
				return err
			}
			s.pos = s.base + end
		case '{', '[':
			if s.state == stRoot {
				if b != '{' {
					return s.toWhole()
				}
				s.state = stFirstKey
			} else if s.state != stBundle {
				return s.toWhole()
			}
			if len(s.stack) > 0 && b == '{' {
				// An object in the Bundle (an entry, a link, its meta) is
				// read whole and handled as a unit: at once when it is all
				// here, which the first pass finds out; otherwise its end
				// is looked for as the rest comes, and it is read then.
				start := s.pos
				if len(s.buf)-(start-s.base) >= 4*s.lastEntry {
					// Likely all here: small entries, as the last one was.
					if n, resource, err := s.firstPass(s.buf[start-s.base:]); err == nil {
						s.pos = start + n
						s.lastEntry = n
						if err := s.entryRead(start, s.pos, resource); err != nil {
							return err
						}
						continue
					}
				}
				s.state, s.entryStart, s.entryDepth, s.entryStr = stEntry, start, 0, false
				continue
			}
			s.stack = append(s.stack, b)
			s.expectKey = b == '{'
			s.pos++
		case '}', ']':
			if len(s.stack) == 0 || (b == '}') != (s.stack[len(s.stack)-1] == '{') {
				return s.toRaw()
			}
			s.stack = s.stack[:len(s.stack)-1]
			s.expectKey = false
			s.pos++
			if len(s.stack) == 0 {
				if s.state != stBundle {
					return s.toWhole()
				}
				s.state = stEnd
			}
		case ':':
			s.expectKey = false
			s.pos++
		case ',':
			s.expectKey = len(s.stack) > 0 && s.stack[len(s.stack)-1] == '{'
			s.pos++
		default:
			if s.state != stBundle {
				if s.state == stEnd {
					return s.toRaw()
				}
				return s.toWhole()
			}
			s.pos++ // a number or a literal, looked at by nobody
		}
	}
	return nil
}

// str handles the string buf[i:end] outside entries.
func (s *Stream) str(i, end int) error {
	raw := s.buf[i+1 : end-1]
	switch {
	case s.state == stFirstKey:
		if string(raw) != "resourceType" {
			return s.toWhole()
		}
		s.state = stRootType
		return nil
	case s.state == stRootType:
		if string(raw) != "Bundle" {
			return s.toWhole()
		}
		s.state = stBundle
		return nil
	case s.state != stBundle:
		return s.toWhole()
	case s.expectKey:
		if len(s.stack) == 1 {
			s.key = append(s.key[:0], raw...)
		}
		return nil
	}
	if len(s.stack) == 1 && string(s.key) == "type" && !s.typeSeen {
		s.typeSeen = true
		s.searchset = string(raw) == "searchset"
	}
	if rules := s.rules(); len(rules) > 0 {
		str := jsontext.Str{Start: i, End: end, Escaped: bytes.IndexByte(raw, '\\') >= 0}
		n := len(s.edits)
		s.edits, _ = rebaseEdit(rules, s.buf, str, s.edits, nil)
		for k := n; k < len(s.edits); k++ {
			s.edits[k].start += s.base
			s.edits[k].end += s.base
		}
	}
	return nil
}

func (s *Stream) rules() []baseRule {
	if s.opts.Scan.Rebase == nil {
		return nil
	}
	return s.opts.Scan.Rebase.rules
}

// stringEnd returns the offset just after the closing quote of the string
// that starts at buf[i], looking from buf[from] on, or -1 when it is not
// complete yet.
func stringEnd(buf []byte, i, from int) int {
	j := from
	for {
		if j = jsontext.NextQuote(buf, j); j == len(buf) {
			return -1
		}
		bs := 0
		for b := j - 1; b > i && buf[b] == '\\'; b-- {
			bs++
		}
		if bs%2 == 0 {
			return j + 1
		}
		j++
	}
}

// readEntry reads on through the entry being read; done reports that it
// was complete and has been handled.
func (s *Stream) readEntry() (done bool, err error) {
	buf := s.buf
	i := s.pos - s.base
	for i < len(buf) {
		if s.entryStr {
			// i is the first byte not yet looked at in a string that
			// opened at entryQuote.
			end := stringEnd(buf, s.entryQuote-s.base, i)
			if end < 0 {
				s.pos = s.base + len(buf)
				return false, nil
			}
			s.entryStr = false
			i = end
			continue
		}
		switch buf[i] {
		case '"':
			s.entryStr, s.entryQuote = true, s.base+i
			i++
			continue
		case '{', '[':
			s.entryDepth++
		case '}', ']':
			s.entryDepth--
			if s.entryDepth == 0 {
				s.pos = s.base + i + 1
				s.state = stBundle
				return true, s.entry(s.entryStart, s.pos)
			}
		}
		i++
	}
	s.pos = s.base + i
	return false, nil
}

// entry handles a whole entry, body[start:end].
func (s *Stream) entry(start, end int) error {
	raw := s.buf[start-s.base : end-s.base]
	s.lastEntry = len(raw)
	if bytes.IndexByte(raw, '\\') < 0 && (bytes.Contains(raw, []byte("ImagingStudy")) || bytes.Contains(raw, []byte("Endpoint"))) {
		// Without escapes, a value can only be "ImagingStudy" where the
		// word is: read by Scan at once, one pass rather than two.
		return s.entryRead(start, end, true)
	}
	n, resource, err := s.firstPass(raw)
	if err != nil || n != len(raw) {
		return s.toRaw()
	}
	return s.entryRead(start, end, resource)
}

// firstPass validates the entry at the start of raw, finding its base swaps
// (left in s.scratch.rebase) and whether any string value in it is
// "ImagingStudy" or "Endpoint". It returns the entry's length.
func (s *Stream) firstPass(raw []byte) (n int, resource bool, err error) {
	s.scratch.rebase = s.scratch.rebase[:0]
	p := scanner{d: &s.scratch, rules: s.rules(), detect: true}
	p.s.In = raw
	err = p.skip()
	return p.s.Pos, p.found, err
}

// entryRead handles the entry body[start:end] after its first pass.
func (s *Stream) entryRead(start, end int, resource bool) error {
	raw := s.buf[start-s.base : end-s.base]
	if !resource {
		// Nothing to inject: only its base is swapped.
		if len(s.held) > 0 {
			edits := make([]edit, len(s.scratch.rebase))
			for i, e := range s.scratch.rebase {
				e.start += start
				e.end += start
				edits[i] = e
			}
			s.hold(segment{start: start, end: end, edits: edits})
			return nil
		}
		for _, e := range s.scratch.rebase {
			e.start += start
			e.end += start
			s.edits = append(s.edits, e)
		}
		return nil
	}
	d, err := Scan(raw, s.opts.Scan)
	if err != nil {
		return s.toRaw()
	}
	s.studies += len(d.Studies)
	s.known.Add(d)
	if s.searchset && s.opts.Learn != nil {
		for u, e := range d.byFullURL {
			// Only the FHIR server's own: an entry whose fullUrl is
			// Endpoint/<its id> on a local base.
			if base, rt, id := SplitReference(u); rt == "Endpoint" && id == e.ID && base != "" && d.isLocalBase(base) {
				s.opts.Learn(*e)
			}
		}
	}
	if len(s.held) == 0 {
		if fetched, ok := s.endpoints(d.MissingEndpoints(), false); ok {
			// Everything it needs is known: out it goes.
			if err := s.emitUpTo(start); err != nil {
				return err
			}
			s.out = end
			return s.rewrite(d, fetched)
		}
		// It waits, and all after it.
		if err := s.emitUpTo(start); err != nil {
			return err
		}
	}
	s.hold(segment{start: start, end: end, doc: d})
	return nil
}

// endpoints resolves ids from the look-ups held and, when lookup is set,
// looks up the rest, all at once. all reports whether every id was
// answered.
func (s *Stream) endpoints(ids []string, lookup bool) (fetched map[string]Endpoint, all bool) {
	fetched = map[string]Endpoint{}
	var ask []string
	for _, id := range ids {
		if s.opts.Cached != nil {
			if e, found, known := s.opts.Cached(id); known {
				if found {
					fetched[id] = e
				}
				continue
			}
		}
		ask = append(ask, id)
	}
	if len(ask) > 0 && lookup && s.opts.Lookup != nil {
		slices.Sort(ask)
		maps.Copy(fetched, s.opts.Lookup(ask))
		return fetched, true
	}
	return fetched, len(ask) == 0
}

// rewrite writes out the entry d.
func (s *Stream) rewrite(d *Document, fetched map[string]Endpoint) error {
	out, _, st := d.AppendRewrite(s.dst[:0], s.opts.Plan(fetched), s.opts.Readdress, s.opts.Rewrite)
	s.dst = out
	s.count(st)
	_, err := s.write(out)
	return err
}

func (s *Stream) count(st Stats) {
	s.stats.Studies += st.Studies
	s.stats.Series += st.Series
	s.stats.Instances += st.Instances
	s.stats.Endpoints += st.Endpoints
	s.stats.Rebased += st.Rebased
	s.stats.Edited = s.stats.Edited || st.Edited
}

// hold keeps a segment for the end; the bytes before it since the last one
// are kept too.
func (s *Stream) hold(seg segment) {
	if s.out < seg.start {
		s.held = append(s.held, segment{start: s.out, end: seg.start, edits: s.takeEdits(seg.start)})
	}
	s.held = append(s.held, seg)
	s.waited = true
	s.heldSize += seg.end - s.out
	s.out = seg.end
}

// takeEdits removes and returns the pending base swaps before body offset
// end.
func (s *Stream) takeEdits(end int) []edit {
	n := 0
	for n < len(s.edits) && s.edits[n].start < end {
		n++
	}
	taken := slices.Clone(s.edits[:n])
	s.edits = append(s.edits[:0], s.edits[n:]...)
	return taken
}

// flush writes out what can go, after a Write: everything read, outside a
// string or an entry, unless something is held.
func (s *Stream) flush() error {
	if s.state != stBundle && s.state != stEntry && s.state != stEnd {
		return nil // nothing goes out before the body is known to be a Bundle
	}
	if len(s.held) > 0 {
		if s.heldSize+(s.pos-s.out) > s.opts.MaxHold {
			return s.release(false)
		}
		return nil
	}
	upTo := s.pos
	if s.state == stEntry {
		if s.base+len(s.buf)-s.entryStart > s.opts.MaxHold {
			return s.toRaw() // one entry larger than what may be held
		}
		upTo = s.entryStart
	}
	return s.emitUpTo(upTo)
}

// emitUpTo writes out the body from out to upTo with its base swaps, and
// drops it from buf.
func (s *Stream) emitUpTo(upTo int) error {
	if upTo <= s.out {
		return nil
	}
	edits := s.takeEdits(upTo)
	if err := s.writeSpan(s.out, upTo, edits); err != nil {
		return err
	}
	s.out = upTo
	s.drop()
	return nil
}

// writeSpan writes body[start:end] with edits applied.
func (s *Stream) writeSpan(start, end int, edits []edit) error {
	out := s.dst[:0]
	pos := start
	for _, e := range edits {
		out = append(out, s.buf[pos-s.base:e.start-s.base]...)
		out = append(out, e.text...)
		pos = e.end
		s.stats.Rebased++
	}
	out = append(out, s.buf[pos-s.base:end-s.base]...)
	s.dst = out
	_, err := s.write(out)
	return err
}

// drop forgets the part of buf that is written out.
func (s *Stream) drop() {
	keep := s.out
	if len(s.held) > 0 {
		keep = s.held[0].start
	}
	if n := keep - s.base; n > len(s.buf)/2 && n > 64<<10 {
		s.buf = append(s.buf[:0], s.buf[n:]...)
		s.base = keep
	}
}

// release writes out what is held: at the end, after the one look-up of
// the Endpoints still missing; before it (atEnd false), when too much is
// held, with the look-ups held so far.
func (s *Stream) release(atEnd bool) error {
	var missing []string
	seen := map[string]bool{}
	for _, seg := range s.held {
		if seg.doc == nil {
			continue
		}
		seg.doc.Resolve()
		for _, id := range seg.doc.MissingEndpoints() {
			if !seen[id] {
				seen[id] = true
				missing = append(missing, id)
			}
		}
	}
	fetched, _ := s.endpoints(missing, atEnd)
	for _, seg := range s.held {
		if seg.doc == nil {
			if err := s.writeSpan(seg.start, seg.end, seg.edits); err != nil {
				return err
			}
			continue
		}
		if err := s.rewrite(seg.doc, fetched); err != nil {
			return err
		}
	}
	s.held, s.heldSize = nil, 0
	if atEnd {
		return s.emitUpTo(s.pos)
	}
	s.drop()
	return s.flush()
}

// toWhole holds the body whole: it is not a Bundle.
func (s *Stream) toWhole() error {
	if s.out > 0 {
		return s.toRaw() // cannot happen: nothing goes out before the Bundle is known
	}
	s.state = stWhole
	return nil
}

// whole rewrites a body held whole, at its end.
func (s *Stream) whole() error {
	d, err := Scan(s.buf, s.opts.Scan)
	if err != nil {
		return s.toRaw()
	}
	s.studies += len(d.Studies)
	var fetched map[string]Endpoint
	if ids := d.MissingEndpoints(); len(ids) > 0 {
		fetched, _ = s.endpoints(ids, true)
	}
	out, changed, st := d.AppendRewrite(s.dst[:0], s.opts.Plan(fetched), s.opts.Readdress, s.opts.Rewrite)
	s.dst = out
	s.count(st)
	s.start(len(out), changed)
	_, err = s.write(out)
	return err
}

// toRaw gives up: what is held or not yet written goes out as it is, and so
// does the rest of the body.
func (s *Stream) toRaw() error {
	if s.state == stRaw {
		return nil
	}
	s.state = stRaw
	start := s.out
	if len(s.held) > 0 {
		start = s.held[0].start
	}
	s.held, s.edits = nil, nil
	s.start(-1, false)
	_, err := s.write(s.buf[start-s.base:])
	s.buf = nil
	return err
}
