package dicom

import (
	"bytes"
	"io"
	"net/textproto"
	"strconv"
	"strings"
)

// maxPartHeader bounds the header block of one part that a PartRebaser
// holds while it looks for the block's end; a longer block goes on
// unchanged.
const maxPartHeader = 16 << 10

// PartRebaser passes a multipart body (RFC 2046) on to an io.Writer as it
// arrives, byte for byte, except for the URL headers of each part
// (Content-Location, Location), whose values are rebased by the rules as
// RewriteURLs rebases DICOM JSON: an archive names each frame or instance
// by its own URL, which must not reach a client. Only a part's header
// block is ever held; bodies stream, whatever their size. Close must be
// called at the end of the body to write what is still held.
type PartRebaser struct {
	w     io.Writer
	urls  *URLRebaser
	delim []byte // "\r\n--" + boundary
	hold  []byte
	state int
	skip  int64 // body bytes announced by the part's Content-Length, passed unread
	err   error

	// With a decide function (KeepLength), nothing is written until the
	// first part's header block has been read; then decide says whether
	// the body must keep its length (fixed).
	decide  func(changes bool) (fixed bool)
	decided bool
	fixed   bool
	pending []byte
}

const (
	partStart    = iota // before anything: the body may open with "--boundary"
	partBody            // in a preamble or a part's body, looking for delim
	partHeader          // after a delimiter, looking for the end of the header block
	partEpilogue        // after the close delimiter: everything passes
	partSkip            // in a body whose length its part announced
)

// NewPartRebaser returns a PartRebaser writing to w, for a multipart body
// whose boundary parameter is boundary, rebasing part headers with urls.
func NewPartRebaser(w io.Writer, boundary string, urls *URLRebaser) *PartRebaser {
	return &PartRebaser{w: w, delim: []byte("\r\n--" + boundary), urls: urls}
}

// URLRebaser rebases plain URLs (header values, not JSON strings) by a set
// of rules compiled once.
type URLRebaser struct {
	rules []rebaseRule
}

// NewURLRebaser compiles rules; a rule whose From is not an absolute URL
// is an error.
func NewURLRebaser(rules []Rebase) (*URLRebaser, error) {
	u := &URLRebaser{}
	for _, r := range rules {
		base, err := parseFrom(r.From)
		if err != nil {
			return nil, err
		}
		u.rules = append(u.rules, rebaseRule{base: base, to: []byte(strings.TrimRight(r.To, "/"))})
	}
	return u, nil
}

// Rebase returns the URL v with its base replaced by that of the first
// rule whose From it starts with, and whether one did.
func (u *URLRebaser) Rebase(v []byte) ([]byte, bool) {
	for i := range u.rules {
		r := &u.rules[i]
		if off, ok := r.base.Match(v); ok {
			out := make([]byte, 0, len(r.to)+len(v)-off)
			return append(append(out, r.to...), v[off:]...), true
		}
	}
	return nil, false
}

// KeepLength makes the rebaser keep the body's length when it can, for an
// answer whose Content-Length is still to be sent: nothing is written
// until the first part's header block has been read (or the body ended, or
// more than 16 KiB came without one), and then decide is called with
// whether rebasing that block changes its length. decide writes the
// answer's header (with Content-Length or without) and returns whether the
// length must stay. If it must, a later URL header is rebased only where
// the new URL fits in the old one's bytes (padded with spaces, which HTTP
// allows after a header's value) and is otherwise blanked, the whole line
// becoming an empty X-Omitted header of the same length: a client never
// sees an archive's address, and the length announced stays true. Call it
// before the first Write.
func (p *PartRebaser) KeepLength(decide func(changes bool) (fixed bool)) {
	p.decide = decide
}

// settle makes the KeepLength decision and writes what waited for it.
func (p *PartRebaser) settle(changes bool) {
	if p.decided || p.decide == nil {
		return
	}
	p.decided = true
	p.fixed = p.decide(changes)
	pending := p.pending
	p.pending = nil
	p.emit(pending)
}

// Write passes b on, holding back at most a part's header block or the
// bytes that may begin a delimiter.
func (p *PartRebaser) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 && p.err == nil {
		switch p.state {
		case partStart:
			open := p.delim[2:] // "--boundary" at the very start
			need := len(open) - len(p.hold)
			if len(b) < need {
				p.hold = append(p.hold, b...)
				return n, nil
			}
			p.hold = append(p.hold, b[:need]...)
			b = b[need:]
			if bytes.Equal(p.hold, open) {
				p.emit(p.hold)
				p.hold = p.hold[:0]
				p.state = partHeader
			} else {
				p.state = partBody // hold is shorter than delim: a tail to check
			}
		case partBody:
			b = p.body(b)
		case partHeader:
			b = p.header(b)
		case partEpilogue:
			p.emit(b)
			b = nil
		case partSkip:
			k := int(min(p.skip, int64(len(b))))
			p.emit(b[:k])
			b, p.skip = b[k:], p.skip-int64(k)
			if p.skip == 0 {
				p.state = partBody
			}
		}
	}
	if p.err != nil {
		return 0, p.err
	}
	return n, nil
}

// body consumes body bytes up to and including the next delimiter, and
// returns the rest of b.
func (p *PartRebaser) body(b []byte) []byte {
	d := p.delim
	if len(p.hold) > 0 {
		// A delimiter may have begun in what was held back.
		k := min(len(b), len(d))
		win := append(p.hold, b[:k]...)
		if i := bytes.Index(win, d); i >= 0 && i < len(p.hold) {
			used := i + len(d) - len(p.hold)
			p.emit(win[:i+len(d)])
			p.hold = p.hold[:0]
			p.state = partHeader
			return b[used:]
		}
		if k < len(d) && len(b) == k {
			// Not enough yet to rule a delimiter out: hold on to the window.
			p.hold = p.keepTail(win)
			return nil
		}
		p.emit(p.hold)
		p.hold = p.hold[:0]
	}
	if i := bytes.Index(b, d); i >= 0 {
		p.emit(b[:i+len(d)])
		p.state = partHeader
		return b[i+len(d):]
	}
	p.hold = p.keepTail(b)
	return nil
}

// keepTail writes b but for its end that may be the beginning of a
// delimiter, which it returns (in hold's storage).
func (p *PartRebaser) keepTail(b []byte) []byte {
	keep := 0
	if j := bytes.LastIndexByte(b[max(0, len(b)-len(p.delim)+1):], '\r'); j >= 0 {
		keep = len(b) - (max(0, len(b)-len(p.delim)+1) + j)
	}
	tail := b[len(b)-keep:]
	if keep > 0 && !bytes.HasPrefix(p.delim, tail) {
		keep, tail = 0, nil
	}
	p.emit(b[:len(b)-keep])
	// tail may lie in hold's own storage (a window built on it): append
	// moves it down as copy does, overlapping or not.
	return append(p.hold[:0], tail...)
}

// header holds the bytes after a delimiter until the header block ends
// (an empty line), then writes the block with its URL headers rebased.
// The close delimiter ("--" right after the boundary) ends the parts.
func (p *PartRebaser) header(b []byte) []byte {
	p.hold = append(p.hold, b...)
	if len(p.hold) < 2 {
		return nil
	}
	if p.hold[0] == '-' && p.hold[1] == '-' {
		p.emit(p.hold)
		p.hold = p.hold[:0]
		p.state = partEpilogue
		return nil
	}
	i := bytes.Index(p.hold, []byte("\r\n\r\n"))
	if i < 0 {
		if len(p.hold) > maxPartHeader {
			p.emit(p.hold)
			p.hold = p.hold[:0]
			p.state = partBody
		}
		return nil
	}
	block := p.hold[:i+4]
	out := p.rebaseBlock(block)
	p.settle(len(out) != len(block))
	if p.fixed && len(out) != len(block) {
		out = p.rebaseBlock(block) // settled fixed: rebased in place
	}
	p.emit(out)
	p.state = partBody
	// A body whose length the part announces is passed on without looking
	// into it: a gigabyte of pixel data costs no search for the delimiter.
	// The delimiter is looked for after it, so a length too short only
	// costs the shortcut; one too long (a broken answer) would pass the
	// headers of the parts it covers as they were.
	if n := partLength(block); n > 0 {
		p.state, p.skip = partSkip, n
	}
	rest := bytes.Clone(p.hold[i+4:])
	p.hold = p.hold[:0]
	return rest
}

// partLength returns the Content-Length of a part's header block, or 0.
func partLength(block []byte) int64 {
	for _, line := range bytes.Split(block, []byte("\r\n")) {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || textproto.CanonicalMIMEHeaderKey(string(bytes.TrimSpace(name))) != "Content-Length" {
			continue
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(value)), 10, 64)
		if err != nil || n < 0 {
			return 0
		}
		return n
	}
	return 0
}

// rebaseBlock returns the header block with the values of its URL headers
// rebased; lines are otherwise kept exactly as they were.
func (p *PartRebaser) rebaseBlock(block []byte) []byte {
	if len(p.urls.rules) == 0 {
		return block
	}
	var out []byte
	copied := 0
	for off := 0; off < len(block); {
		end := bytes.Index(block[off:], []byte("\r\n"))
		if end < 0 {
			break
		}
		line := block[off : off+end]
		if name, value, ok := bytes.Cut(line, []byte(":")); ok {
			canon := textproto.CanonicalMIMEHeaderKey(string(bytes.TrimSpace(name)))
			if canon == "Content-Location" || canon == "Location" {
				v := bytes.TrimLeft(value, " \t")
				vs := off + len(name) + 1 + (len(value) - len(v))
				v = bytes.TrimRight(v, " \t")
				if repl, ok := p.urls.Rebase(v); ok {
					switch {
					case !p.fixed:
						out = append(out, block[copied:vs]...)
						out = append(out, repl...)
						copied = vs + len(v)
					case len(repl) <= len(v):
						out = append(out, block[copied:vs]...)
						out = append(out, repl...)
						out = append(out, bytes.Repeat([]byte(" "), len(v)-len(repl))...)
						copied = vs + len(v)
					default:
						// Too long for the bytes it must take: the line
						// goes, as an empty header of the same length.
						out = append(out, block[copied:off]...)
						out = append(out, omitted...)
						out = append(out, bytes.Repeat([]byte(" "), len(line)-len(omitted))...)
						copied = off + len(line)
					}
				}
			}
		}
		off += end + 2
	}
	if out == nil {
		return block
	}
	return append(out, block[copied:]...)
}

// omitted is the name that blanks a URL header whose rebased value does not
// fit (KeepLength); a URL header line is always longer.
var omitted = []byte("X-Omitted:")

func (p *PartRebaser) emit(b []byte) {
	if p.err != nil || len(b) == 0 {
		return
	}
	if p.decide != nil && !p.decided {
		p.pending = append(p.pending, b...)
		if len(p.pending) > maxPartHeader {
			p.settle(false) // no part in sight: nothing to decide on
		}
		return
	}
	_, p.err = p.w.Write(b)
}

// Close writes what is still held (an unfinished delimiter or header
// block at the end of the body, which then goes on as it was).
func (p *PartRebaser) Close() error {
	p.settle(false)
	p.emit(p.hold)
	p.hold = p.hold[:0]
	return p.err
}
