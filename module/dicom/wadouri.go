package dicom

import "net/url"

// WADOURI holds the UIDs of a WADO-URI request (PS3.18 section 9 "URI
// Service"). The other query parameters are not interpreted here; a gateway
// forwards the query as it came.
type WADOURI struct {
	// Study is the studyUID parameter.
	Study string
	// Series is the seriesUID parameter.
	Series string
	// Object is the objectUID parameter, the SOP instance UID.
	Object string
}

// ParseWADOURI checks the query of a WADO-URI request and returns its UIDs.
// It requires requestType=WADO (case-sensitive, as in PS3.18) and the
// parameters studyUID, seriesUID and objectUID, each present exactly once and
// a valid DICOM UID (see ValidUID; a "urn:oid:" prefix is refused). A
// parameter given more than once is refused, because the gateway and the
// archive could pick different values. Other parameters are not checked.
//
// Errors are *PathError values: KindMalformed for a missing, repeated or
// wrong parameter, and KindBadUID for an invalid UID.
//
// q is typically the result of url.ParseQuery on the raw query; a caller
// should refuse a query that url.ParseQuery cannot parse rather than use
// URL.Query, which silently drops malformed pairs that the archive might
// still read.
func ParseWADOURI(q url.Values) (WADOURI, error) {
	rt, err := single(q, "requestType")
	if err != nil {
		return WADOURI{}, err
	}
	if rt != "WADO" {
		return WADOURI{}, malformed("the parameter requestType must be \"WADO\", not " + quote(rt))
	}
	var w WADOURI
	for _, p := range [...]struct {
		name  string
		field *string
	}{
		{"studyUID", &w.Study},
		{"seriesUID", &w.Series},
		{"objectUID", &w.Object},
	} {
		v, err := single(q, p.name)
		if err != nil {
			return WADOURI{}, err
		}
		if prob := uidProblem(v); prob != "" {
			return WADOURI{}, &PathError{Kind: KindBadUID,
				Message: "the parameter " + p.name + " " + quote(v) + " is not a valid DICOM UID: it " + prob}
		}
		*p.field = v
	}
	return w, nil
}

// single returns the only value of the query parameter name, or a
// KindMalformed error when it is missing, empty or repeated.
func single(q url.Values, name string) (string, error) {
	vs := q[name]
	switch {
	case len(vs) == 0 || len(vs) == 1 && vs[0] == "":
		return "", malformed("the parameter " + name + " is required")
	case len(vs) > 1:
		return "", malformed("the parameter " + name + " must be given only once")
	}
	return vs[0], nil
}
