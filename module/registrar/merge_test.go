package registrar

import (
	"encoding/json"
	"testing"

	"github.com/tidwall/gjson"
)

const ct = "1.2.840.10008.5.1.4.1.1.2"

func datasets(t *testing.T, js string) []gjson.Result {
	t.Helper()
	if !gjson.Valid(js) {
		t.Fatalf("invalid JSON: %s", js)
	}
	return gjson.Parse(js).Array()
}

func ds(series, sop string, seriesNo, instNo int, modality string) string {
	b, _ := json.Marshal(map[string]any{
		"0020000D": map[string]any{"vr": "UI", "Value": []string{"1.2.3"}},
		"0020000E": map[string]any{"vr": "UI", "Value": []string{series}},
		"00080018": map[string]any{"vr": "UI", "Value": []string{sop}},
		"00080016": map[string]any{"vr": "UI", "Value": []string{ct}},
		"00080020": map[string]any{"vr": "DA", "Value": []string{"20240601"}},
		"00080030": map[string]any{"vr": "TM", "Value": []string{"093000.123"}},
		"00100020": map[string]any{"vr": "LO", "Value": []string{"pat-1"}},
		"00100010": map[string]any{"vr": "PN", "Value": []any{map[string]string{"Alphabetic": "Doe^Jane"}}},
		"00080060": map[string]any{"vr": "CS", "Value": []string{modality}},
		"00200011": map[string]any{"vr": "IS", "Value": []int{seriesNo}},
		"00200013": map[string]any{"vr": "IS", "Value": []int{instNo}},
	})
	return string(b)
}

func TestFromDatasets(t *testing.T) {
	js := "[" + ds("1.2.3.2", "1.2.3.2.1", 2, 1, "MR") + "," + ds("1.2.3.1", "1.2.3.1.2", 1, 2, "CT") + "," +
		ds("1.2.3.1", "1.2.3.1.1", 1, 1, "CT") + "," + ds("1.2.3.1", "1.2.3.1.1", 1, 1, "CT") + "," +
		ds("bad uid", "1.2.3.9.1", 9, 1, "CT") + `,{"0020000D":{"vr":"UI","Value":["9.9"]},"0020000E":{"vr":"UI","Value":["9.9.1"]},"00080018":{"vr":"UI","Value":["9.9.1.1"]}}]`
	st := FromDatasets("1.2.3", datasets(t, js))
	if st.PatientID != "pat-1" || st.Patient.Name != "Doe^Jane" || st.Started() != "2024-06-01" {
		t.Fatalf("study facts %+v started %q", st, st.Started())
	}
	if len(st.Series) != 2 || st.Series[0].UID != "1.2.3.1" || st.Series[1].Modality != "MR" {
		t.Fatalf("series %+v", st.Series)
	}
	if in := st.Series[0].Instances; len(in) != 2 || in[0].UID != "1.2.3.1.1" || in[1].Number != 2 {
		t.Fatalf("instances %+v", in)
	}
	if st.Instances() != 3 {
		t.Fatalf("instances %d", st.Instances())
	}
	st.TZOffset = "+0100"
	if got := st.Started(); got != "2024-06-01T09:30:00+01:00" {
		t.Fatalf("started with a timezone: %q", got)
	}
}

func TestMergeNewThenIdempotent(t *testing.T) {
	st := FromDatasets("1.2.3", datasets(t, "["+ds("1.2.3.1", "1.2.3.1.1", 1, 1, "CT")+"]"))
	body, changed, err := Merge(nil, st, "Patient/p1", "Endpoint/e1")
	if err != nil || !changed {
		t.Fatalf("changed %v err %v", changed, err)
	}
	r := gjson.ParseBytes(body)
	for path, want := range map[string]string{
		"resourceType":                 "ImagingStudy",
		"identifier.0.system":          "urn:dicom:uid",
		"identifier.0.value":           "urn:oid:1.2.3",
		"status":                       "available",
		"subject.reference":            "Patient/p1",
		"started":                      "2024-06-01",
		"endpoint.0.reference":         "Endpoint/e1",
		"modality.0.code":              "CT",
		"numberOfSeries":               "1",
		"numberOfInstances":            "1",
		"series.0.uid":                 "1.2.3.1",
		"series.0.number":              "1",
		"series.0.modality.system":     DCMSystem,
		"series.0.numberOfInstances":   "1",
		"series.0.instance.0.uid":      "1.2.3.1.1",
		"series.0.instance.0.number":   "1",
		"series.0.instance.0.sopClass": `{"code":"urn:oid:` + ct + `","system":"urn:ietf:rfc:3986"}`,
	} {
		if got := r.Get(path).Raw; got != want && r.Get(path).String() != want {
			t.Errorf("%s = %s, want %s", path, got, want)
		}
	}
	if r.Get("series.0.endpoint").Exists() {
		t.Errorf("the study-level endpoint is repeated on the series")
	}
	// The stored form (the server adds meta, keeps the rest): nothing changes.
	stored := `{"resourceType":"ImagingStudy","id":"s1","meta":{"versionId":"3"},` + string(body[len(`{`):])
	if _, changed, err := Merge([]byte(stored), st, "Patient/other", "Endpoint/e1"); err != nil || changed {
		t.Fatalf("merging the same facts again changed it (%v, %v)", changed, err)
	}
}

func TestMergeAddsInstancesKeepsTheRest(t *testing.T) {
	stored := `{"resourceType":"ImagingStudy","id":"s1","meta":{"versionId":"3"},"status":"available",
	 "identifier":[{"system":"urn:dicom:uid","value":"1.2.3"}],"subject":{"reference":"Patient/p0"},
	 "endpoint":[{"reference":"Endpoint/other"}],"numberOfSeries":2,"numberOfInstances":2,
	 "series":[{"uid":"urn:oid:1.2.3.1","number":1,"modality":{"system":"` + DCMSystem + `","code":"CT"},"description":"kept",
	   "instance":[{"uid":"1.2.3.1.1","number":1}]},
	  {"uid":"1.2.3.5","number":5,"modality":{"system":"` + DCMSystem + `","code":"SR"},"endpoint":[{"reference":"Endpoint/b"}],
	   "instance":[{"uid":"1.2.3.5.1"}]}],
	 "note":[{"text":"a note, 1.50"}],"extension":[{"url":"x","valueDecimal":1.50}]}`
	st := FromDatasets("1.2.3", datasets(t, "["+ds("1.2.3.1", "1.2.3.1.1", 1, 1, "CT")+","+ds("1.2.3.1", "1.2.3.1.2", 1, 2, "CT")+"]"))
	body, changed, err := Merge([]byte(stored), st, "Patient/p1", "Endpoint/e1")
	if err != nil || !changed {
		t.Fatalf("changed %v err %v", changed, err)
	}
	r := gjson.ParseBytes(body)
	checks := map[string]string{
		"identifier.#":                  "1",
		"subject.reference":             "Patient/p0",
		"endpoint.#":                    "1",
		"series.0.endpoint.0.reference": "Endpoint/e1",
		"series.1.endpoint.0.reference": "Endpoint/b",
		"series.1.endpoint.#":           "1",
		"series.0.description":          "kept",
		"series.0.instance.#":           "2",
		"series.0.instance.1.uid":       "1.2.3.1.2",
		"series.0.numberOfInstances":    "2",
		"numberOfSeries":                "2",
		"numberOfInstances":             "3",
		"modality.#":                    "2",
		"extension.0.valueDecimal":      "1.50",
	}
	for path, want := range checks {
		if got := r.Get(path).Raw; got != want && r.Get(path).String() != want {
			t.Errorf("%s = %s, want %s", path, got, want)
		}
	}
}

func TestNumberedBefore(t *testing.T) {
	for _, tt := range []struct {
		aHas bool
		aNum int
		aUID string
		bHas bool
		bNum int
		bUID string
		want bool
	}{
		{true, 1, "9", true, 2, "1", true},   // by number first
		{true, 2, "1", true, 1, "9", false},  //
		{true, 5, "9", false, 0, "1", true},  // numbered before unnumbered
		{false, 0, "1", true, 5, "9", false}, //
		{true, 3, "1.2", true, 3, "1.3", true},
		{false, 0, "1.3", false, 0, "1.2", false}, // then by UID
	} {
		if got := numberedBefore(tt.aHas, tt.aNum, tt.aUID, tt.bHas, tt.bNum, tt.bUID); got != tt.want {
			t.Errorf("numberedBefore(%v %d %q, %v %d %q) = %v", tt.aHas, tt.aNum, tt.aUID, tt.bHas, tt.bNum, tt.bUID, got)
		}
	}
}
