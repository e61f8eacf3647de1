// Package fhirjson finds ImagingStudy and Endpoint resources in any FHIR JSON
// document (a single resource, a Bundle of any type, contained resources,
// operation outputs) and injects resolved WADO-RS and WADO-URI URLs into it in
// a single pass, leaving every other byte of the document as it was.
//
// The package is pure: it knows nothing of HTTP servers or Caddy, so it can be
// tested and fuzzed on its own.
package fhirjson

import (
	"strings"

	"github.com/tidwall/gjson"
)

// ConnectionType is the code of an Endpoint connection type that the gateway
// understands.
type ConnectionType string

// The connection types of the imaging Endpoints (code system
// http://terminology.hl7.org/CodeSystem/endpoint-connection-type).
const (
	WADORS  ConnectionType = "dicom-wado-rs"
	WADOURI ConnectionType = "dicom-wado-uri"
)

// connectionTypeSystems are the code systems under which the connection type
// codes are recognised. A coding without a system is accepted too, since the
// codes are unambiguous in practice.
var connectionTypeSystems = map[string]bool{
	"": true,
	"http://terminology.hl7.org/CodeSystem/endpoint-connection-type": true,
	"http://hl7.org/fhir/endpoint-connection-type":                   true, // STU3
}

// Endpoint is the part of a FHIR Endpoint resource that the gateway uses.
type Endpoint struct {
	// ID is the logical id of the resource (empty for an anonymous one).
	ID string
	// Status is Endpoint.status as written (active, suspended, error, off,
	// entered-in-error, test).
	Status string
	// Address is Endpoint.address with surrounding spaces and a trailing
	// slash removed.
	Address string
	// Types lists the recognised connection type codes of the Endpoint, from
	// an R4/STU3 Coding or an R5 list of CodeableConcept. An Endpoint with
	// no connection type of the standard code system (none at all, or only
	// local codes) whose payload MIME types (R4 payloadMimeType, R5
	// payload.mimeType) include a DICOM one is taken for a WADO-RS
	// Endpoint (see dicomPayload).
	Types []ConnectionType
}

// DICOMwebRoot returns the root that an Endpoint address names, the base
// below which /studies/... is found: the address without its query and
// fragment, without a trailing slash, and without a trailing /studies
// segment (some Endpoints name the studies resource rather than the
// root). query reports whether the address had a query or a fragment,
// which the gateway never sends anywhere.
func DICOMwebRoot(address string) (root string, query bool) {
	root = strings.TrimSpace(address)
	if i := strings.IndexAny(root, "?#"); i >= 0 {
		root, query = root[:i], true
	}
	root = strings.TrimRight(root, "/")
	if i := strings.Index(root, "://"); i >= 0 {
		if p := strings.LastIndexByte(root, '/'); p > i+2 && root[p:] == "/studies" {
			root = strings.TrimRight(root[:p], "/")
		}
	}
	return root, query
}

// ArchiveKey returns the form in which an Endpoint address is compared with
// the addresses of the configured archives: its DICOMweb root
// (DICOMwebRoot), normalised (NormalizeBase). An address with a query or
// fragment is compared without it.
func ArchiveKey(address string) string {
	root, _ := DICOMwebRoot(address)
	return NormalizeBase(root)
}

// dicomPayload reports whether a payload MIME type (parameters and letter
// case aside) is one that only a DICOM web service serves: DICOM
// (application/dicom), DICOM JSON or XML, or multipart/related of DICOM.
func dicomPayload(mt string) bool {
	mt = strings.ToLower(mt)
	base, params, _ := strings.Cut(mt, ";")
	switch strings.TrimSpace(base) {
	case "application/dicom", "application/dicom+json", "application/dicom+xml":
		return true
	case "multipart/related":
		for _, p := range strings.Split(params, ";") {
			k, v, _ := strings.Cut(p, "=")
			if strings.TrimSpace(k) == "type" && strings.HasPrefix(strings.Trim(strings.TrimSpace(v), `"`), "application/dicom") {
				return true
			}
		}
	}
	return false
}

// Active reports whether the Endpoint may be used at all.
func (e Endpoint) Active() bool { return e.Status == "active" }

// Has reports whether the Endpoint offers the connection type t.
func (e Endpoint) Has(t ConnectionType) bool {
	for _, x := range e.Types {
		if x == t {
			return true
		}
	}
	return false
}

// ParseEndpoint reads an Endpoint resource from its JSON. It returns false if
// the JSON is not an Endpoint resource.
func ParseEndpoint(raw string) (Endpoint, bool) {
	return parseEndpoint(gjson.Parse(raw))
}

func parseEndpoint(r gjson.Result) (Endpoint, bool) {
	if !r.IsObject() || r.Get("resourceType").String() != "Endpoint" {
		return Endpoint{}, false
	}
	e := Endpoint{
		ID:      r.Get("id").String(),
		Status:  r.Get("status").String(),
		Address: strings.TrimRight(strings.TrimSpace(r.Get("address").String()), "/"),
	}
	ct := r.Get("connectionType")
	otherType := false // a connection type of the standard code system that is not DICOM
	addCoding := func(c gjson.Result) {
		if !connectionTypeSystems[c.Get("system").String()] {
			return
		}
		switch t := ConnectionType(c.Get("code").String()); t {
		case WADORS, WADOURI:
			if !e.Has(t) {
				e.Types = append(e.Types, t)
			}
		case "":
		default:
			otherType = true
		}
	}
	switch {
	case ct.IsArray(): // R5: list of CodeableConcept
		ct.ForEach(func(_, cc gjson.Result) bool {
			cc.Get("coding").ForEach(func(_, c gjson.Result) bool {
				addCoding(c)
				return true
			})
			return true
		})
	case ct.IsObject(): // R4, STU3: a Coding (a CodeableConcept is tolerated)
		if ct.Get("coding").Exists() {
			ct.Get("coding").ForEach(func(_, c gjson.Result) bool {
				addCoding(c)
				return true
			})
		} else {
			addCoding(ct)
		}
	}
	if len(e.Types) == 0 && !otherType {
		// No connection type of the standard code system (none at all, or
		// local codes only): DICOM payloads (R4 payloadMimeType, R5
		// payload.mimeType) make it a DICOMweb (WADO-RS) Endpoint.
		// WADO-URI, a legacy service, must be named by its connection
		// type.
		dicom := false
		r.Get("payloadMimeType").ForEach(func(_, m gjson.Result) bool {
			dicom = dicomPayload(m.String())
			return !dicom
		})
		r.Get("payload").ForEach(func(_, p gjson.Result) bool {
			p.Get("mimeType").ForEach(func(_, m gjson.Result) bool {
				dicom = dicom || dicomPayload(m.String())
				return !dicom
			})
			return !dicom
		})
		if dicom {
			e.Types = []ConnectionType{WADORS}
		}
	}
	return e, true
}
