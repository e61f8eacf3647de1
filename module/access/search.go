package access

import (
	"net/url"
	"strings"

	"github.com/fhirimaging/caddy-fhir-imaging/module/fhirjson"
)

// SearchKind classifies a FHIR request by whether it searches ImagingStudy.
type SearchKind int

const (
	// NotImagingSearch is any request that does not search ImagingStudy.
	NotImagingSearch SearchKind = iota
	// ImagingSearch is a search of ImagingStudy: ImagingStudy?...,
	// ImagingStudy/_search, or a whole-system search that may return
	// ImagingStudies.
	ImagingSearch
	// CompartmentSearch is Patient/<id>/ImagingStudy (or Patient/<id>/*):
	// the patient is named by the path.
	CompartmentSearch
)

// ClassifySearch looks at a FHIR request path relative to the FHIR base
// (such as "ImagingStudy", "ImagingStudy/_search", "Patient/p1/ImagingStudy"
// or "") and its parameters, and says whether it searches ImagingStudy. For
// a compartment search it also returns the patient id of the path.
// Whole-system searches ([base]?..., [base]/_search) count as ImagingStudy
// searches unless _type names other types only; paging continuations
// (HAPI's [base]?_getpages=...) do not, since the search they continue was
// checked when it was made.
func ClassifySearch(rel string, params url.Values) (SearchKind, string) {
	segs := strings.Split(strings.Trim(rel, "/"), "/")
	if len(segs) == 1 && segs[0] == "" {
		segs = nil
	}
	if n := len(segs); n > 0 && segs[n-1] == "_search" {
		segs = segs[:n-1]
	} else if n == 0 && len(params) == 0 {
		return NotImagingSearch, ""
	}
	switch len(segs) {
	case 0:
		if params.Has("_getpages") {
			return NotImagingSearch, ""
		}
		if types := params["_type"]; len(types) > 0 {
			for _, v := range types {
				for _, t := range strings.Split(v, ",") {
					if strings.TrimSpace(t) == "ImagingStudy" {
						return ImagingSearch, ""
					}
				}
			}
			return NotImagingSearch, ""
		}
		return ImagingSearch, ""
	case 1:
		if segs[0] == "ImagingStudy" {
			return ImagingSearch, ""
		}
	case 3:
		if segs[0] == "Patient" && (segs[2] == "ImagingStudy" || segs[2] == "*") {
			return CompartmentSearch, segs[1]
		}
	}
	return NotImagingSearch, ""
}

// PinsPatient reports whether the parameters of an ImagingStudy search
// restrict it to the given patient, as the SMART Imaging Access guide
// requires of a patient-bound token: at least one of patient,
// patient:Patient, subject:Patient or subject names that patient, and
// every such parameter names that patient only (a comma is an OR, so
// "patient=p1,p2" does not pin p1). A patient is named by its id, by
// Patient/<id>, or by an absolute URL on one of bases; subject needs the
// Patient type, since a bare id there could be a Group's. Other parameters
// only narrow the search further and are not looked at.
func PinsPatient(params url.Values, patient string, bases []string) bool {
	pinned := false
	for name, values := range params {
		var bareID bool
		switch name {
		case "patient", "patient:Patient", "subject:Patient":
			bareID = true
		case "subject":
		default:
			continue
		}
		for _, v := range values {
			for _, one := range strings.Split(v, ",") {
				if !namesPatient(strings.TrimSpace(one), patient, bareID, bases) {
					return false
				}
				pinned = true
			}
		}
	}
	return pinned
}

// namesPatient reports whether a reference search value denotes
// Patient/<patient>.
func namesPatient(v, patient string, bareID bool, bases []string) bool {
	if bareID && v == patient {
		return true
	}
	base, rt, id := fhirjson.SplitReference(v)
	if rt != "Patient" || id != patient || strings.ContainsAny(v, "?#") || strings.Contains(v, "/_history/") {
		return false
	}
	if base == "" {
		return true
	}
	nb := fhirjson.NormalizeBase(base)
	for _, b := range bases {
		if nb == fhirjson.NormalizeBase(b) {
			return true
		}
	}
	return false
}
