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
	// an R4/STU3 Coding or an R5 list of CodeableConcept.
	Types []ConnectionType
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
	addCoding := func(c gjson.Result) {
		if !connectionTypeSystems[c.Get("system").String()] {
			return
		}
		switch t := ConnectionType(c.Get("code").String()); t {
		case WADORS, WADOURI:
			if !e.Has(t) {
				e.Types = append(e.Types, t)
			}
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
	return e, true
}
