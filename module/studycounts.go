package module

import (
	"net/http"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
	"go.uber.org/zap"

	"github.com/fhirimaging/caddy-fhir-imaging/module/dicom"
)

// Study-level attributes that describe the whole study, which an archive
// holding only part of it reports for its part alone.
const (
	tagModalitiesInStudy = "00080061"
	tagStudySeries       = "00201206" // Number of Study Related Series
	tagStudyInstances    = "00201208" // Number of Study Related Instances
	tagSeriesInstances   = "00201209" // Number of Series Related Instances
	tagSeriesUID         = "0020000E"
)

// spreadStudy is a study that several archives answered a study search
// for: each archive's dataset describes its own part of the study.
type spreadStudy struct {
	archives []*Archive
	copies   []gjson.Result
}

// countSpreadStudies gives each study of datasets that several archives
// hold the study-level counts of the whole study: Modalities in Study is
// the union of the archives' values; the numbers of series and instances
// are counted over the union of the archives' series (a series two
// archives both hold, a replica, counts once), asked of each archive at
// series level. When that cannot be asked, the archives' own counts are
// added up, which counts a replicated series twice.
func (h *DICOMweb) countSpreadStudies(r *http.Request, datasets []gjson.Result, spread map[string]*spreadStudy) {
	for i, ds := range datasets {
		uid := ds.Get(uidTags["studies"] + ".Value.0").String()
		st := spread[uid]
		if st == nil || !dicom.ValidUID(uid) {
			continue
		}
		raw := []byte(ds.Raw)
		if mods := st.union(tagModalitiesInStudy); mods != nil {
			raw = setAttr(raw, tagModalitiesInStudy, "CS", mods)
		}
		if !st.has(tagStudySeries) && !st.has(tagStudyInstances) {
			datasets[i] = gjson.ParseBytes(raw)
			continue
		}
		nSeries, nInstances, ok := h.countSeries(r, uid, st.archives)
		if !ok {
			nSeries, nInstances = st.sum(tagStudySeries), st.sum(tagStudyInstances)
		}
		if st.has(tagStudySeries) {
			raw = setAttr(raw, tagStudySeries, "IS", []any{nSeries})
		}
		if st.has(tagStudyInstances) {
			raw = setAttr(raw, tagStudyInstances, "IS", []any{nInstances})
		}
		datasets[i] = gjson.ParseBytes(raw)
	}
}

// countSeries asks each archive for the study's series and counts the
// distinct series and their instances (a series held twice counts with
// the larger number).
func (h *DICOMweb) countSeries(r *http.Request, uid string, archives []*Archive) (series, instances int, ok bool) {
	answers := askAll(r, archives, "/studies/"+uid+"/series", "includefield="+tagSeriesInstances, h.MaxJSONSize)
	per := map[string]int{}
	for i, a := range answers {
		arr := gjson.ParseBytes(a.body)
		if a.err != "" || !arr.IsArray() {
			h.logger.Warn("spread study: an archive's series could not be counted; adding up the archives' counts",
				zap.String("archive", archives[i].name), zap.String("error", a.err))
			return 0, 0, false
		}
		for _, se := range arr.Array() {
			su := se.Get(tagSeriesUID + ".Value.0").String()
			if su == "" {
				return 0, 0, false
			}
			per[su] = max(per[su], int(se.Get(tagSeriesInstances+".Value.0").Int()))
		}
	}
	for _, n := range per {
		instances += n
	}
	return len(per), instances, true
}

// has reports whether any archive's dataset carries the attribute.
func (st *spreadStudy) has(tag string) bool {
	for _, c := range st.copies {
		if c.Get(tag).Exists() {
			return true
		}
	}
	return false
}

// sum adds up the archives' values of a count attribute.
func (st *spreadStudy) sum(tag string) int {
	n := 0
	for _, c := range st.copies {
		n += int(c.Get(tag + ".Value.0").Int())
	}
	return n
}

// union returns the distinct values of a multi-valued attribute over the
// archives' datasets, in the order first seen, or nil when none has it.
func (st *spreadStudy) union(tag string) []any {
	var out []any
	seen := map[string]bool{}
	for _, c := range st.copies {
		for _, v := range c.Get(tag + ".Value").Array() {
			if s := v.String(); !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	return out
}

// setAttr sets a DICOM JSON attribute of dataset raw to the given values.
func setAttr(raw []byte, tag, vr string, values []any) []byte {
	out, err := sjson.SetBytes(raw, tag, map[string]any{"vr": vr, "Value": values})
	if err != nil {
		return raw
	}
	return out
}
