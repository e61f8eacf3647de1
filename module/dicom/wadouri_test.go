package dicom

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestParseWADOURI(t *testing.T) {
	const ok = "requestType=WADO&studyUID=1.2&seriesUID=1.2.3&objectUID=1.2.3.4"
	tests := []struct {
		query string
		want  WADOURI
		kind  ErrorKind // 0: no error
		msg   string
	}{
		{ok, WADOURI{"1.2", "1.2.3", "1.2.3.4"}, 0, ""},
		{ok + "&contentType=application/dicom&transferSyntax=1.2.840.10008.1.2.1", WADOURI{"1.2", "1.2.3", "1.2.3.4"}, 0, ""},
		{"objectUID=3&seriesUID=2&studyUID=1&requestType=WADO&anything=%00", WADOURI{"1", "2", "3"}, 0, ""},
		{"studyUID=1.2&seriesUID=1.2.3&objectUID=1.2.3.4", WADOURI{}, KindMalformed, "requestType is required"},
		{"requestType=&studyUID=1.2&seriesUID=1.2.3&objectUID=1.2.3.4", WADOURI{}, KindMalformed, "requestType is required"},
		{"requestType=wado&studyUID=1.2&seriesUID=1.2.3&objectUID=1.2.3.4", WADOURI{}, KindMalformed, `must be "WADO"`},
		{"requestType=WADO&requestType=WADO&studyUID=1.2&seriesUID=1.2.3&objectUID=1.2.3.4", WADOURI{}, KindMalformed, "only once"},
		{"requestType=WADO&seriesUID=1.2.3&objectUID=1.2.3.4", WADOURI{}, KindMalformed, "studyUID is required"},
		{"requestType=WADO&studyUID=1.2&objectUID=1.2.3.4", WADOURI{}, KindMalformed, "seriesUID is required"},
		{"requestType=WADO&studyUID=1.2&seriesUID=1.2.3", WADOURI{}, KindMalformed, "objectUID is required"},
		{"requestType=WADO&studyUID=&seriesUID=1.2.3&objectUID=1.2.3.4", WADOURI{}, KindMalformed, "studyUID is required"},
		{ok + "&studyUID=1.3", WADOURI{}, KindMalformed, "studyUID must be given only once"},
		{ok + "&objectUID=1.2.3.4", WADOURI{}, KindMalformed, "objectUID must be given only once"},
		{"requestType=WADO&StudyUID=1.2&seriesUID=1.2.3&objectUID=1.2.3.4", WADOURI{}, KindMalformed, "studyUID is required"},
		{"requestType=WADO&studyUID=1.2a&seriesUID=1.2.3&objectUID=1.2.3.4", WADOURI{}, KindBadUID, "studyUID \"1.2a\""},
		{"requestType=WADO&studyUID=urn:oid:1.2&seriesUID=1.2.3&objectUID=1.2.3.4", WADOURI{}, KindBadUID, "studyUID"},
		{"requestType=WADO&studyUID=1.2&seriesUID=1.2.3/../x&objectUID=1.2.3.4", WADOURI{}, KindBadUID, "seriesUID"},
		{"requestType=WADO&studyUID=1.2&seriesUID=1.2.3&objectUID=" + strings.Repeat("1", 65), WADOURI{}, KindBadUID, "longer than 64"},
		{"requestType=WADO&studyUID=1.2&seriesUID=1.2.3&objectUID=1.2%0A", WADOURI{}, KindBadUID, `"1.2\n"`},
	}
	for _, tt := range tests {
		q, err := url.ParseQuery(tt.query)
		if err != nil {
			t.Fatalf("bad test query %q: %v", tt.query, err)
		}
		got, err := ParseWADOURI(q)
		if tt.kind == 0 {
			if err != nil || got != tt.want {
				t.Errorf("ParseWADOURI(%q) = %+v, %v; want %+v", tt.query, got, err, tt.want)
			}
			continue
		}
		var pe *PathError
		if !errors.As(err, &pe) {
			t.Errorf("ParseWADOURI(%q) = %+v, %v; want a *PathError", tt.query, got, err)
			continue
		}
		if pe.Kind != tt.kind || !strings.Contains(pe.Message, tt.msg) {
			t.Errorf("ParseWADOURI(%q) error %v %q; want %v containing %q", tt.query, pe.Kind, pe.Message, tt.kind, tt.msg)
		}
		if got != (WADOURI{}) {
			t.Errorf("ParseWADOURI(%q) returned %+v with an error", tt.query, got)
		}
	}
}

func FuzzParseWADOURI(f *testing.F) {
	f.Add("requestType=WADO&studyUID=1.2&seriesUID=1.2.3&objectUID=1.2.3.4")
	f.Add("requestType=WADO&studyUID=1.2&studyUID=1.3&seriesUID=1.2.3&objectUID=1.2.3.4")
	f.Add("requestType=WADO&studyUID=01&seriesUID=&objectUID=%2e")
	f.Fuzz(func(t *testing.T, raw string) {
		q, _ := url.ParseQuery(raw)
		w, err := ParseWADOURI(q)
		if err != nil {
			var pe *PathError
			if !errors.As(err, &pe) || pe.Message == "" {
				t.Fatalf("ParseWADOURI(%q) error %#v is not a well-formed *PathError", raw, err)
			}
			return
		}
		for name, v := range map[string]string{"studyUID": w.Study, "seriesUID": w.Series, "objectUID": w.Object} {
			if !ValidUID(v) || len(q[name]) != 1 || q[name][0] != v {
				t.Fatalf("ParseWADOURI(%q) returned %s %q", raw, name, v)
			}
		}
		if len(q["requestType"]) != 1 || q["requestType"][0] != "WADO" {
			t.Fatalf("ParseWADOURI(%q) accepted requestType %q", raw, q["requestType"])
		}
	})
}

func TestErrorKindString(t *testing.T) {
	for k, want := range map[ErrorKind]string{KindMalformed: "malformed", KindBadUID: "bad UID", KindUnknownPath: "unknown path", 0: "unknown error kind"} {
		if got := k.String(); got != want {
			t.Errorf("ErrorKind(%d).String() = %q, want %q", int(k), got, want)
		}
	}
}
