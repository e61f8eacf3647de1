package fhirjson

import (
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// rewriteLevels scans and rewrites body with the given levels, the FHIR
// server's Endpoints looked up from server.
func rewriteLevels(t *testing.T, body []byte, levels Levels) ([]byte, Stats) {
	t.Helper()
	d, err := Scan(body, opts)
	if err != nil {
		t.Fatal(err)
	}
	fetched := map[string]Endpoint{}
	for _, id := range d.MissingEndpoints() {
		if e, ok := server[id]; ok {
			fetched[id] = e
		}
	}
	out, _, st := d.AppendRewrite(nil, planner(fetched), nil, Options{Ext: ext, Levels: levels})
	return out, st
}

// studyLinks returns the WADO-RS extensions of each ImagingStudy itself,
// as "<id>=<url>".
func studyLinks(out []byte) []string {
	var got []string
	var visit func(v gjson.Result)
	visit = func(v gjson.Result) {
		if !v.IsObject() && !v.IsArray() {
			return
		}
		if v.Get("resourceType").String() == "ImagingStudy" {
			v.Get("extension").ForEach(func(_, x gjson.Result) bool {
				if x.Get("url").String() == ext.WADORS {
					got = append(got, v.Get("id").String()+"="+x.Get("valueUrl").String())
				}
				return true
			})
		}
		v.ForEach(func(_, e gjson.Result) bool { visit(e); return true })
	}
	visit(gjson.ParseBytes(out))
	return got
}

func TestLevels(t *testing.T) {
	// Study 1 is served by archive A through its Endpoint; study 2 has its
	// series on archives A and B, in direct mode two bases.
	in := []byte(`{"resourceType":"Bundle","type":"searchset","entry":[
{"resource":{"resourceType":"ImagingStudy","id":"one","identifier":[{"system":"urn:dicom:uid","value":"1.2.1"}],"endpoint":[{"reference":"Endpoint/a-rs"}],
 "series":[{"uid":"1.2.1.1","instance":[{"uid":"1.2.1.1.1"},{"uid":"1.2.1.1.2"}]}]}},
{"resource":{"resourceType":"ImagingStudy","id":"split","extension":[{"url":"http://example.org/other","valueString":"kept"}],"identifier":[{"system":"urn:dicom:uid","value":"1.2.2"}],"endpoint":[{"reference":"Endpoint/a-rs"}],
 "series":[{"uid":"1.2.2.1","instance":[{"uid":"1.2.2.1.1"}]},{"uid":"1.2.2.2","endpoint":[{"reference":"Endpoint/b-rs"}],"instance":[{"uid":"1.2.2.2.1"}]}]}}]}`)

	t.Run("default", func(t *testing.T) {
		out, st := rewriteLevels(t, in, 0)
		if st.Studies != 0 || st.Series != 3 || st.Instances != 4 {
			t.Errorf("stats %+v, want 0 studies, 3 series, 4 instance URLs", st)
		}
		if got := studyLinks(out); len(got) != 0 {
			t.Errorf("study URLs by default: %v", got)
		}
	})

	t.Run("study series", func(t *testing.T) {
		out, st := rewriteLevels(t, in, LevelStudy|LevelSeries)
		checkPreserved(t, in, out)
		if st.Studies != 2 || st.Series != 3 || st.Instances != 0 {
			t.Errorf("stats %+v, want 2 studies, 3 series, no instances", st)
		}
		// In proxy mode both archives are behind the one gateway base, so
		// the split study gets its URL too.
		got := studyLinks(out)
		want := []string{"one=" + gwRS + "/studies/1.2.1", "split=" + gwRS + "/studies/1.2.2"}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("study URLs %v, want %v", got, want)
		}
		if !strings.Contains(string(out), `{"url":"http://example.org/other","valueString":"kept"},{"url":"`+ext.WADORS) {
			t.Errorf("the study's own extension was not kept in front:\n%s", out)
		}
		for _, l := range links(t, out) {
			if strings.Contains(l, "/instances/") || strings.Contains(l, "objectUID") {
				t.Errorf("instance URL injected with levels study series: %s", l)
			}
		}
		again, _ := rewriteLevels(t, out, LevelStudy|LevelSeries)
		if string(again) != string(out) {
			t.Errorf("not idempotent:\n%s\n%s", out, again)
		}
	})

	t.Run("series only, output near the input", func(t *testing.T) {
		big := searchset(100, 3, 50)
		out, st := rewriteLevels(t, big, SeriesOnly)
		if st.Series != 300 || st.Instances != 0 {
			t.Errorf("stats %+v", st)
		}
		full, _ := rewriteLevels(t, big, 0)
		t.Logf("in %d bytes; series only %d; series and instances %d", len(big), len(out), len(full))
		if len(out) > len(big)+len(big)/20 {
			t.Errorf("series only grew the body from %d to %d bytes", len(big), len(out))
		}
	})
}

// TestLevelStudyNeedsOneBase: in direct mode a study whose series live on
// two archives has no single study URL, so it gets none.
func TestLevelStudyNeedsOneBase(t *testing.T) {
	in := []byte(`{"resourceType":"ImagingStudy","id":"split","identifier":[{"system":"urn:dicom:uid","value":"1.2.2"}],"series":[{"uid":"1.2.2.1"},{"uid":"1.2.2.2"}]}`)
	d, err := Scan(in, opts)
	if err != nil {
		t.Fatal(err)
	}
	plan := func(st *Study, se *Series) Bases {
		if se.UID == "1.2.2.1" {
			return Bases{WADORS: archiveA}
		}
		return Bases{WADORS: archiveB}
	}
	out, _, st := d.AppendRewrite(nil, plan, nil, Options{Ext: ext, Levels: LevelStudy | LevelSeries})
	if st.Studies != 0 || st.Series != 2 {
		t.Errorf("stats %+v, want no study URL and 2 series URLs:\n%s", st, out)
	}
}
