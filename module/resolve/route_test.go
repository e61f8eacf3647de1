package resolve

import (
	"fmt"
	"strings"
	"testing"

	"github.com/fhirimaging/caddy-fhir-imaging/module/fhirjson"
)

func TestArchiveFor(t *testing.T) {
	split := &Study{Known: true, Series: map[string]Placement{
		"1": {WADORS: "b"}, "2": {WADORS: "a"}, "3": {WADORS: "b", WADOURI: "b"}, "4": {},
	}}
	tie := &Study{Known: true, Series: map[string]Placement{"1": {WADORS: "b"}, "2": {WADORS: "a"}}}
	withDefault := &Study{Known: true, Default: Placement{WADORS: "c"}, Series: map[string]Placement{"1": {WADORS: "b"}}}
	for _, tc := range []struct {
		name   string
		loc    *Study
		t      fhirjson.ConnectionType
		series string
		want   string
	}{
		{"a series' own placement", split, fhirjson.WADORS, "2", "a"},
		{"a series without placement falls back to the default (none)", split, fhirjson.WADORS, "4", ""},
		{"an unlisted series: the default", withDefault, fhirjson.WADORS, "9", "c"},
		{"a listed series over the default", withDefault, fhirjson.WADORS, "1", "b"},
		{"the study: its default", withDefault, fhirjson.WADORS, "", "c"},
		{"the study without default: the archive with most series", split, fhirjson.WADORS, "", "b"},
		{"a tie: the first name", tie, fhirjson.WADORS, "", "a"},
		{"WADO-URI of its own", split, fhirjson.WADOURI, "3", "b"},
		{"no WADO-URI placement", split, fhirjson.WADOURI, "2", ""},
	} {
		if got := tc.loc.ArchiveFor(tc.t, tc.series); got != tc.want {
			t.Errorf("%s: ArchiveFor(%s, %q) = %q, want %q", tc.name, tc.t, tc.series, got, tc.want)
		}
	}
	if got := fmt.Sprint(split.Archives(fhirjson.WADORS)); got != "[a b]" {
		t.Errorf("Archives = %s", got)
	}
}

func TestDecide(t *testing.T) {
	known := &Study{Known: true, Default: Placement{WADORS: "a"}, Series: map[string]Placement{"1": {WADORS: "b"}}}
	noEndpoint := &Study{Known: true, Series: map[string]Placement{"1": {}}}
	unknown := &Study{}
	for _, tc := range []struct {
		name            string
		loc             *Study
		series          string
		t               fhirjson.ConnectionType
		defaultArchive  string
		want, whyPrefix string
	}{
		{"the study", known, "", fhirjson.WADORS, "", "a", "study-level requests go to the study's Endpoint archive"},
		{"a listed series", known, "1", fhirjson.WADORS, "", "b", "the series' effective Endpoints"},
		{"an unlisted series", known, "9", fhirjson.WADORS, "", "a", "no ImagingStudy lists this series"},
		{"WADO-URI falls back to the WADO-RS archive", known, "1", fhirjson.WADOURI, "", "b", "the series' effective Endpoints"},
		{"unknown study", unknown, "", fhirjson.WADORS, "", "", "the FHIR server knows no ImagingStudy"},
		{"unknown study, default archive", unknown, "1", fhirjson.WADORS, "z", "z", "the FHIR server knows no ImagingStudy for this study; default_archive"},
		{"no Endpoint maps", noEndpoint, "1", fhirjson.WADORS, "", "", "no active Endpoint of the study maps"},
		{"no Endpoint maps, default archive", noEndpoint, "1", fhirjson.WADORS, "z", "z", "no active Endpoint of the study maps to a configured archive; default_archive"},
	} {
		name, why := Decide(tc.loc, tc.series, tc.t, tc.defaultArchive)
		if name != tc.want || !strings.HasPrefix(why, tc.whyPrefix) {
			t.Errorf("%s: Decide = %q, %q; want %q, %q…", tc.name, name, why, tc.want, tc.whyPrefix)
		}
	}
}

func TestReplicasAndSpread(t *testing.T) {
	rs := func(names ...string) Placement {
		var p Placement
		p.set(fhirjson.WADORS, names)
		return p
	}
	for _, tc := range []struct {
		name        string
		loc         *Study
		studyOrder  string
		seriesOrder map[string]string
		spread      string
	}{
		{"a study held by two archives, study-level Endpoints only",
			&Study{Known: true, Default: rs("a", "b"), Series: map[string]Placement{"1": rs("a", "b"), "2": rs("a", "b")}},
			"[a b]", map[string]string{"1": "[a b]", "9": "[a b]"}, "[]"},
		{"series listing both archives in another order than the study",
			&Study{Known: true, Default: rs("b", "a"), Series: map[string]Placement{"1": rs("a", "b")}},
			"[b a]", map[string]string{"1": "[a b]"}, "[]"},
		{"replicas without a default: the archive first for most series first",
			&Study{Known: true, Series: map[string]Placement{"1": rs("b", "a"), "2": rs("b", "a"), "3": rs("a", "b")}},
			"[b a]", map[string]string{"3": "[a b]"}, "[]"},
		{"a split study whose first series is replicated",
			&Study{Known: true, Series: map[string]Placement{"1": rs("a", "b"), "2": rs("c")}},
			"[a]", map[string]string{"1": "[a b]", "2": "[c]"}, "[a c]"},
		{"overlapping replicas: as few archives as cover every series",
			&Study{Known: true, Series: map[string]Placement{"1": rs("a", "b"), "2": rs("b", "c"), "3": rs("c")}},
			"[a]", nil, "[b c]"},
		{"a plain split",
			&Study{Known: true, Default: rs("a"), Series: map[string]Placement{"1": rs("b")}},
			"[a]", map[string]string{"1": "[b]", "2": "[a]"}, "[a b]"},
	} {
		if got := fmt.Sprint(tc.loc.Order(fhirjson.WADORS, "")); got != tc.studyOrder {
			t.Errorf("%s: study order %s, want %s", tc.name, got, tc.studyOrder)
		}
		for se, want := range tc.seriesOrder {
			if got := fmt.Sprint(tc.loc.Order(fhirjson.WADORS, se)); got != want {
				t.Errorf("%s: series %s order %s, want %s", tc.name, se, got, want)
			}
		}
		if got := fmt.Sprint(tc.loc.Spread(fhirjson.WADORS)); got != tc.spread {
			t.Errorf("%s: spread %s, want %s", tc.name, got, tc.spread)
		}
	}
	names, why := DecideOrder(&Study{Known: true, Default: rs("a", "b")}, "7", fhirjson.WADOURI, "")
	if fmt.Sprint(names) != "[a b]" || !strings.Contains(why, "replicas are tried in this order") {
		t.Errorf("WADO-URI falls back to the WADO-RS replicas: %v, %q", names, why)
	}
}
