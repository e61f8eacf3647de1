package fhirjson

import (
	"slices"
	"sync"

	"github.com/tidwall/gjson"

	"github.com/fhirimaging/caddy-fhir-imaging/module/internal/jsontext"
)

// DefaultExtensionBase is the prefix of the extension URLs that the gateway
// injects unless configured otherwise.
const DefaultExtensionBase = "https://fhirimaging.github.io/caddy-fhir-imaging/StructureDefinition/"

// Extensions are the URLs of the extensions the gateway injects.
type Extensions struct {
	// WADORS is the extension URL that carries a WADO-RS URL.
	WADORS string
	// WADOURI is the extension URL that carries a WADO-URI URL.
	WADOURI string
}

// ExtensionsFor returns the extension URLs under the given base.
func ExtensionsFor(base string) Extensions {
	return Extensions{WADORS: base + "wado-rs", WADOURI: base + "wado-uri"}
}

// Bases are the base URLs to build a series' links from; an empty field means
// that no link of that kind is injected.
type Bases struct {
	// WADORS is a DICOMweb base without trailing slash; links are
	// <WADORS>/studies/<study>/series/<series>[/instances/<sop>].
	WADORS string
	// WADOURI is a WADO-URI base without query; links are
	// <WADOURI>?requestType=WADO&studyUID=..&seriesUID=..&objectUID=..&contentType=application/dicom.
	WADOURI string
}

// Planner decides the bases for one series of one study.
type Planner func(st *Study, se *Series) Bases

// Stats counts what Inject did.
type Stats struct {
	// Studies is the number of studies that received a WADO-RS link.
	Studies int
	// Series is the number of series that received a WADO-RS link.
	Series int
	// Instances is the number of instance-level links (of either kind).
	Instances int
	// Endpoints is the number of Endpoint addresses given.
	Endpoints int
	// Rebased is the number of base URLs swapped (ScanOptions.Rebase).
	Rebased int
	// Edited reports whether anything other than a base swap changed.
	Edited bool
}

// Levels says which levels of an ImagingStudy get URLs: a set of
// LevelStudy, LevelSeries and LevelInstance. The zero Levels means
// LevelSeries|LevelInstance.
type Levels uint8

const (
	// LevelStudy gives the ImagingStudy a WADO-RS URL of the whole study,
	// when every series that gets a WADO-RS base gets the same one.
	LevelStudy Levels = 1 << iota
	// LevelSeries gives each series its WADO-RS URL.
	LevelSeries
	// LevelInstance gives each instance its WADO-RS and WADO-URI URLs.
	LevelInstance

	// SeriesAndInstances is the default.
	SeriesAndInstances = LevelSeries | LevelInstance
	// SeriesOnly leaves instances without URLs, for clients that build
	// them, so that the output stays near the size of the input.
	SeriesOnly = LevelSeries
)

// Options tunes Rewrite.
type Options struct {
	// Ext are the extension URLs.
	Ext Extensions
	// Levels says which elements get URLs.
	Levels Levels
}

// Inject returns the document with the links that plan decides for each
// series added as extensions: a WADO-RS link on each series and on each of its
// instances, a WADO-URI link on each instance. An extension of the same URL
// already present is replaced in place (further copies are removed), so
// running Inject on its own output changes nothing. Every byte outside the
// edited extension arrays is copied unchanged. The document is returned as it
// was (changed == false) when nothing is injected.
func (d *Document) Inject(plan Planner, ext Extensions) (out []byte, changed bool, stats Stats) {
	return d.Rewrite(plan, nil, ext)
}

// Readdress decides the address an Endpoint of the document is given; ok
// false leaves it as it is.
type Readdress func(site *EndpointSite) (address string, ok bool)

// Rewrite is Inject that also gives the document's Endpoints (standalone and
// contained) the addresses that readdress decides, and swaps the bases that
// Scan found (ScanOptions.Rebase), in the same single pass. Stats.Endpoints
// counts the addresses given. readdress may be nil.
func (d *Document) Rewrite(plan Planner, readdress Readdress, ext Extensions) (out []byte, changed bool, stats Stats) {
	return d.AppendRewrite(nil, plan, readdress, Options{Ext: ext})
}

// An edit replaces body[start:end] with text, then with the extensions it
// generates (op). The extensions are written straight into the output,
// never staged: what an edit needs to write them is where they go and the
// series (and instance) whose URLs they carry.
type edit struct {
	start, end int
	text       string
	op         genOp
	comma      bool      // opNewArray: a ',' after the array; opAppend: a ',' before the first
	x, y       urlKind   // the extensions to write, in order (urlNone for none)
	st         *Study    // the study, series and instance of the URLs
	se         *Series   //
	in         *Instance //
	rebase     bool      // a base swap, which another edit may cover
}

type genOp uint8

const (
	opText     genOp = iota // text only (a removal when it is "")
	opNewArray              // "extension":[x,y] and maybe a ','
	opElem                  // x, replacing an element
	opAppend                // ,x,y after the last element (or x,y into [])
)

type urlKind uint8

const (
	urlNone urlKind = iota
	urlStudy
	urlSeries
	urlInstanceRS
	urlInstanceURI
)

// rewriters holds the edit lists of finished rewrites, for reuse.
var rewriters = sync.Pool{New: func() any { return new(rewriter) }}

type rewriter struct {
	edits []edit
}

// AppendRewrite is Rewrite with options, appending the document to dst. When
// nothing changes, dst is returned with the body appended as it was.
func (d *Document) AppendRewrite(dst []byte, plan Planner, readdress Readdress, opts Options) (out []byte, changed bool, stats Stats) {
	rw := rewriters.Get().(*rewriter)
	defer func() {
		if cap(rw.edits) <= 1<<20 {
			clear(rw.edits[:cap(rw.edits)])
			rewriters.Put(rw)
		}
	}()
	if need := d.nInstances + 2*len(d.Studies) + len(d.Endpoints); cap(rw.edits) < need {
		rw.edits = make([]edit, 0, need+need/8) // one allocation rather than a series of them
	}
	edits := rw.edits[:0]
	grow := 0 // what the edits add, about
	if readdress != nil {
		for _, site := range d.Endpoints {
			if site.address.Type != gjson.String {
				continue
			}
			if a, ok := readdress(site); ok {
				text := `"` + jsonText(a) + `"`
				edits = append(edits, edit{start: site.address.Index, end: site.address.Index + len(site.address.Raw), text: text})
				grow += len(text)
				stats.Endpoints++
			}
		}
	}
	levels := opts.Levels
	if levels == 0 {
		levels = SeriesAndInstances
	}
	elems := d.extElems
	extURL := func(k urlKind) string {
		if k == urlInstanceURI {
			return opts.Ext.WADOURI
		}
		return opts.Ext.WADORS
	}
	// What the extensions are made of is escaped for JSON once, not for
	// each of the thousands of URLs made of it.
	rs := jsonText(opts.Ext.WADORS)
	ext := &extTexts{urlStudy: rs, urlSeries: rs, urlInstanceRS: rs, urlInstanceURI: jsonText(opts.Ext.WADOURI)}
	for _, st := range d.Studies {
		if st.UID == "" {
			continue
		}
		studyBase, oneBase := "", true
		for _, se := range st.Series {
			se.bases, se.json = Bases{}, Bases{}
			if se.UID != "" {
				se.bases = plan(st, se)
				se.json = Bases{WADORS: jsonText(se.bases.WADORS), WADOURI: jsonText(se.bases.WADOURI)}
			}
			if b := se.bases.WADORS; b != "" {
				if studyBase != "" && b != studyBase {
					oneBase = false
				}
				studyBase = b
			}
		}
		if levels&LevelStudy != 0 && studyBase != "" && oneBase {
			st.base = jsonText(studyBase)
			edits = addExtensions(edits, elems, st.obj, st.ext, extURL, edit{st: st, x: urlStudy})
			grow += 2 * (len(studyBase) + len(st.UID) + len(opts.Ext.WADORS) + 64)
			stats.Studies++
		}
		for _, se := range st.Series {
			b := se.bases
			if b.WADORS == "" && b.WADOURI == "" {
				continue
			}
			if b.WADORS != "" && levels&LevelSeries != 0 {
				edits = addExtensions(edits, elems, se.obj, se.ext, extURL, edit{st: st, se: se, x: urlSeries})
				grow += 2 * (len(b.WADORS) + len(st.UID) + len(se.UID) + len(opts.Ext.WADORS) + 64)
				stats.Series++
			}
			if levels&LevelInstance == 0 {
				continue
			}
			for i := range se.Instances {
				in := &se.Instances[i]
				if in.UID == "" {
					continue
				}
				e := edit{st: st, se: se, in: in}
				if b.WADORS != "" {
					e.x = urlInstanceRS
					stats.Instances++
					grow += len(b.WADORS) + len(st.UID) + len(se.UID) + len(in.UID) + len(opts.Ext.WADORS) + 64
				}
				if b.WADOURI != "" {
					if e.x == urlNone {
						e.x = urlInstanceURI
					} else {
						e.y = urlInstanceURI
					}
					stats.Instances++
					grow += len(b.WADOURI) + len(st.UID) + len(se.UID) + len(in.UID) + len(opts.Ext.WADOURI) + 120
				}
				edits = addExtensions(edits, elems, in.obj, in.ext, extURL, e)
			}
		}
	}
	if !slices.IsSortedFunc(edits, byStart) {
		slices.SortStableFunc(edits, byStart)
	}
	rw.edits = edits
	for _, e := range d.rebase {
		grow += len(e.text)
	}
	if len(edits) == 0 && len(d.rebase) == 0 {
		return append(dst, d.body...), false, stats
	}
	out = slices.Grow(dst, len(d.body)+grow)
	pos := 0
	// The edits and the base swaps, both sorted, are merged as they are
	// applied; at the same offset an edit goes first.
	for i, j := 0, 0; i < len(edits) || j < len(d.rebase); {
		var e *edit
		if j == len(d.rebase) || i < len(edits) && edits[i].start <= d.rebase[j].start {
			e = &edits[i]
			i++
		} else {
			e = &d.rebase[j]
			j++
		}
		if e.start < pos {
			continue // a base swap inside what another edit replaced
		}
		out = append(out, d.body[pos:e.start]...)
		mark := len(out)
		out = append(out, e.text...)
		out = e.generate(out, ext)
		if e.rebase {
			stats.Rebased++
		} else if !stats.Edited && string(out[mark:]) != d.body[e.start:e.end] {
			stats.Edited = true
		}
		pos = e.end
	}
	out = append(out, d.body[pos:]...)
	return out, stats.Edited || stats.Rebased > 0, stats
}

func byStart(x, y edit) int { return x.start - y.start }

// addExtensions appends the edits that put the extensions of tmpl (x, and
// y when set) into the extension array ext of the object obj: a new array as
// the object's first member when it has none, an element replaced in place
// for an extension of the same URL (further copies removed), the others
// appended after the last element.
func addExtensions(edits []edit, elems []extElem, obj objSpan, ext extSpan, extURL func(urlKind) string, tmpl edit) []edit {
	if tmpl.x == urlNone || ext.kind == extNotArray {
		return edits // not FHIR, for the latter; adding a second "extension" key would make it worse
	}
	if ext.kind == extNone {
		// No extension array yet: open one as the object's first member,
		// where FHIR JSON conventionally has it.
		e := tmpl
		at := int(obj.open) + 1
		e.start, e.end, e.op, e.comma = at, at, opNewArray, !obj.empty
		return append(edits, e)
	}
	list := elems[ext.first : ext.first+ext.n]
	first := len(edits)
	appended := tmpl
	appended.x, appended.y = urlNone, urlNone
	for _, k := range [2]urlKind{tmpl.x, tmpl.y} {
		if k == urlNone {
			continue
		}
		url := extURL(k)
		found := false
		for i, el := range list {
			if el.url != url {
				continue
			}
			if !found {
				e := tmpl
				e.start, e.end, e.op, e.x, e.y = el.start, el.end, opElem, k, urlNone
				edits = append(edits, e)
				found = true
				continue
			}
			// A further copy: remove it together with the comma before it.
			edits = append(edits, edit{start: list[i-1].end, end: el.end})
		}
		if !found {
			if appended.x == urlNone {
				appended.x = k
			} else {
				appended.y = k
			}
		}
	}
	if appended.x != urlNone {
		appended.op, appended.comma = opAppend, len(list) > 0
		appended.start = int(ext.close)
		if len(list) > 0 {
			appended.start = list[len(list)-1].end
		}
		appended.end = appended.start
		edits = append(edits, appended)
	}
	if added := edits[first:]; len(added) > 1 {
		slices.SortStableFunc(added, byStart)
	}
	return edits
}

// generate appends what e generates after its text.
func (e *edit) generate(out []byte, ext *extTexts) []byte {
	switch e.op {
	case opNewArray:
		out = append(out, `"extension":[`...)
		out = e.element(out, e.x, ext)
		if e.y != urlNone {
			out = e.element(append(out, ','), e.y, ext)
		}
		out = append(out, ']')
		if e.comma {
			out = append(out, ',')
		}
	case opElem:
		out = e.element(out, e.x, ext)
	case opAppend:
		if e.comma {
			out = append(out, ',')
		}
		out = e.element(out, e.x, ext)
		if e.y != urlNone {
			out = e.element(append(out, ','), e.y, ext)
		}
	}
	return out
}

// extTexts are the extension URLs by the kind of URL they carry, escaped
// for JSON.
type extTexts [urlInstanceURI + 1]string

// element appends one extension element: {"url":..,"valueUrl":..}. Every
// piece is JSON already: the extension URL and the bases escaped once, the
// UIDs valid (digits and dots).
func (e *edit) element(out []byte, k urlKind, ext *extTexts) []byte {
	out = append(out, `{"url":"`...)
	out = append(out, ext[k]...)
	out = append(out, `","valueUrl":"`...)
	st, se := e.st, e.se
	switch k {
	case urlStudy:
		out = append(out, st.base...)
		out = append(out, "/studies/"...)
		out = append(out, st.UID...)
	case urlSeries, urlInstanceRS:
		out = append(out, se.json.WADORS...)
		out = append(out, "/studies/"...)
		out = append(out, st.UID...)
		out = append(out, "/series/"...)
		out = append(out, se.UID...)
		if k == urlInstanceRS {
			out = append(out, "/instances/"...)
			out = append(out, e.in.UID...)
		}
	case urlInstanceURI:
		out = append(out, se.json.WADOURI...)
		out = append(out, "?requestType=WADO&studyUID="...)
		out = append(out, st.UID...)
		out = append(out, "&seriesUID="...)
		out = append(out, se.UID...)
		out = append(out, "&objectUID="...)
		out = append(out, e.in.UID...)
		out = append(out, "&contentType=application/dicom"...)
	}
	return append(out, `"}`...)
}

// jsonText returns s escaped for a JSON string: s itself in the usual case
// where nothing needs escaping.
func jsonText(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' {
			return string(jsontext.AppendEscaped(nil, s))
		}
	}
	return s
}
