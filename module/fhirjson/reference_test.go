package fhirjson

// The gjson-based scanner and rewriter that the one-pass scanner replaced, kept
// as the oracle of FuzzScanMatchesReference and the baseline of the benchmarks.
// This file holds no test of its own: its output is asserted against the
// one-pass scanner's in differential_test.go (TestScanMatchesReference,
// FuzzScanMatchesReference), which fail when the two read a body
// differently: read urn:oid: series UIDs here as bare ones no longer, and
// TestScanMatchesReference fails.

import (
	"sort"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/fhirimaging/caddy-fhir-imaging/module/dicom"

	"github.com/fhirimaging/caddy-fhir-imaging/module/internal/jsontext"
)

// refDocument is a scanned FHIR JSON body: the ImagingStudy resources it holds
// and what is needed to resolve their Endpoints.
type refDocument struct {
	body string
	// Studies lists every ImagingStudy found, in document order.
	Studies []*refStudy
	// Endpoints lists every Endpoint resource found, standalone or
	// contained, in document order.
	Endpoints []*refSite
	// byFullURL and byID hold the Endpoint resources found in the document
	// outside of contained lists (Bundle entries, operation outputs).
	byFullURL map[string]*Endpoint
	byID      map[string]*Endpoint
	opts      ScanOptions
}

// refStudy is one ImagingStudy resource of a refDocument.
type refStudy struct {
	// UID is the refStudy refInstance UID without "urn:oid:", or "" when the study
	// has no valid one (then nothing is injected into it).
	UID string
	// Endpoints are the study-level Endpoint references.
	Endpoints []*refRef
	// refSeries lists the study's series in document order.
	Series []*refSeries
}

// refSeries is one ImagingStudy.series element.
type refSeries struct {
	// UID is the refSeries refInstance UID, or "" when it is missing or invalid.
	UID string
	// Endpoints are the series-level Endpoint references.
	Endpoints []*refRef
	// Instances lists the series' instances in document order.
	Instances []*refInstance
	obj       gjson.Result
	ext       gjson.Result // the "extension" member's value, if any
}

// refInstance is one ImagingStudy.series.instance element.
type refInstance struct {
	// UID is the SOP refInstance UID, or "" when it is missing or invalid.
	UID string
	obj gjson.Result
	ext gjson.Result
}

// refSite is an Endpoint resource as it sits in a refDocument.
type refSite struct {
	// Endpoint is what it says.
	Endpoint Endpoint
	// Container is "<Type>/<id>" of the resource that contains it, for a
	// contained Endpoint ("<Type>/" when that resource has no id); "" for
	// a standalone one.
	Container string
	address   gjson.Result // the address member's value
}

// Address returns the Endpoint's address exactly as the document has it.
func (s *refSite) Address() string { return s.address.String() }

// refRef is an Endpoint reference of a study or series. It is resolved either
// from the document (contained resources, Bundle entries) or, when ID is set,
// from a look-up against the FHIR server.
type refRef struct {
	// Local is the Endpoint found in the document, if any.
	Local *Endpoint
	// ID is the Endpoint's logical id when the reference points to the local
	// FHIR server and the Endpoint is not in the document; "" otherwise.
	ID string
}

// Scan parses body and finds every ImagingStudy in it, wherever it sits, and
// every Endpoint that the document itself carries.
func refScan(body []byte, opts ScanOptions) (*refDocument, error) {
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
	d := &refDocument{body: s, byFullURL: map[string]*Endpoint{}, byID: map[string]*Endpoint{}, opts: opts}
	var pending []refPending
	d.walk(root, "", "", nil, &pending)
	for _, p := range pending {
		d.Studies = append(d.Studies, d.study(p.obj, p.scope))
	}
	return d, nil
}

type refPending struct {
	obj   gjson.Result
	scope map[string]*Endpoint
}

// walk visits v looking for resources. fullURL is the Bundle entry fullUrl of
// v when v is an entry's resource; container is "<Type>/<id>" of the
// resource whose contained list v is (or is in); scope holds the contained
// Endpoints visible from v.
func (d *refDocument) walk(v gjson.Result, fullURL, container string, scope map[string]*Endpoint, pending *[]refPending) {
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
			*pending = append(*pending, refPending{obj: v, scope: scope})
			if c := contained; c.IsArray() {
				d.walk(c, "", rt+"/"+v.Get("id").String(), scope, pending)
			}
			return
		case "Endpoint":
			e, _ := parseEndpoint(v)
			d.Endpoints = append(d.Endpoints, &refSite{Endpoint: e, Container: container, address: v.Get("address")})
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
func (d *refDocument) study(v gjson.Result, scope map[string]*Endpoint) *refStudy {
	st := &refStudy{}
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

func (d *refDocument) series(sv gjson.Result, scope map[string]*Endpoint) *refSeries {
	se := &refSeries{obj: sv}
	sv.ForEach(func(k, val gjson.Result) bool {
		switch k.Str {
		case "uid":
			se.UID = refValidUID(val.Str)
		case "endpoint":
			se.Endpoints = d.refs(val, scope)
		case "extension":
			se.ext = val
		case "instance":
			val.ForEach(func(_, iv gjson.Result) bool {
				if !iv.IsObject() {
					return true
				}
				in := &refInstance{obj: iv}
				iv.ForEach(func(k, val gjson.Result) bool {
					switch k.Str {
					case "uid":
						in.UID = refValidUID(val.Str)
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

// refValidUID reads a series or instance uid: bare (R4, R5) or with the
// urn:oid: prefix of STU3's oid type, returned without it.
func refValidUID(s string) string {
	s = dicom.TrimOIDPrefix(strings.TrimSpace(s))
	if dicom.ValidUID(s) {
		return s
	}
	return ""
}

// refs reads a list of References (a single Reference is tolerated).
func (d *refDocument) refs(list gjson.Result, scope map[string]*Endpoint) []*refRef {
	var out []*refRef
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
func (d *refDocument) ref(s string, scope map[string]*Endpoint) *refRef {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil
	}
	if strings.HasPrefix(s, "#") {
		if e, ok := scope[s[1:]]; ok {
			return &refRef{Local: e}
		}
		return nil
	}
	s = stripHistory(s)
	if e, ok := d.byFullURL[s]; ok {
		return &refRef{Local: e}
	}
	base, rt, id := SplitReference(s)
	if rt != "Endpoint" || !ValidID(id) {
		return nil
	}
	if base != "" && !d.isLocalBase(base) {
		return nil
	}
	if e, ok := d.byID[id]; ok {
		return &refRef{Local: e}
	}
	return &refRef{ID: id}
}

func (d *refDocument) isLocalBase(base string) bool {
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
func (d *refDocument) missingEndpoints() []string {
	seen := map[string]bool{}
	var ids []string
	add := func(refs []*refRef) {
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
func (st *refStudy) Effective(se *refSeries, t ConnectionType, fetched map[string]Endpoint) (Endpoint, bool) {
	if e, ok := refPick(se.Endpoints, t, fetched); ok {
		return e, true
	}
	return refPick(st.Endpoints, t, fetched)
}

func refPick(refs []*refRef, t ConnectionType, fetched map[string]Endpoint) (Endpoint, bool) {
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

type refEdit struct {
	start, end int
	text       string
}

// refReaddress decides the address an Endpoint of the document is given; ok
// false leaves it as it is.
type refReaddress func(site *refSite) (address string, ok bool)

// Rewrite is Inject that also gives the document's Endpoints (standalone and
// contained) the addresses that readdress decides, in the same single pass.
// Stats.Endpoints counts them. readdress may be nil.
func (d *refDocument) rewrite(plan refPlanner, readdress refReaddress, ext Extensions) (out []byte, changed bool, stats Stats) {
	var edits []refEdit
	if readdress != nil {
		for _, site := range d.Endpoints {
			if site.address.Type != gjson.String {
				continue
			}
			if a, ok := readdress(site); ok {
				var b strings.Builder
				b.WriteByte('"')
				refWriteEscaped(&b, a)
				b.WriteByte('"')
				edits = append(edits, refEdit{start: site.address.Index, end: site.address.Index + len(site.address.Raw), text: b.String()})
				stats.Endpoints++
			}
		}
	}
	for _, st := range d.Studies {
		if st.UID == "" {
			continue
		}
		for _, se := range st.Series {
			if se.UID == "" {
				continue
			}
			b := plan(st, se)
			if b.WADORS == "" && b.WADOURI == "" {
				continue
			}
			seriesPath := "/studies/" + st.UID + "/series/" + se.UID
			if b.WADORS != "" {
				edits = refAppendExtensions(edits, se.obj, se.ext, []refExtension{{ext.WADORS, b.WADORS + seriesPath}})
				stats.Series++
			}
			for _, in := range se.Instances {
				if in.UID == "" {
					continue
				}
				var add []refExtension
				if b.WADORS != "" {
					add = append(add, refExtension{ext.WADORS, b.WADORS + seriesPath + "/instances/" + in.UID})
				}
				if b.WADOURI != "" {
					add = append(add, refExtension{ext.WADOURI, b.WADOURI + "?requestType=WADO&studyUID=" + st.UID +
						"&seriesUID=" + se.UID + "&objectUID=" + in.UID + "&contentType=application/dicom"})
				}
				edits = refAppendExtensions(edits, in.obj, in.ext, add)
				stats.Instances += len(add)
			}
		}
	}
	if len(edits) == 0 {
		return []byte(d.body), false, stats
	}
	sort.Slice(edits, func(i, j int) bool { return edits[i].start < edits[j].start })
	n := len(d.body)
	for _, e := range edits {
		n += len(e.text) - (e.end - e.start)
	}
	buf := make([]byte, 0, n)
	pos := 0
	for _, e := range edits {
		buf = append(buf, d.body[pos:e.start]...)
		buf = append(buf, e.text...)
		pos = e.end
	}
	buf = append(buf, d.body[pos:]...)
	for _, e := range edits {
		if e.text != d.body[e.start:e.end] {
			changed = true
			break
		}
	}
	return buf, changed, stats
}

type refExtension struct{ url, value string }

func (x refExtension) json() string {
	var b strings.Builder
	b.Grow(len(x.url) + len(x.value) + 28)
	b.WriteString(`{"url":"`)
	refWriteEscaped(&b, x.url)
	b.WriteString(`","valueUrl":"`)
	refWriteEscaped(&b, x.value)
	b.WriteString(`"}`)
	return b.String()
}

// refWriteEscaped writes s escaped for a JSON string, by jsontext's rules,
// copying it as it is in the usual case where nothing needs escaping.
func refWriteEscaped(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' {
			b.Write(jsontext.AppendEscaped(nil, s))
			return
		}
	}
	b.WriteString(s)
}

// refAppendExtensions adds the edits that put exts into the extension array of
// the JSON object obj, whose "extension" member (if any) is arr.
func refAppendExtensions(edits []refEdit, obj, arr gjson.Result, exts []refExtension) []refEdit {
	if len(exts) == 0 {
		return edits
	}
	if arr.Exists() && !arr.IsArray() {
		return edits // not FHIR; adding a second "extension" key would make it worse
	}
	if !arr.IsArray() {
		// No extension array yet: open one as the object's first member,
		// where FHIR JSON conventionally has it.
		var b strings.Builder
		b.WriteString(`"extension":[`)
		for i, x := range exts {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(x.json())
		}
		b.WriteByte(']')
		if strings.TrimSpace(obj.Raw[1:len(obj.Raw)-1]) != "" {
			b.WriteByte(',')
		}
		at := obj.Index + 1
		return append(edits, refEdit{start: at, end: at, text: b.String()})
	}
	type elem struct {
		start, end int
		url        string
	}
	var elems []elem
	arr.ForEach(func(_, e gjson.Result) bool {
		elems = append(elems, elem{e.Index, e.Index + len(e.Raw), e.Get("url").String()})
		return true
	})
	var appendText strings.Builder
	for _, x := range exts {
		first := true
		for i, el := range elems {
			if el.url != x.url {
				continue
			}
			if first {
				edits = append(edits, refEdit{start: el.start, end: el.end, text: x.json()})
				first = false
				continue
			}
			// A further copy: remove it together with the comma before it.
			edits = append(edits, refEdit{start: elems[i-1].end, end: el.end})
		}
		if first {
			if len(elems) > 0 || appendText.Len() > 0 {
				appendText.WriteByte(',')
			}
			appendText.WriteString(x.json())
		}
	}
	if appendText.Len() > 0 {
		closing := arr.Index + len(arr.Raw) - 1 // the ']'
		at := closing
		if len(elems) > 0 {
			at = elems[len(elems)-1].end
		}
		edits = append(edits, refEdit{start: at, end: at, text: appendText.String()})
	}
	return edits
}

// refPlanner is Planner for the reference's types.
type refPlanner func(st *refStudy, se *refSeries) Bases
