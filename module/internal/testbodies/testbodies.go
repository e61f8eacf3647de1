// Package testbodies makes the FHIR bodies that the tests and benchmarks
// of several packages share, so that they measure and check the same
// shapes.
package testbodies

import (
	"fmt"
	"strings"
)

// Observations returns a searchset of n Observations on the base
// http://127.0.0.1:8080/fhir, as HAPI writes them: a base swap and nothing
// else to do (3,000 of them are 2.3 MB, the size of make bench's).
func Observations(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"resourceType":"Bundle","type":"searchset","total":` + fmt.Sprint(n) + `,"link":[{"relation":"self","url":"http://127.0.0.1:8080/fhir/Observation?_count=` + fmt.Sprint(n) + `"}],"entry":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"fullUrl":"http://127.0.0.1:8080/fhir/Observation/o%d","resource":{"resourceType":"Observation","id":"o%d","meta":{"versionId":"1","lastUpdated":"2026-11-26T10:00:00.000+00:00"},"status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}]},"subject":{"reference":"Patient/p%d"},"effectiveDateTime":"2026-11-26T10:00:00+00:00","valueQuantity":{"value":%d,"unit":"beats/minute","system":"http://unitsofmeasure.org","code":"/min"}},"search":{"mode":"match"}}`, i, i, i%50, 60+i%40)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}
