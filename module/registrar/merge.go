package registrar

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/fhirimaging/caddy-fhir-imaging/module/dicom"
)

// Code systems of an R4 ImagingStudy.
const (
	UIDSystem      = "urn:dicom:uid"
	DCMSystem      = "http://dicom.nema.org/resources/ontology/DCM"
	SOPClassSystem = "urn:ietf:rfc:3986"
)

// resource is a FHIR resource decoded for editing: numbers stay as they
// were written (json.Number).
type resource = map[string]any

// decode reads a resource, keeping its numbers as they are.
func decode(body []byte) (resource, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var r resource
	if err := dec.Decode(&r); err != nil {
		return nil, err
	}
	return r, nil
}

// Merge brings an ImagingStudy up to date with what the archive says about
// the study: existing is the stored resource (nil for a new one). It adds
// what is missing and never removes anything: the identifier
// (urn:dicom:uid, urn:oid:<uid>), status (available) and subject when it
// has none, started, the study's modalities, each series (uid, number,
// modality, description) with its instances (uid, sopClass, number) it does
// not list yet, and the counts, which are those of the series and instances
// it then lists. endpoint ("Endpoint/<id>") is put on the study when it has
// no endpoint yet (or already this one), else on each series of this
// archive that lacks it, so that series of other archives keep theirs.
// It returns the resource to write and whether it differs from existing.
func Merge(existing []byte, st *Study, subject, endpoint string) ([]byte, bool, error) {
	var r resource
	if existing != nil {
		var err error
		if r, err = decode(existing); err != nil {
			return nil, false, err
		}
	} else {
		r = resource{"resourceType": "ImagingStudy"}
	}
	before, _ := json.Marshal(r)

	if !hasStudyUID(r, st.UID) {
		r["identifier"] = append(list(r["identifier"]), resource{"system": UIDSystem, "value": "urn:oid:" + st.UID})
	}
	setDefault(r, "status", "available")
	if subject != "" {
		setDefault(r, "subject", resource{"reference": subject})
	}
	if s := st.Started(); s != "" {
		setDefault(r, "started", s)
	}
	if st.Description != "" {
		setDefault(r, "description", st.Description)
	}
	studyEndpoint := false
	if endpoint != "" {
		eps := list(r["endpoint"])
		switch {
		case len(eps) == 0:
			r["endpoint"] = []any{resource{"reference": endpoint}}
			studyEndpoint = true
		case hasReference(eps, endpoint):
			studyEndpoint = true
		}
	}

	series := list(r["series"])
	for _, fs := range st.Series {
		se := findByUID(series, fs.UID)
		if se == nil {
			se = resource{"uid": fs.UID}
			series = append(series, se)
		}
		if fs.HasNumber {
			setDefault(se, "number", json.Number(strconv.Itoa(fs.Number)))
		}
		if fs.Modality != "" {
			setDefault(se, "modality", resource{"system": DCMSystem, "code": fs.Modality})
		}
		if fs.Description != "" {
			setDefault(se, "description", fs.Description)
		}
		if endpoint != "" && !studyEndpoint && !hasReference(list(se["endpoint"]), endpoint) {
			se["endpoint"] = append(list(se["endpoint"]), resource{"reference": endpoint})
		}
		instances := list(se["instance"])
		for _, fi := range fs.Instances {
			in := findByUID(instances, fi.UID)
			if in == nil {
				in = resource{"uid": fi.UID}
				instances = append(instances, in)
			}
			if fi.SOPClass != "" {
				setDefault(in, "sopClass", resource{"system": SOPClassSystem, "code": "urn:oid:" + fi.SOPClass})
			}
			if fi.HasNumber {
				setDefault(in, "number", json.Number(strconv.Itoa(fi.Number)))
			}
		}
		se["instance"] = instances
		se["numberOfInstances"] = json.Number(strconv.Itoa(len(instances)))
	}
	if len(series) > 0 {
		r["series"] = series
	}

	// The study's modalities: those it lists, then those of its series.
	modalities := list(r["modality"])
	known := map[string]bool{}
	for _, m := range modalities {
		if c, ok := m.(resource); ok {
			known[str2(c["code"])] = true
		}
	}
	total := 0
	for _, s := range series {
		se, _ := s.(resource)
		if m, ok := se["modality"].(resource); ok {
			if code := str2(m["code"]); code != "" && !known[code] {
				known[code] = true
				modalities = append(modalities, resource{"system": DCMSystem, "code": code})
			}
		}
		total += len(list(se["instance"]))
	}
	if len(modalities) > 0 {
		r["modality"] = modalities
	}
	r["numberOfSeries"] = json.Number(strconv.Itoa(len(series)))
	r["numberOfInstances"] = json.Number(strconv.Itoa(total))

	after, err := json.Marshal(r)
	if err != nil {
		return nil, false, err
	}
	return after, existing == nil || !bytes.Equal(before, after), nil
}

// hasStudyUID reports whether the study has the identifier urn:dicom:uid
// with this UID (with or without urn:oid:).
func hasStudyUID(r resource, uid string) bool {
	for _, v := range list(r["identifier"]) {
		id, _ := v.(resource)
		if str2(id["system"]) == UIDSystem && dicom.TrimOIDPrefix(str2(id["value"])) == uid {
			return true
		}
	}
	return false
}

// hasReference reports whether a list of References has one to ref
// ("Endpoint/<id>"), relative or absolute, with or without a version.
func hasReference(refs []any, ref string) bool {
	for _, v := range refs {
		r, _ := v.(resource)
		s := str2(r["reference"])
		if i := strings.Index(s, "/_history/"); i >= 0 {
			s = s[:i]
		}
		if s == ref || strings.HasSuffix(s, "/"+ref) {
			return true
		}
	}
	return false
}

// findByUID returns the element of a series or instance list with that
// uid (with or without urn:oid:), or nil.
func findByUID(elems []any, uid string) resource {
	for _, v := range elems {
		if e, ok := v.(resource); ok && dicom.TrimOIDPrefix(str2(e["uid"])) == uid {
			return e
		}
	}
	return nil
}

func setDefault(r resource, key string, v any) {
	if _, ok := r[key]; !ok {
		r[key] = v
	}
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

func str2(v any) string {
	s, _ := v.(string)
	return s
}
