package fhirjson

import (
	"sort"
	"strings"

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
	// Series is the number of series that received a WADO-RS link.
	Series int
	// Instances is the number of instance-level links (of either kind).
	Instances int
	// Endpoints is the number of Endpoint addresses given.
	Endpoints int
}

type edit struct {
	start, end int
	text       string
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
// contained) the addresses that readdress decides, in the same single pass.
// Stats.Endpoints counts them. readdress may be nil.
func (d *Document) Rewrite(plan Planner, readdress Readdress, ext Extensions) (out []byte, changed bool, stats Stats) {
	var edits []edit
	if readdress != nil {
		for _, site := range d.Endpoints {
			if site.address.Type != gjson.String {
				continue
			}
			if a, ok := readdress(site); ok {
				var b strings.Builder
				b.WriteByte('"')
				writeEscaped(&b, a)
				b.WriteByte('"')
				edits = append(edits, edit{start: site.address.Index, end: site.address.Index + len(site.address.Raw), text: b.String()})
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
				edits = appendExtensions(edits, se.obj, se.ext, []extension{{ext.WADORS, b.WADORS + seriesPath}})
				stats.Series++
			}
			for _, in := range se.Instances {
				if in.UID == "" {
					continue
				}
				var add []extension
				if b.WADORS != "" {
					add = append(add, extension{ext.WADORS, b.WADORS + seriesPath + "/instances/" + in.UID})
				}
				if b.WADOURI != "" {
					add = append(add, extension{ext.WADOURI, b.WADOURI + "?requestType=WADO&studyUID=" + st.UID +
						"&seriesUID=" + se.UID + "&objectUID=" + in.UID + "&contentType=application/dicom"})
				}
				edits = appendExtensions(edits, in.obj, in.ext, add)
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

type extension struct{ url, value string }

func (x extension) json() string {
	var b strings.Builder
	b.Grow(len(x.url) + len(x.value) + 28)
	b.WriteString(`{"url":"`)
	writeEscaped(&b, x.url)
	b.WriteString(`","valueUrl":"`)
	writeEscaped(&b, x.value)
	b.WriteString(`"}`)
	return b.String()
}

// writeEscaped writes s escaped for a JSON string, by jsontext's rules,
// copying it as it is in the usual case where nothing needs escaping.
func writeEscaped(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' {
			b.Write(jsontext.AppendEscaped(nil, s))
			return
		}
	}
	b.WriteString(s)
}

// appendExtensions adds the edits that put exts into the extension array of
// the JSON object obj, whose "extension" member (if any) is arr.
func appendExtensions(edits []edit, obj, arr gjson.Result, exts []extension) []edit {
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
		return append(edits, edit{start: at, end: at, text: b.String()})
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
				edits = append(edits, edit{start: el.start, end: el.end, text: x.json()})
				first = false
				continue
			}
			// A further copy: remove it together with the comma before it.
			edits = append(edits, edit{start: elems[i-1].end, end: el.end})
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
		edits = append(edits, edit{start: at, end: at, text: appendText.String()})
	}
	return edits
}
