// Package registrar makes a FHIR R4 ImagingStudy from what a DICOM archive
// says about a study, and creates or updates it in a FHIR server, the way
// DICOMcast does, but inline and idempotent: a study whose resource already
// says everything the archive says is not written again, and an update is
// conditional on the version it was made from. It knows nothing of Caddy.
package registrar

import (
	"sort"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/fhirimaging/caddy-fhir-imaging/module/dicom"
)

// Study is what an archive says about one study: its own attributes and
// those of its series and instances.
type Study struct {
	UID         string
	PatientID   string
	Patient     PatientFacts
	Date, Time  string // DICOM DA and TM
	TZOffset    string // TimezoneOffsetFromUTC (0008,0201), e.g. +0100
	Description string
	Series      []*Series
}

// PatientFacts are the patient's attributes, used only to create a Patient
// (unknown_patient create).
type PatientFacts struct {
	Name      string // PN, Alphabetic group, e.g. Family^Given
	BirthDate string // DA
	Sex       string // CS: M, F, O
}

// Series is one series of a Study.
type Series struct {
	UID         string
	Number      int
	HasNumber   bool
	Modality    string
	Description string
	Instances   []*Instance
}

// Instance is one instance of a Series.
type Instance struct {
	UID       string
	SOPClass  string
	Number    int
	HasNumber bool
}

// IncludeFields are the attributes to ask for (QIDO-RS includefield) in an
// instance-level search, so that FromDatasets has all it reads.
var IncludeFields = []string{
	"0020000D", "0020000E", "00080018", "00080016", // study, series, SOP instance, SOP class
	"00080020", "00080030", "00080201", "00081030", // study date, time, timezone, description
	"00100020", "00100010", "00100030", "00100040", // patient ID, name, birth date, sex
	"00080060", "00200011", "0008103E", "00200013", // modality, series number, series description, instance number
}

// FromDatasets gathers the facts of study uid from the DICOM JSON datasets
// of an instance-level QIDO-RS search. Datasets of another study, and
// series or instances whose UIDs are not valid, are left out. Series come
// sorted by number (then UID), instances likewise. The result has no
// series when no dataset was usable.
func FromDatasets(uid string, datasets []gjson.Result) *Study {
	st := &Study{UID: uid}
	byUID := map[string]*Series{}
	seen := map[string]bool{}
	for _, ds := range datasets {
		if s := str(ds, "0020000D"); s != "" && s != uid {
			continue
		}
		seriesUID, sop := str(ds, "0020000E"), str(ds, "00080018")
		if !dicom.ValidUID(seriesUID) || !dicom.ValidUID(sop) || seen[sop] {
			continue
		}
		seen[sop] = true
		fill(&st.PatientID, str(ds, "00100020"))
		fill(&st.Patient.Name, ds.Get("00100010.Value.0.Alphabetic").String())
		fill(&st.Patient.BirthDate, str(ds, "00100030"))
		fill(&st.Patient.Sex, str(ds, "00100040"))
		fill(&st.Date, str(ds, "00080020"))
		fill(&st.Time, str(ds, "00080030"))
		fill(&st.TZOffset, str(ds, "00080201"))
		fill(&st.Description, str(ds, "00081030"))
		se := byUID[seriesUID]
		if se == nil {
			se = &Series{UID: seriesUID}
			byUID[seriesUID] = se
			st.Series = append(st.Series, se)
		}
		if n, ok := number(ds, "00200011"); ok && !se.HasNumber {
			se.Number, se.HasNumber = n, true
		}
		fill(&se.Modality, str(ds, "00080060"))
		fill(&se.Description, str(ds, "0008103E"))
		in := &Instance{UID: sop}
		if c := str(ds, "00080016"); dicom.ValidUID(c) {
			in.SOPClass = c
		}
		in.Number, in.HasNumber = number(ds, "00200013")
		se.Instances = append(se.Instances, in)
	}
	sort.SliceStable(st.Series, func(i, j int) bool {
		a, b := st.Series[i], st.Series[j]
		return numberedBefore(a.HasNumber, a.Number, a.UID, b.HasNumber, b.Number, b.UID)
	})
	for _, se := range st.Series {
		sort.SliceStable(se.Instances, func(i, j int) bool {
			a, b := se.Instances[i], se.Instances[j]
			return numberedBefore(a.HasNumber, a.Number, a.UID, b.HasNumber, b.Number, b.UID)
		})
	}
	return st
}

func fill(dst *string, v string) {
	if *dst == "" {
		*dst = v
	}
}

// str is the first value of a DICOM JSON attribute as a string, trimmed.
func str(ds gjson.Result, tag string) string {
	return strings.TrimSpace(ds.Get(tag + ".Value.0").String())
}

// number reads an IS (a JSON number or a string) as an int.
func number(ds gjson.Result, tag string) (int, bool) {
	v := ds.Get(tag + ".Value.0")
	switch v.Type {
	case gjson.Number:
		if float64(int(v.Num)) == v.Num {
			return int(v.Num), true
		}
	case gjson.String:
		if n, err := strconv.Atoi(strings.TrimSpace(v.Str)); err == nil {
			return n, true
		}
	}
	return 0, false
}

// Started is the study's date and time as a FHIR dateTime: with the time
// only when the timezone is known (FHIR requires an offset with a time),
// else the date alone; "" when the date is missing or malformed.
func (st *Study) Started() string {
	d := fhirDate(st.Date)
	if d == "" {
		return ""
	}
	tz := st.TZOffset
	if len(tz) != 5 || (tz[0] != '+' && tz[0] != '-') || !digits(tz[1:]) {
		return d
	}
	t := st.Time
	if i := strings.IndexByte(t, '.'); i >= 0 {
		t = t[:i]
	}
	if len(t) != 6 || !digits(t) {
		return d
	}
	return d + "T" + t[0:2] + ":" + t[2:4] + ":" + t[4:6] + tz[0:3] + ":" + tz[3:5]
}

// fhirDate turns a DICOM DA (YYYYMMDD) into a FHIR date, or "".
func fhirDate(da string) string {
	if len(da) != 8 || !digits(da) {
		return ""
	}
	return da[0:4] + "-" + da[4:6] + "-" + da[6:8]
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// Instances is the number of instances in the study.
func (st *Study) Instances() int {
	n := 0
	for _, se := range st.Series {
		n += len(se.Instances)
	}
	return n
}

// numberedBefore orders series and instances as the archive numbers them:
// by number, those without one last, then by UID.
func numberedBefore(aHas bool, aNum int, aUID string, bHas bool, bNum int, bUID string) bool {
	if aHas != bHas {
		return aHas
	}
	if aNum != bNum {
		return aNum < bNum
	}
	return aUID < bUID
}
