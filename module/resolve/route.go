package resolve

import (
	"slices"
	"sort"

	"github.com/fhirimaging/caddy-fhir-imaging/module/fhirjson"
)

// This file is routing: given what the FHIR server says about a study, which
// archive serves a request for it, and why. The DICOMweb and WADO-URI
// handlers and the admin API's explain route all decide here, so explain
// tells exactly what routing does.

// Placement names the archives that serve one series (or, for a study's
// default, the series an ImagingStudy does not list), per connection type.
// An empty name means no configured archive. When the effective Endpoints
// of a type map to several configured archives (the same data held twice:
// replicas), the first is the archive asked and the others are tried in
// order when it cannot answer.
type Placement struct {
	// WADORS is the archive of the effective WADO-RS Endpoint.
	WADORS string `json:"wado_rs,omitempty"`
	// WADOURI is the archive of the effective WADO-URI Endpoint.
	WADOURI string `json:"wado_uri,omitempty"`
	// WADORSReplicas are the archives of the further effective WADO-RS
	// Endpoints, in the order they are listed.
	WADORSReplicas []string `json:"wado_rs_replicas,omitempty"`
	// WADOURIReplicas are the archives of the further effective WADO-URI
	// Endpoints, in the order they are listed.
	WADOURIReplicas []string `json:"wado_uri_replicas,omitempty"`
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
// for connection type t, replicas included, sorted.
func (s *Study) Archives(t fhirjson.ConnectionType) []string {
	seen := map[string]bool{}
	add := func(p Placement) {
		for _, n := range p.order(t) {
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

// order returns the archives of connection type t, the first one first.
func (p Placement) order(t fhirjson.ConnectionType) []string {
	first, rest := p.WADORS, p.WADORSReplicas
	if t == fhirjson.WADOURI {
		first, rest = p.WADOURI, p.WADOURIReplicas
	}
	if first == "" {
		return nil
	}
	return append([]string{first}, rest...)
}

// set sets the archives of connection type t, the first one first.
func (p *Placement) set(t fhirjson.ConnectionType, names []string) {
	first, rest := "", []string(nil)
	if len(names) > 0 {
		first, rest = names[0], names[1:]
	}
	if len(rest) == 0 {
		rest = nil
	}
	if t == fhirjson.WADOURI {
		p.WADOURI, p.WADOURIReplicas = first, rest
	} else {
		p.WADORS, p.WADORSReplicas = first, rest
	}
}

// empty reports whether the placement names no archive at all.
func (p Placement) empty() bool { return p.WADORS == "" && p.WADOURI == "" }

// Order returns the archives to ask for connection type t about the given
// series, or about the whole study when series is "", in the order they are
// tried: the first one, then its replicas. For a series it is the series'
// own placement, else the study default. For the whole study it is the
// archives that hold every series (by the study default's order, else the
// archive that is first for most series first); when no archive holds them
// all, the study is spread over several archives (see Spread) and Order
// names the one archive ArchiveFor chooses.
func (s *Study) Order(t fhirjson.ConnectionType, series string) []string {
	if series != "" {
		if p, ok := s.Series[series]; ok && p.of(t) != "" {
			return p.order(t)
		}
		return s.Default.order(t)
	}
	if common := s.common(t); len(common) > 0 {
		return common
	}
	if n := s.ArchiveFor(t, ""); n != "" {
		return []string{n}
	}
	return nil
}

// lists returns the archive orders of the study default and of every
// listed series (by UID), those that name any archive.
func (s *Study) lists(t fhirjson.ConnectionType) [][]string {
	var out [][]string
	if o := s.Default.order(t); len(o) > 0 {
		out = append(out, o)
	}
	uids := make([]string, 0, len(s.Series))
	for uid := range s.Series {
		uids = append(uids, uid)
	}
	sort.Strings(uids)
	for _, uid := range uids {
		if o := s.Series[uid].order(t); len(o) > 0 {
			out = append(out, o)
		}
	}
	return out
}

// common returns the archives that hold every series of the study (each
// one a replica of the others for a study-level request), best first.
func (s *Study) common(t fhirjson.ConnectionType) []string {
	lists := s.lists(t)
	if len(lists) == 0 {
		return nil
	}
	in := map[string]int{}
	first := map[string]int{}
	for _, l := range lists {
		first[l[0]]++
		seen := map[string]bool{}
		for _, n := range l {
			if !seen[n] {
				seen[n] = true
				in[n]++
			}
		}
	}
	var out []string
	if d := s.Default.order(t); len(d) > 0 {
		for _, n := range d {
			if in[n] == len(lists) {
				out = append(out, n)
			}
		}
		return out
	}
	for n, c := range in {
		if c == len(lists) {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if first[out[i]] != first[out[j]] {
			return first[out[i]] > first[out[j]]
		}
		return out[i] < out[j]
	})
	return out
}

// Spread returns, for a study whose series are spread over several
// archives, the archives whose answers together make a study-level answer,
// sorted by name: as few as cover every series (replicas of a series are
// not asked twice). It returns nil when one archive (with its replicas)
// holds the whole study.
func (s *Study) Spread(t fhirjson.ConnectionType) []string {
	if len(s.common(t)) > 0 {
		return nil
	}
	lists := s.lists(t)
	first := map[string]int{}
	for _, l := range lists {
		first[l[0]]++
	}
	var chosen []string
	for len(lists) > 0 {
		count := map[string]int{}
		for _, l := range lists {
			for _, n := range l {
				count[n]++
			}
		}
		best := ""
		for n, c := range count {
			if best == "" || c > count[best] ||
				c == count[best] && (first[n] > first[best] || first[n] == first[best] && n < best) {
				best = n
			}
		}
		chosen = append(chosen, best)
		left := lists[:0]
		for _, l := range lists {
			if !slices.Contains(l, best) {
				left = append(left, l)
			}
		}
		lists = left
	}
	if len(chosen) < 2 {
		return nil
	}
	sort.Strings(chosen)
	return chosen
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
	names, why := DecideOrder(loc, series, t, defaultArchive)
	if len(names) == 0 {
		return "", why
	}
	return names[0], why
}

// DecideOrder is Decide with the replicas: the archives that serve
// connection type t for the series (or the study), in the order they are
// tried. A request goes to the first; a GET or HEAD that it cannot answer
// (no connection, or a 5xx status) goes to the next.
func DecideOrder(loc *Study, series string, t fhirjson.ConnectionType, defaultArchive string) (names []string, why string) {
	if loc.Known {
		names = loc.Order(t, series)
		if len(names) == 0 && t == fhirjson.WADOURI {
			// No WADO-URI Endpoint: the archives that serve WADO-RS for
			// the series are the ones that hold it.
			names = loc.Order(fhirjson.WADORS, series)
		}
	}
	replicas := ""
	if len(names) > 1 {
		replicas = "; replicas are tried in this order when an archive cannot be reached or answers 5xx"
	}
	switch {
	case len(names) > 0 && series == "":
		return names, "study-level requests go to the study's Endpoint archive; a study split over several archives is merged" + replicas
	case len(names) > 0:
		if _, listed := loc.Series[series]; listed {
			return names, "the series' effective Endpoints (its own, else the study's) map to this archive" + replicas
		}
		return names, "no ImagingStudy lists this series; the study-level Endpoints apply" + replicas
	case defaultArchive != "" && !loc.Known:
		return []string{defaultArchive}, "the FHIR server knows no ImagingStudy for this study; default_archive is used"
	case defaultArchive != "":
		return []string{defaultArchive}, "no active Endpoint of the study maps to a configured archive; default_archive is used"
	case !loc.Known:
		return nil, "the FHIR server knows no ImagingStudy for this study"
	}
	return nil, "no active Endpoint of the study maps to a configured archive"
}
