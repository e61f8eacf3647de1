package fhirjson

import (
	"errors"
	"sort"
	"strings"

	"github.com/fhirimaging/caddy-fhir-imaging/module/dicom"
	"github.com/tidwall/gjson"
)

// ErrMalformed is returned by Scan for a body that is not a JSON object.
var ErrMalformed = errors.New("fhirjson: body is not a well-formed JSON object")

// ScanOptions tunes Scan.
type ScanOptions struct {
	// LocalBases are the FHIR base URLs (normalised with NormalizeBase) on
	// which an absolute Endpoint reference may be looked up by id. References
	// to any other server are resolved only from the document itself.
	LocalBases []string
}

// Document is a scanned FHIR JSON body: the ImagingStudy resources it holds
// and what is needed to resolve their Endpoints.
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
}

// Series is one ImagingStudy.series element.
type Series struct {
	// UID is the Series Instance UID, or "" when it is missing or invalid.
	UID string
	// Endpoints are the series-level Endpoint references.
	Endpoints []*Ref
	// Instances lists the series' instances in document order.
	Instances []*Instance
	obj       gjson.Result
	ext       gjson.Result // the "extension" member's value, if any
}

// Instance is one ImagingStudy.series.instance element.
type Instance struct {
	// UID is the SOP Instance UID, or "" when it is missing or invalid.
	UID string
	obj gjson.Result
	ext gjson.Result
}

// EndpointSite is an Endpoint resource as it sits in a Document.
type EndpointSite struct {
	// Endpoint is what it says.
	Endpoint Endpoint
	// Container is "<Type>/<id>" of the resource that contains it, for a
	// contained Endpoint ("<Type>/" when that resource has no id); "" for
	// a standalone one.
	Container string
	address   gjson.Result // the address member's value
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

// Scan parses body and finds every ImagingStudy in it, wherever it sits, and
// every Endpoint that the document itself carries.
func Scan(body []byte, opts ScanOptions) (*Document, error) {
	s := string(body)
	start := 0
	for start < len(s) && (s[start] == ' ' || s[start] == '\t' || s[start] == '\r' || s[start] == '\n') {
		start++
	}
	if start == len(s) || s[start] != '{' || !gjson.Valid(s) {
		return nil, ErrMalformed
	}
	root := gjson.Parse(s[start:])
	root.Index = start
	d := &Document{body: s, byFullURL: map[string]*Endpoint{}, byID: map[string]*Endpoint{}, opts: opts}
	var pending []pendingStudy
	d.walk(root, "", "", nil, &pending)
	for _, p := range pending {
		d.Studies = append(d.Studies, d.study(p.obj, p.scope))
	}
	return d, nil
}

type pendingStudy struct {
	obj   gjson.Result
	scope map[string]*Endpoint
}

// walk visits v looking for resources. fullURL is the Bundle entry fullUrl of
// v when v is an entry's resource; container is "<Type>/<id>" of the
// resource whose contained list v is (or is in); scope holds the contained
// Endpoints visible from v.
func (d *Document) walk(v gjson.Result, fullURL, container string, scope map[string]*Endpoint, pending *[]pendingStudy) {
	switch {
	case v.IsArray():
		v.ForEach(func(_, e gjson.Result) bool {
			d.walk(e, "", container, scope, pending)
			return true
		})
	case v.IsObject():
		rt := v.Get("resourceType").String()
		var contained gjson.Result
		if rt != "" {
			contained = v.Get("contained")
		}
		if rt != "" {
			// A resource: its contained resources form a new scope.
			if c := contained; c.IsArray() {
				inner := map[string]*Endpoint{}
				for k, e := range scope {
					inner[k] = e
				}
				c.ForEach(func(_, r gjson.Result) bool {
					if e, ok := parseEndpoint(r); ok && e.ID != "" {
						inner[e.ID] = &e
					}
					return true
				})
				scope = inner
			}
		}
		switch rt {
		case "ImagingStudy":
			*pending = append(*pending, pendingStudy{obj: v, scope: scope})
			if c := contained; c.IsArray() {
				d.walk(c, "", rt+"/"+v.Get("id").String(), scope, pending)
			}
			return
		case "Endpoint":
			e, _ := parseEndpoint(v)
			d.Endpoints = append(d.Endpoints, &EndpointSite{Endpoint: e, Container: container, address: v.Get("address")})
			if fullURL != "" {
				d.byFullURL[stripHistory(fullURL)] = &e
			}
			if e.ID != "" {
				if _, dup := d.byID[e.ID]; !dup {
					d.byID[e.ID] = &e
				}
			}
			return
		}
		entryURL := v.Get("fullUrl").String()
		v.ForEach(func(k, e gjson.Result) bool {
			if !e.IsObject() && !e.IsArray() {
				return true
			}
			u, in := "", ""
			switch k.String() {
			case "resource":
				u = entryURL
			case "contained":
				if rt != "" {
					in = rt + "/" + v.Get("id").String()
				}
			}
			d.walk(e, u, in, scope, pending)
			return true
		})
	}
}

// study reads one ImagingStudy. Its Endpoint references are kept unresolved
// until all Endpoints of the document are known. Each object is walked once,
// member by member: gjson's Get would rescan it from the start per key.
func (d *Document) study(v gjson.Result, scope map[string]*Endpoint) *Study {
	st := &Study{}
	var stu3UID string
	v.ForEach(func(k, val gjson.Result) bool {
		switch k.Str {
		case "identifier":
			val.ForEach(func(_, id gjson.Result) bool {
				if st.UID == "" && id.Get("system").Str == "urn:dicom:uid" {
					st.UID = dicom.TrimOIDPrefix(strings.TrimSpace(id.Get("value").Str))
				}
				return st.UID == ""
			})
		case "uid": // STU3
			stu3UID = dicom.TrimOIDPrefix(strings.TrimSpace(val.Str))
		case "endpoint":
			st.Endpoints = d.refs(val, scope)
		case "series":
			val.ForEach(func(_, sv gjson.Result) bool {
				if sv.IsObject() {
					st.Series = append(st.Series, d.series(sv, scope))
				}
				return true
			})
		}
		return true
	})
	if st.UID == "" {
		st.UID = stu3UID
	}
	if !dicom.ValidUID(st.UID) {
		st.UID = ""
	}
	return st
}

func (d *Document) series(sv gjson.Result, scope map[string]*Endpoint) *Series {
	se := &Series{obj: sv}
	sv.ForEach(func(k, val gjson.Result) bool {
		switch k.Str {
		case "uid":
			se.UID = validUID(val.Str)
		case "endpoint":
			se.Endpoints = d.refs(val, scope)
		case "extension":
			se.ext = val
		case "instance":
			val.ForEach(func(_, iv gjson.Result) bool {
				if !iv.IsObject() {
					return true
				}
				in := &Instance{obj: iv}
				iv.ForEach(func(k, val gjson.Result) bool {
					switch k.Str {
					case "uid":
						in.UID = validUID(val.Str)
					case "extension":
						in.ext = val
					}
					return true
				})
				se.Instances = append(se.Instances, in)
				return true
			})
		}
		return true
	})
	return se
}

func validUID(s string) string {
	s = strings.TrimSpace(s)
	if dicom.ValidUID(s) {
		return s
	}
	return ""
}

// refs reads a list of References (a single Reference is tolerated).
func (d *Document) refs(list gjson.Result, scope map[string]*Endpoint) []*Ref {
	var out []*Ref
	add := func(r gjson.Result) {
		if ref := d.ref(r.Get("reference").String(), scope); ref != nil {
			out = append(out, ref)
		}
	}
	if list.IsArray() {
		list.ForEach(func(_, r gjson.Result) bool {
			add(r)
			return true
		})
	} else if list.IsObject() {
		add(list)
	}
	return out
}

// ref resolves one reference string as far as the document allows. It
// returns nil for a reference that can never be resolved (another server, not
// an Endpoint, a contained id that is not there).
func (d *Document) ref(s string, scope map[string]*Endpoint) *Ref {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil
	}
	if strings.HasPrefix(s, "#") {
		if e, ok := scope[s[1:]]; ok {
			return &Ref{Local: e}
		}
		return nil
	}
	s = stripHistory(s)
	if e, ok := d.byFullURL[s]; ok {
		return &Ref{Local: e}
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
