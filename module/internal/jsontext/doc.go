// Package jsontext holds the pieces shared by the gateway's single-pass JSON
// rewriters: a validating scanner over a byte slice that reports positions,
// with Skim, its fast way through a value nobody looks into; the helpers
// that decode and locate JSON string escapes; and the rule that recognises
// a URL starting with a given base, with Quick, which rules most strings
// out from their first eight bytes.
//
// The scanner accepts exactly what encoding/json accepts (RFC 8259, with at
// most MaxDepth levels of nesting). It decodes nothing into Go values: a
// caller walks the input with it, decides which values it wants to change,
// and copies every other byte as it was.
package jsontext
