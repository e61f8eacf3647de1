package dicom

import (
	"regexp"
	"strings"
	"testing"
)

func TestValidUID(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"1.2.840.10008.1.2.1", true},
		{"0", true},
		{"0.0", true},
		{"1.0.2", true},
		{"1.2.3.0", true},
		{"2.25.329800735698586629295641978511506172918", true},
		{strings.Repeat("1.", 31) + "12", true}, // 64 characters
		{strings.Repeat("1.", 32) + "1", false}, // 65 characters
		{strings.Repeat("1", 64), true},
		{strings.Repeat("1", 65), false},
		{"", false},
		{".", false},
		{".1.2", false},
		{"1.2.", false},
		{"1..2", false},
		{"1.02", true},
		{"01.2", true},
		{"1.00", true},
		{"1.2a", false},
		{"1.2 ", false},
		{" 1.2", false},
		{"1,2", false},
		{"urn:oid:1.2", false},
		{"1.2%2E3", false},
		{"-1.2", false},
		{"１.2", false}, // full-width digit
		{"1.2\x00", false},
	}
	for _, tt := range tests {
		if got := ValidUID(tt.in); got != tt.want {
			t.Errorf("ValidUID(%q) = %v, want %v", tt.in, got, tt.want)
		}
		if p := uidProblem(tt.in); (p == "") != tt.want {
			t.Errorf("uidProblem(%q) = %q, want valid=%v", tt.in, p, tt.want)
		}
	}
}

func TestTrimOIDPrefix(t *testing.T) {
	tests := []struct{ in, want string }{
		{"urn:oid:1.2.3", "1.2.3"},
		{"URN:OID:1.2.3", "1.2.3"},
		{"Urn:Oid:1.2.3", "1.2.3"},
		{"urn:oid:", ""},
		{"urn:oid:urn:oid:1.2", "urn:oid:1.2"},
		{"1.2.3", "1.2.3"},
		{"urn:oid", "urn:oid"},
		{"urn:uuid:1234", "urn:uuid:1234"},
		{" urn:oid:1.2", " urn:oid:1.2"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := TrimOIDPrefix(tt.in); got != tt.want {
			t.Errorf("TrimOIDPrefix(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// uidRef is an independent statement of the UID grammar the gateway
// enforces: PS3.5 9.1 without the leading-zero rule.
var uidRef = regexp.MustCompile(`^[0-9]+(\.[0-9]+)*$`)

func FuzzValidUID(f *testing.F) {
	for _, s := range []string{"1.2.3", "0", "1.02", "1..2", ".1", "1.", "", "urn:oid:1.2", strings.Repeat("9", 64),
		// Dots where the eight-byte words of ValidUID meet.
		"1234567.89", "1234567..9", "12345678.", ".2345678", "12345678.1234567.", "1234567.12345678",
		"1.2.3.4.5.6.7.8.9.10.11", "1234567/89", "1234567:89", "1234567±89", strings.Repeat("9", 65)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := len(s) <= MaxUIDLength && uidRef.MatchString(s)
		if got := ValidUID(s); got != want {
			t.Fatalf("ValidUID(%q) = %v, reference says %v", s, got, want)
		}
		if problem := uidProblem(s); (problem == "") != want {
			t.Fatalf("uidProblem(%q) = %q, reference says valid: %v", s, problem, want)
		}
		if got := TrimOIDPrefix("urn:oid:" + s); got != s {
			t.Fatalf("TrimOIDPrefix(\"urn:oid:\"+%q) = %q", s, got)
		}
	})
}
