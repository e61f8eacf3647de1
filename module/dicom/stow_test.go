package dicom

import "testing"

func TestParseStoreAnswerJSON(t *testing.T) {
	body := `{
	 "00081190": {"vr": "UR", "Value": ["http://a:8042/dicom-web/studies/1.2.3"]},
	 "00081198": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": ["1.2.3.1.9"]}}]},
	 "00081199": {"vr": "SQ", "Value": [
	  {"00081150": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]}, "00081155": {"vr": "UI", "Value": ["1.2.3.1.1"]},
	   "00081190": {"vr": "UR", "Value": ["http://a:8042/dicom-web/studies/1.2.3/series/1.2.3.1/instances/1.2.3.1.1"]}},
	  {"00081150": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]}, "00081155": {"vr": "UI", "Value": ["1.2.4.1.1"]},
	   "00081190": {"vr": "UR", "Value": ["http://a:8042/dicom-web/studies/1.2.4/series/1.2.4.1/instances/1.2.4.1.1"]}},
	  {"00081155": {"vr": "UI", "Value": ["not a uid"]}},
	  {"00081155": {"vr": "UI", "Value": ["1.2.5.1.1"]}}
	 ]}
	}`
	a, err := ParseStoreAnswer("application/dicom+json; charset=utf-8", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if a.Failed != 1 || len(a.Stored) != 3 {
		t.Fatalf("failed %d, stored %+v", a.Failed, a.Stored)
	}
	if s := a.Stored[0]; s.Study != "1.2.3" || s.Series != "1.2.3.1" || s.SOPClass != "1.2.840.10008.5.1.4.1.1.2" {
		t.Fatalf("first item %+v", s)
	}
	if s := a.Stored[2]; s.Study != "" || s.SOPInstance != "1.2.5.1.1" {
		t.Fatalf("item without URL %+v", s)
	}
	if got := a.Studies(); len(got) != 2 || got[0] != "1.2.3" || got[1] != "1.2.4" {
		t.Fatalf("studies %v", got)
	}
}

func TestParseStoreAnswerXML(t *testing.T) {
	body := `<?xml version="1.0" encoding="UTF-8"?>
<NativeDicomModel xmlns="http://dicom.nema.org/PS3.19/models/NativeDICOM">
 <DicomAttribute tag="00081190" vr="UR"><Value number="1">http://a/dicom-web/studies/1.2.3</Value></DicomAttribute>
 <DicomAttribute tag="00081199" vr="SQ">
  <Item number="1">
   <DicomAttribute tag="00081150" vr="UI"><Value number="1">1.2.840.10008.5.1.4.1.1.2</Value></DicomAttribute>
   <DicomAttribute tag="00081155" vr="UI"><Value number="1">1.2.3.1.1</Value></DicomAttribute>
   <DicomAttribute tag="00081190" vr="UR"><Value number="1">http://a/dicom-web/studies/1.2.3/series/1.2.3.1/instances/1.2.3.1.1</Value></DicomAttribute>
  </Item>
 </DicomAttribute>
</NativeDicomModel>`
	a, err := ParseStoreAnswer("application/dicom+xml", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Stored) != 1 || a.Stored[0].Series != "1.2.3.1" || a.Stored[0].SOPInstance != "1.2.3.1.1" || a.Study != "1.2.3" {
		t.Fatalf("%+v", a)
	}
}

func TestParseStoreAnswerRefuses(t *testing.T) {
	for _, c := range []struct{ ct, body string }{
		{"text/plain", "{}"},
		{"application/dicom+json", "{"},
		{"application/dicom+json", `"x"`},
		{"application/dicom+xml", "<Other/>"},
		{"application/dicom+xml", "<NativeDicomModel>"},
	} {
		if _, err := ParseStoreAnswer(c.ct, []byte(c.body)); err == nil {
			t.Errorf("%s %q: no error", c.ct, c.body)
		}
	}
}
