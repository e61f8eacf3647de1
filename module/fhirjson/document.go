package fhirjson

import (
	"errors"
	"math"
	"sort"
	"strings"
	"sync"

	"github.com/tidwall/gjson"

	"github.com/fhirimaging/caddy-fhir-imaging/module/dicom"
)

// ErrMalformed is returned by Scan for a body that is not a JSON object.
var ErrMalformed = errors.New("fhirjson: body is not a well-formed JSON object")

// ScanOptions tunes Scan.
type ScanOptions struct {
	// LocalBases are the FHIR base URLs (normalised with NormalizeBase) on
	// which an absolute Endpoint reference may be looked up by id. References
	// to any other server are resolved only from the document itself.
	LocalBases []string
	// Rebase, when set, swaps the FHIR bases of its rules in every string
	// value of the body, in the same pass; Rewrite applies the swaps
	// together with what it injects. Its extension drops are not applied.
	Rebase *Transformer
	// Known holds Endpoints from outside the body that its references may
	// name: the other entries of the Bundle it is an entry of. The
	// document's own come first.
	Known *Index
}

// Document is a scanned FHIR JSON body: the ImagingStudy resources it holds
// and what is needed to resolve their Endpoints. It keeps offsets into the
// body, not copies of it, so that Rewrite can edit the body in one pass.
type Document struct {
	body string
	// Studies lists every ImagingStudy found, in document order.
	Studies []*Study
	// Endpoints lists every Endpoint resource found, standalone or
	// contained, in document order.
	Endpoints []*EndpointSite
	// byFullURL and byID hold the Endpoint resources found in the document
	// outside of contained lists (Bundle entries, operation outputs).
	byFullURL map[string]*Endpoint
	byID      map[string]*Endpoint
	opts      ScanOptions
	// rebase holds the base swaps of ScanOptions.Rebase, in document order.
	rebase []edit
	// nInstances counts the instances of every series.
	nInstances int
	// extElems holds the elements of every extension array of a series or
	// instance; each extSpan points into it.
	extElems []extElem
}

// Study is one ImagingStudy resource of a Document.
type Study struct {
	// UID is the Study Instance UID without "urn:oid:", or "" when the study
	// has no valid one (then nothing is injected into it).
	UID string
	// Endpoints are the study-level Endpoint references.
	Endpoints []*Ref
	// Series lists the study's series in document order.
	Series []*Series
	// refs are the study's references as written, and scope the contained
	// Endpoints they may name; both are resolved once the scan is done.
	refs  []string
	scope *scope
	obj   objSpan
	ext   extSpan
	base  string // the WADO-RS base of the study URL, escaped for JSON, set by Rewrite
}

// Series is one ImagingStudy.series element.
type Series struct {
	// UID is the Series Instance UID, or "" when it is missing or invalid.
	UID string
	// Endpoints are the series-level Endpoint references.
	Endpoints []*Ref
	// Instances lists the series' instances in document order.
	Instances []Instance
	obj       objSpan
	ext       extSpan
	refs      []string
	bases     Bases // what the planner gave, set by Rewrite
	json      Bases // bases escaped for JSON, set by Rewrite
}

// Instance is one ImagingStudy.series.instance element.
type Instance struct {
	// UID is the SOP Instance UID, or "" when it is missing or invalid.
	UID string
	obj objSpan
	ext extSpan
}

// objSpan is where an object of the body starts.
type objSpan struct {
	open  int32 // offset of its '{'
	empty bool  // it has no members
}

// extSpan is the "extension" member of a series or instance.
type extSpan struct {
	kind     extKind
	close    int32 // offset of its ']'
	first, n int32 // its elements: Document.extElems[first : first+n]
}

type extKind uint8

const (
	extNone     extKind = iota // no "extension" member
	extArray                   // an array
	extNotArray                // something else: left alone
)

// extElem is one element of an extension array.
type extElem struct {
	start, end int    // the element's offsets
	url        string // its "url", as gjson's String would give it
}

// EndpointSite is an Endpoint resource as it sits in a Document.
type EndpointSite struct {
	// Endpoint is what it says.
	Endpoint Endpoint
	// Container is "<Type>/<id>" of the resource that contains it, for a
	// contained Endpoint ("<Type>/" when that resource has no id); "" for
	// a standalone one.
	Container string
	address   gjson.Result // the address member's value; Index is its offset in the body
	in        *scope       // the resource whose contained list holds it
}

// Address returns the Endpoint's address exactly as the document has it.
func (s *EndpointSite) Address() string { return s.address.String() }

// Ref is an Endpoint reference of a study or series. It is resolved either
// from the document (contained resources, Bundle entries) or, when ID is set,
// from a look-up against the FHIR server.
type Ref struct {
	// Local is the Endpoint found in the document, if any.
	Local *Endpoint
	// ID is the Endpoint's logical id when the reference points to the local
	// FHIR server and the Endpoint is not in the document; "" otherwise.
	ID string
}

// scope is a resource that may contain Endpoints: the contained Endpoints
// by id, and the resource's type and id, which name it as a container.
type scope struct {
	parent *scope
	ids    map[string]*Endpoint
	rt, id string
	hasID  bool
}

func (s *scope) lookup(id string) (*Endpoint, bool) {
	for ; s != nil; s = s.parent {
		if e, ok := s.ids[id]; ok {
			return e, true
		}
	}
	return nil, false
}

// Scan parses body and finds every ImagingStudy in it, wherever it sits, and
// every Endpoint that the document itself carries, in one pass over it. With
// opts.Rebase set, the same pass finds the base swaps that Rewrite applies.
func Scan(body []byte, opts ScanOptions) (*Document, error) {
	start := 0
	for start < len(body) && (body[start] == ' ' || body[start] == '\t' || body[start] == '\r' || body[start] == '\n') {
		start++
	}
	if start == len(body) || body[start] != '{' || len(body) > math.MaxInt32 {
		return nil, ErrMalformed
	}
	d := &Document{body: string(body), byFullURL: map[string]*Endpoint{}, byID: map[string]*Endpoint{}, opts: opts}
	p := scanner{d: d, in: d.body}
	p.s.In = body
	if opts.Rebase != nil {
		p.rules = opts.Rebase.rules
	}
	insts := instScratch.Get().(*[]Instance)
	p.insts = *insts
	err := p.document()
	clear(p.insts[:cap(p.insts)]) // no UID of this body is kept alive by the pool
	*insts = p.insts[:0]
	instScratch.Put(insts)
	if err != nil {
		return nil, ErrMalformed
	}
	for _, site := range d.Endpoints {
		if site.in != nil {
			site.Container = site.in.rt + "/" + site.in.id
		}
	}
	d.Resolve()
	return d, nil
}

// instScratch holds the lists that Scan gathers a series' instances in
// before keeping them (scanner.keep): a searchset's Bundle entries are
// scanned one by one, and each would otherwise grow a list of its own.
var instScratch = sync.Pool{New: func() any { return new([]Instance) }}

// Resolve resolves the Endpoint references of the document's studies and
// series again: Scan does it once, and a caller whose ScanOptions.Known has
// grown since (the later entries of a Bundle read in parts) does it again.
func (d *Document) Resolve() {
	for _, st := range d.Studies {
		st.Endpoints = d.resolve(st.refs, st.scope)
		for _, se := range st.Series {
			se.Endpoints = d.resolve(se.refs, st.scope)
		}
	}
}

// Index holds Endpoint resources found outside a document, by the fullUrl
// of their Bundle entry and by id: the other entries of the Bundle that
// a document is one entry of.
type Index struct {
	byFullURL map[string]*Endpoint
	byID      map[string]*Endpoint
}

// NewIndex returns an empty Index.
func NewIndex() *Index {
	return &Index{byFullURL: map[string]*Endpoint{}, byID: map[string]*Endpoint{}}
}

// Add adds the standalone Endpoints of d (not its contained ones), the
// last of a fullUrl and the first of an id winning, as within one document.
func (x *Index) Add(d *Document) {
	for u, e := range d.byFullURL {
		x.byFullURL[u] = e
	}
	for id, e := range d.byID {
		if _, dup := x.byID[id]; !dup {
			x.byID[id] = e
		}
	}
}

// validUID returns the DICOM UID that a series or instance uid carries,
// or "" when it carries none. STU3 types series.uid and
// series.instance.uid as oid, so there they come as "urn:oid:<uid>"; R4
// and R5 write them bare. Both forms are read, as the study's UID is, and
// the UID is returned without the prefix.
func validUID(s string) string {
	if s != "" && '0' <= s[0] && s[0] <= '9' && '0' <= s[len(s)-1] && s[len(s)-1] <= '9' {
		// Nothing to trim, as UIDs are written: no space, no "urn:oid:".
		if dicom.ValidUID(s) {
			return s
		}
		return ""
	}
	s = dicom.TrimOIDPrefix(strings.TrimSpace(s))
	if dicom.ValidUID(s) {
		return s
	}
	return ""
}

// resolve resolves the references of a study or series.
func (d *Document) resolve(refs []string, sc *scope) []*Ref {
	var out []*Ref
	for _, s := range refs {
		if ref := d.ref(s, sc); ref != nil {
			out = append(out, ref)
		}
	}
	return out
}

// ref resolves one reference string as far as the document allows. It
// returns nil for a reference that can never be resolved (another server, not
// an Endpoint, a contained id that is not there).
func (d *Document) ref(s string, sc *scope) *Ref {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil
	}
	if strings.HasPrefix(s, "#") {
		if e, ok := sc.lookup(s[1:]); ok {
			return &Ref{Local: e}
		}
		return nil
	}
	s = stripHistory(s)
	if e, ok := d.byFullURL[s]; ok {
		return &Ref{Local: e}
	}
	known := d.opts.Known
	if known != nil {
		if e, ok := known.byFullURL[s]; ok {
			return &Ref{Local: e}
		}
	}
	base, rt, id := SplitReference(s)
	if rt != "Endpoint" || !ValidID(id) {
		return nil
	}
	if base != "" && !d.isLocalBase(base) {
		return nil
	}
	if e, ok := d.byID[id]; ok {
		return &Ref{Local: e}
	}
	if known != nil {
		if e, ok := known.byID[id]; ok {
			return &Ref{Local: e}
		}
	}
	return &Ref{ID: id}
}

func (d *Document) isLocalBase(base string) bool {
	n := NormalizeBase(base)
	for _, b := range d.opts.LocalBases {
		if n == b {
			return true
		}
	}
	return false
}

// MissingEndpoints returns the ids of the Endpoints that the document refers
// to but does not carry, sorted and without repeats: the ones to look up.
func (d *Document) MissingEndpoints() []string {
	seen := map[string]bool{}
	var ids []string
	add := func(refs []*Ref) {
		for _, r := range refs {
			if r.Local == nil && r.ID != "" && !seen[r.ID] {
				seen[r.ID] = true
				ids = append(ids, r.ID)
			}
		}
	}
	for _, st := range d.Studies {
		if st.UID == "" {
			continue
		}
		add(st.Endpoints)
		for _, se := range st.Series {
			add(se.Endpoints)
		}
	}
	sort.Strings(ids)
	return ids
}

// Effective returns the Endpoint of connection type t that serves series se of
// study st: the series' own active Endpoint of that type if it has one, else
// the study's. fetched holds the Endpoints looked up by id; references that
// are neither in the document nor in fetched are skipped.
func (st *Study) Effective(se *Series, t ConnectionType, fetched map[string]Endpoint) (Endpoint, bool) {
	if e, ok := pick(se.Endpoints, t, fetched); ok {
		return e, true
	}
	return pick(st.Endpoints, t, fetched)
}

// EffectiveAll returns every Endpoint of connection type t that serves
// series se of study st, in the order they are listed: the series' own
// active Endpoints of that type if it has any, else the study's. Several
// Endpoints of one type mean the same data held in several places
// (replicas); the first is the one Effective returns.
func (st *Study) EffectiveAll(se *Series, t ConnectionType, fetched map[string]Endpoint) []Endpoint {
	if all := pickAll(se.Endpoints, t, fetched); len(all) > 0 {
		return all
	}
	return pickAll(st.Endpoints, t, fetched)
}

func pickAll(refs []*Ref, t ConnectionType, fetched map[string]Endpoint) []Endpoint {
	var out []Endpoint
	for i := range refs {
		if e, ok := pick(refs[i:i+1], t, fetched); ok {
			out = append(out, e)
		}
	}
	return out
}

func pick(refs []*Ref, t ConnectionType, fetched map[string]Endpoint) (Endpoint, bool) {
	for _, r := range refs {
		var e Endpoint
		switch {
		case r.Local != nil:
			e = *r.Local
		case r.ID != "":
			f, ok := fetched[r.ID]
			if !ok {
				continue
			}
			e = f
		default:
			continue
		}
		if e.Active() && e.Has(t) && e.Address != "" {
			return e, true
		}
	}
	return Endpoint{}, false
}
