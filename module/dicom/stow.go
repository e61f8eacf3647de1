package dicom

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"mime"
	"strings"

	"github.com/tidwall/gjson"
)

// StoredInstance is one instance that a STOW-RS answer says was stored.
type StoredInstance struct {
	// SOPClass and SOPInstance are the instance's ReferencedSOPClassUID
	// (0008,1150) and ReferencedSOPInstanceUID (0008,1155).
	SOPClass, SOPInstance string
	// Study and Series are taken from the item's RetrieveURL (0008,1190)
	// when it has one of the form .../studies/{study}[/series/{series}...];
	// "" when it has none.
	Study, Series string
}

// StoreAnswer is what a STOW-RS answer (PS3.18 10.5.3) says: the
// instances stored (ReferencedSOPSequence, 0008,1199), how many failed
// (FailedSOPSequence, 0008,1198), and the study of its top-level
// RetrieveURL, if any.
type StoreAnswer struct {
	Stored []StoredInstance
	Failed int
	Study  string
}

// Studies returns the distinct study UIDs the answer names, in order of
// first mention.
func (a *StoreAnswer) Studies() []string {
	var out []string
	seen := map[string]bool{}
	add := func(uid string) {
		if uid != "" && !seen[uid] {
			seen[uid] = true
			out = append(out, uid)
		}
	}
	add(a.Study)
	for _, in := range a.Stored {
		add(in.Study)
	}
	return out
}

// ErrStoreAnswerType is returned for an answer that is neither DICOM JSON
// nor DICOM XML.
var ErrStoreAnswerType = errors.New("the STOW-RS answer is neither DICOM JSON nor DICOM XML")

// ParseStoreAnswer reads a STOW-RS answer body of the given Content-Type:
// DICOM JSON (application/dicom+json, application/json) or the Native DICOM
// Model in XML (application/dicom+xml, application/xml, text/xml). Items
// whose SOP Instance UID is not a valid UID are left out; a RetrieveURL
// whose UIDs are not valid gives no study or series.
func ParseStoreAnswer(contentType string, body []byte) (*StoreAnswer, error) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil, ErrStoreAnswerType
	}
	switch mt {
	case "application/dicom+json", "application/json":
		return parseStoreJSON(body)
	case "application/dicom+xml", "application/xml", "text/xml":
		return parseStoreXML(body)
	}
	return nil, ErrStoreAnswerType
}

func parseStoreJSON(body []byte) (*StoreAnswer, error) {
	if !gjson.ValidBytes(body) {
		return nil, errors.New("the STOW-RS answer is not valid JSON")
	}
	doc := gjson.ParseBytes(body)
	if doc.IsArray() { // some archives wrap the dataset in an array
		doc = doc.Get("0")
	}
	if !doc.IsObject() {
		return nil, errors.New("the STOW-RS answer is not a DICOM JSON dataset")
	}
	out := &StoreAnswer{}
	out.Study, _ = uidsOfURL(doc.Get("00081190.Value.0").String())
	out.Failed = len(doc.Get("00081198.Value").Array())
	for _, item := range doc.Get("00081199.Value").Array() {
		in := StoredInstance{
			SOPClass:    item.Get("00081150.Value.0").String(),
			SOPInstance: item.Get("00081155.Value.0").String(),
		}
		in.Study, in.Series = uidsOfURL(item.Get("00081190.Value.0").String())
		out.add(in)
	}
	return out, nil
}

func (a *StoreAnswer) add(in StoredInstance) {
	if !ValidUID(in.SOPInstance) {
		return
	}
	if !ValidUID(in.SOPClass) {
		in.SOPClass = ""
	}
	a.Stored = append(a.Stored, in)
}

// The Native DICOM Model (PS3.19 A.1), as much of it as a STOW-RS answer
// needs.
type xmlAttr struct {
	Tag   string    `xml:"tag,attr"`
	Value []string  `xml:"Value"`
	Items []xmlItem `xml:"Item"`
}

type xmlItem struct {
	Attrs []xmlAttr `xml:"DicomAttribute"`
}

func (it xmlItem) find(tag string) *xmlAttr {
	for i := range it.Attrs {
		if strings.EqualFold(it.Attrs[i].Tag, tag) {
			return &it.Attrs[i]
		}
	}
	return nil
}

func (it xmlItem) first(tag string) string {
	if a := it.find(tag); a != nil && len(a.Value) > 0 {
		return strings.TrimSpace(a.Value[0])
	}
	return ""
}

func parseStoreXML(body []byte) (*StoreAnswer, error) {
	var doc struct {
		XMLName xml.Name
		xmlItem
	}
	dec := xml.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("the STOW-RS answer is not valid XML: %v", err)
	}
	if doc.XMLName.Local != "NativeDicomModel" {
		return nil, errors.New("the STOW-RS answer is not a NativeDicomModel document")
	}
	out := &StoreAnswer{}
	out.Study, _ = uidsOfURL(doc.first("00081190"))
	if f := doc.find("00081198"); f != nil {
		out.Failed = len(f.Items)
	}
	if ref := doc.find("00081199"); ref != nil {
		for _, item := range ref.Items {
			in := StoredInstance{SOPClass: item.first("00081150"), SOPInstance: item.first("00081155")}
			in.Study, in.Series = uidsOfURL(item.first("00081190"))
			out.add(in)
		}
	}
	return out, nil
}

// uidsOfURL returns the study and series UIDs of a WADO-RS URL
// .../studies/{study}[/series/{series}[/...]], each "" when absent or not
// a valid UID.
func uidsOfURL(u string) (study, series string) {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	parts := strings.Split(u, "/")
	for i := 0; i+1 < len(parts); i++ {
		switch parts[i] {
		case "studies":
			if study == "" && ValidUID(parts[i+1]) {
				study = parts[i+1]
			}
		case "series":
			if study != "" && series == "" && ValidUID(parts[i+1]) {
				series = parts[i+1]
			}
		}
	}
	return study, series
}
