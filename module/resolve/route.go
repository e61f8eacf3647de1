package resolve

import (
	"sort"

	"github.com/fhirimaging/caddy-fhir-imaging/module/fhirjson"
)

// This file is routing: given what the FHIR server says about a study, which
// archive serves a request for it, and why. The DICOMweb and WADO-URI
// handlers and the admin API's explain route all decide here, so explain
// tells exactly what routing does.

// Placement names the archives that serve one series (or, for a study's
// default, the series an ImagingStudy does not list), per connection type.
// An empty name means no configured archive.
type Placement struct {
	// WADORS is the archive of the effective WADO-RS Endpoint.
	WADORS string `json:"wado_rs,omitempty"`
	// WADOURI is the archive of the effective WADO-URI Endpoint.
	WADOURI string `json:"wado_uri,omitempty"`
}

// Study is what the FHIR server says about where one DICOM study is.
type Study struct {
	// Known is false when no ImagingStudy has this Study Instance UID.
	Known bool `json:"known"`
	// Default is the placement given by study-level Endpoints, used for
	// series that no ImagingStudy lists.
	Default Placement `json:"default"`
	// Series maps a Series Instance UID to its placement.
	Series map[string]Placement `json:"series,omitempty"`
}

// Archives returns the distinct archives that hold any of the study's series
// for connection type t, sorted.
func (s *Study) Archives(t fhirjson.ConnectionType) []string {
	seen := map[string]bool{}
	add := func(p Placement) {
		if n := p.of(t); n != "" {
			seen[n] = true
		}
	}
	add(s.Default)
	for _, p := range s.Series {
		add(p)
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (p Placement) of(t fhirjson.ConnectionType) string {
	if t == fhirjson.WADOURI {
		return p.WADOURI
	}
	return p.WADORS
}

// ArchiveFor returns the archive to ask for connection type t about the given
// series, or about the whole study when series is "". For a series it is the
// series' own placement, else the study default. For the whole study it is
// the default, else the one archive all series are in; when the series are
// spread over several archives and there is no default, it is the archive
// holding the most series (ties broken by name), since one archive must be
// chosen for a single upstream request.
func (s *Study) ArchiveFor(t fhirjson.ConnectionType, series string) string {
	if series != "" {
		if p, ok := s.Series[series]; ok && p.of(t) != "" {
			return p.of(t)
		}
		return s.Default.of(t)
	}
	if n := s.Default.of(t); n != "" {
		return n
	}
	count := map[string]int{}
	for _, p := range s.Series {
		if n := p.of(t); n != "" {
			count[n]++
		}
	}
	best := ""
	for n, c := range count {
		if best == "" || c > count[best] || c == count[best] && n < best {
			best = n
		}
	}
	return best
}

// Decide names the archive that serves connection type t for the given
// series of a located study (series "" for the study itself), and says why
// in a sentence; defaultArchive, when not "", serves what nothing else
// does. An empty name means the request gets 404, and why is its message.
func Decide(loc *Study, series string, t fhirjson.ConnectionType, defaultArchive string) (name, why string) {
	if loc.Known {
		name = loc.ArchiveFor(t, series)
		if name == "" && t == fhirjson.WADOURI {
			// No WADO-URI Endpoint: the archive that serves WADO-RS for
			// the series is the one that holds it.
			name = loc.ArchiveFor(fhirjson.WADORS, series)
		}
	}
	switch {
	case name != "" && series == "":
		return name, "study-level requests go to the study's Endpoint archive; a study split over several archives is merged"
	case name != "":
		if _, listed := loc.Series[series]; listed {
			return name, "the series' effective Endpoints (its own, else the study's) map to this archive"
		}
		return name, "no ImagingStudy lists this series; the study-level Endpoints apply"
	case defaultArchive != "" && !loc.Known:
		return defaultArchive, "the FHIR server knows no ImagingStudy for this study; default_archive is used"
	case defaultArchive != "":
		return defaultArchive, "no active Endpoint of the study maps to a configured archive; default_archive is used"
	case !loc.Known:
		return "", "the FHIR server knows no ImagingStudy for this study"
	}
	return "", "no active Endpoint of the study maps to a configured archive"
}
