package jsontext

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// valid scans in as one whole JSON text.
func valid(in []byte) error {
	s := Scanner{In: in}
	if err := s.Skip(); err != nil {
		return err
	}
	return s.End()
}

func TestScannerErrors(t *testing.T) {
	tests := []struct {
		in     string
		offset int
		msg    string
	}{
		{``, 0, "unexpected end of input"},
		{` `, 1, "unexpected end of input"},
		{`[1,]`, 3, "unexpected character ']'"},
		{`{"a"}`, 4, "expected ':' after an object key"},
		{`{a:1}`, 1, "expected a string key"},
		{`{"a":1,}`, 7, "expected a string key"},
		{`{"a":1 "b":2}`, 7, "expected ',' or '}' in an object"},
		{`{"a":1`, 6, "unexpected end of input in an object"},
		{`[1 2]`, 3, "expected ',' or ']' in an array"},
		{`[1`, 2, "unexpected end of input in an array"},
		{`"abc`, 4, "unexpected end of input in a string"},
		{`"a\`, 2, "unexpected end of input in a string escape"},
		{`"a\x"`, 2, "invalid escape in a string"},
		{`"a\u12g4"`, 2, "invalid \\u escape in a string"},
		{"\"a\tb\"", 2, "control character in a string"},
		{`01`, 1, "unexpected data after the top-level value"},
		{`-`, 1, "invalid number"},
		{`1.`, 2, "invalid number: no digit after '.'"},
		{`1e+`, 3, "invalid number: no digit in the exponent"},
		{`tru`, 0, "invalid literal"},
		{`nul`, 0, "invalid literal"},
		{`[]x`, 2, "unexpected data after the top-level value"},
		{strings.Repeat("[", MaxDepth+1), MaxDepth, "nesting exceeds the maximum depth"},
	}
	for _, tt := range tests {
		err := valid([]byte(tt.in))
		var se *SyntaxError
		if !errors.As(err, &se) || se.Offset != tt.offset || se.Msg != tt.msg {
			t.Errorf("%.20q: error %v, want %q at %d", tt.in, err, tt.msg, tt.offset)
		}
		if json.Valid([]byte(tt.in)) {
			t.Errorf("%.20q is valid for encoding/json", tt.in)
		}
	}
	if got := (&SyntaxError{Offset: 3, Msg: "m"}).Error(); got != "malformed JSON at byte 3: m" {
		t.Errorf("Error() = %q", got)
	}
}

func TestScannerWalk(t *testing.T) {
	in := []byte(` { "a\/b" : [ 1.5e3 , "x\n" , {} , [] , true ] , "c":null } `)
	s := Scanner{In: in}
	var got []string
	if k, err := s.Next(); k != Object || err != nil || s.Pos != 1 {
		t.Fatalf("Next = %v %v at %d", k, err, s.Pos)
	}
	more, err := s.OpenObject()
	for more && err == nil {
		key, err := s.Key()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, "key "+string(Unescape(nil, key.Content(in))))
		if s.Depth() != 1 {
			t.Errorf("depth %d in the object", s.Depth())
		}
		if err := s.Skip(); err != nil {
			t.Fatal(err)
		}
		more, err = s.MoreMembers()
		if err != nil {
			t.Fatal(err)
		}
	}
	if err != nil || s.Depth() != 0 {
		t.Fatalf("err %v, depth %d", err, s.Depth())
	}
	if err := s.End(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "key a/b,key c" {
		t.Errorf("keys %q", got)
	}

	s = Scanner{In: []byte(`"a\"b" 12 null`)}
	str, err := s.ReadString()
	if err != nil || str != (Str{Start: 0, End: 6, Escaped: true}) || string(str.Content(s.In)) != `a\"b` {
		t.Errorf("ReadString = %+v, %v", str, err)
	}
	if k, err := s.Next(); k != Number || err != nil || s.Pos != 9 {
		t.Errorf("Next = %v %v at %d", k, err, s.Pos)
	}
	if k, err := s.Next(); k != Literal || err != nil || s.Pos != 14 {
		t.Errorf("Next = %v %v at %d", k, err, s.Pos)
	}
	s = Scanner{In: []byte(" \xff")}
	if k, err := s.Next(); k != Invalid || err != nil || s.Pos != 1 {
		t.Errorf("Next on a bad byte = %v %v at %d", k, err, s.Pos)
	}
}

func TestUnescapeAndRawOffset(t *testing.T) {
	tests := []struct {
		raw, want string
	}{
		{`plain`, "plain"},
		{`a\"\\\/\b\f\n\r\tz`, "a\"\\/\b\f\n\r\tz"},
		{`\u00e9\u20AC`, "é€"},
		{`\ud83d\ude00`, "😀"},
		{`\ud800x`, "\uFFFDx"},
		{`\ud800\u0041`, "\uFFFDA"},
		{"\xff", "\xff"},
	}
	for _, tt := range tests {
		if got := string(Unescape(nil, []byte(tt.raw))); got != tt.want {
			t.Errorf("Unescape(%q) = %q, want %q", tt.raw, got, tt.want)
		}
	}
	raw := []byte(`a\/\u00e9\ud83d\ude00b`) // a / é 😀 b: 1+1+2+4+1 bytes
	for k, want := range map[int]int{0: 0, 1: 1, 2: 3, 3: -1, 4: 9, 5: -1, 8: 21, 9: 22, 10: -1} {
		if got := RawOffset(raw, k); got != want {
			t.Errorf("RawOffset(%d) = %d, want %d", k, got, want)
		}
	}
}

func TestAppendEscaped(t *testing.T) {
	got := string(AppendEscaped([]byte("x"), "a\"b\\c\n\r\t\x01/é\xff"))
	if want := `xa\"b\\c\n\r\t\u0001/é` + "\xff"; got != want {
		t.Errorf("AppendEscaped = %q, want %q", got, want)
	}
}

func TestParseBase(t *testing.T) {
	strict, lax := BaseOptions{}, BaseOptions{Fragment: true, Lax: true}
	for _, tt := range []struct {
		from string
		opts BaseOptions
		want error
	}{
		{"", strict, ErrNotAbsolute},
		{"/x", strict, ErrNotAbsolute},
		{"://h/x", lax, ErrNotAbsolute},
		{"1http://h", strict, ErrNotAbsolute},
		{"ht tp://h", strict, ErrNotAbsolute},
		{"ht tp://h", lax, nil},
		{"http://", strict, ErrNoHost},
		{"http:///x", lax, ErrNoHost},
		{"http://:80/x", strict, nil},
		{"http://:80/x", lax, ErrNoHost},
		{"http://h/x?y", strict, ErrQueryOrFragment},
		{"http://h/x#y", lax, ErrQueryOrFragment},
		{"HTTP://H:80/x/", strict, nil},
	} {
		if _, err := ParseBase(tt.from, tt.opts); err != tt.want {
			t.Errorf("ParseBase(%q, %+v) = %v, want %v", tt.from, tt.opts, err, tt.want)
		}
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		from, v string
		lax     bool
		want    int // -1: no match
	}{
		{"http://h/dicom-web", "http://H:80/dicom-web/studies/1", false, 21},
		{"http://h/dicom-web", "http://h/dicom-web", false, 18},
		{"http://h/dicom-web", "http://h/dicom-web?x", false, 18},
		{"http://h/dicom-web", "http://h/dicom-web#x", false, -1},
		{"http://h/dicom-web", "http://h/dicom-web#x", true, 18},
		{"http://h/dicom-web", "http://h/dicom-web2/studies/1", false, -1},
		{"http://h/dicom-web", "http://user@h/dicom-web", false, -1},
		{"http://h/dicom-web", "http://h/DICOM-WEB", false, -1},
		{"http://h/", "https://h/", false, -1},
		{"https://[::1]", "https://[::1]:443/x", false, 17},
		{"https://p:443", "HTTPS://P/x", false, 9},
		{"http://h", "http://h:8080/x", false, -1},
		{"http://k", "http://\u212a/x", false, -1}, // the Kelvin sign is not k...
		{"http://k", "http://\u212a/x", true, 10},  // ...except with Unicode folding
		{"http://a:b", "http://a:b:80/x", false, -1},
		{"http://a:b", "http://a:b:80/x", true, 13},
		{"http://h", "http:/h", false, -1},
		{"http://h", "", true, -1},
	}
	for _, tt := range tests {
		b, err := ParseBase(tt.from, BaseOptions{Fragment: tt.lax, Lax: tt.lax})
		if err != nil {
			t.Fatal(err)
		}
		k, ok := b.Match([]byte(tt.v))
		if !ok {
			k = -1
		}
		if k != tt.want {
			t.Errorf("ParseBase(%q, lax %v).Match(%q) = %d, want %d", tt.from, tt.lax, tt.v, k, tt.want)
		}
	}
	b, _ := ParseBase("http://h/a", BaseOptions{})
	raw := []byte(`http:\/\/h\/a\u002fx`)
	if k, ok := b.MatchContent(raw, Unescape(nil, raw), true); !ok || k != 13 {
		t.Errorf("MatchContent = %d %v, want 13", k, ok)
	}
	raw = []byte(`http://h/\u0061`) // the escape of 'a' ends the base
	if k, ok := b.MatchContent(raw, Unescape(nil, raw), true); !ok || k != len(raw) {
		t.Errorf("MatchContent = %d %v, want %d", k, ok, len(raw))
	}
	b, _ = ParseBase("http://h/\xc3", BaseOptions{})
	raw = []byte(`http://h/\u00e9`) // é is C3 A9: the base ends inside its escape
	if _, ok := b.MatchContent(raw, Unescape(nil, raw), true); ok {
		t.Errorf("MatchContent matched inside an escape")
	}
}

// FuzzScanner checks that the scanner accepts exactly what encoding/json
// accepts, reports errors at offsets within the input, and that for a string
// Unescape agrees with encoding/json and RawOffset maps every rune boundary
// of the value back into the raw content.
func FuzzScanner(f *testing.F) {
	for _, s := range []string{`{"a":[1,-2.5e3,true,false,null,"\u00e9\ud83d\ude00"]}`, `"a\/b\n\ud800"`, `[1,]`, `{"a" 1}`, "\"\xff\"", `01`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		err := valid(in)
		if (err == nil) != json.Valid(in) {
			t.Fatalf("error %v, json.Valid %v", err, json.Valid(in))
		}
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) || se.Offset < 0 || se.Offset > len(in) {
				t.Fatalf("error %#v", err)
			}
			return
		}
		s := Scanner{In: in}
		if k, _ := s.Next(); k != String {
			return
		}
		str, err := s.ReadString()
		if err != nil {
			t.Fatal(err)
		}
		raw := str.Content(in)
		v := Unescape(nil, raw)
		var want string
		if err := json.Unmarshal(in, &want); err != nil {
			t.Fatal(err)
		}
		if utf8.Valid(v) && string(v) != want {
			t.Fatalf("Unescape(%q) = %q, encoding/json %q", raw, v, want)
		}
		if str.Escaped != strings.Contains(string(raw), `\`) {
			t.Fatalf("Escaped = %v for %q", str.Escaped, raw)
		}
		for k := 0; k <= len(v); k++ {
			off := RawOffset(raw, k)
			if off < 0 {
				continue
			}
			if got := Unescape(nil, raw[:off]); string(got) != string(v[:k]) {
				t.Fatalf("RawOffset(%q, %d) = %d, whose value is %q", raw, k, off, got)
			}
		}
	})
}

// walkStrings reads one value token by token, with the Scanner's other
// methods, and returns its string values (keys excepted): what Skim must
// agree with.
func walkStrings(s *Scanner, strs []Str) ([]Str, error) {
	k, err := s.Next()
	if err != nil {
		return strs, err
	}
	switch k {
	case Invalid:
		return strs, s.Errorf("unexpected character")
	case String:
		str, err := s.ReadString()
		if err == nil {
			strs = append(strs, str)
		}
		return strs, err
	case Object:
		more, err := s.OpenObject()
		for more && err == nil {
			if _, err = s.Key(); err == nil {
				if strs, err = walkStrings(s, strs); err == nil {
					more, err = s.MoreMembers()
				}
			}
		}
		return strs, err
	case Array:
		more, err := s.OpenArray()
		for more && err == nil {
			if strs, err = walkStrings(s, strs); err == nil {
				more, err = s.MoreElements()
			}
		}
		return strs, err
	}
	return strs, nil
}

// checkSkim compares Skim with the token-by-token walk on in, from offset
// pos at depth depth.
func checkSkim(t *testing.T, in []byte, pos, depth int) {
	t.Helper()
	slow := Scanner{In: in, Pos: pos, depth: depth}
	want, werr := walkStrings(&slow, nil)
	fast := Scanner{In: in, Pos: pos, depth: depth}
	var got []Str
	ok := fast.Skim(func(s Str) { got = append(got, s) })
	if ok != (werr == nil) {
		t.Fatalf("%.40q: Skim %v, walk error %v", in, ok, werr)
	}
	if !ok {
		if fast.Pos != pos || fast.depth != depth {
			t.Fatalf("%.40q: Skim failed at Pos %d depth %d, want %d %d", in, fast.Pos, fast.depth, pos, depth)
		}
		// What Skim saw before giving up is what the walk saw before
		// the error.
		if len(got) > len(want) || !slices.Equal(got, want[:len(got)]) {
			t.Fatalf("%.40q: Skim saw %v before failing, walk %v", in, got, want)
		}
		return
	}
	if fast.Pos != slow.Pos || fast.depth != slow.depth || !slices.Equal(got, want) {
		t.Fatalf("%.40q: Skim ended at %d (depth %d) with %v, walk at %d (depth %d) with %v", in, fast.Pos, fast.depth, got, slow.Pos, slow.depth, want)
	}
}

func TestSkim(t *testing.T) {
	for _, in := range []string{
		`{"a":[1,-2.5e3,true,false,null,"\u00e9\ud83d\ude00"],"b":{},"c":[],"d":"e"}`,
		` [ { "k" : "a long string value, longer than eight bytes" } , "x" ] `,
		`"0123456789abcdef"`, `"01234567"`, `"0123456\"9"`, "\"0123456\x01\"", `"0123456\`,
		`{"a":1,}`, `[1,]`, `{"a" 1}`, `{"a":1 "b":2}`, `[1 2]`, `{1:2}`, `tru`, `nulls`, `-`, `1.e3`, `[`, `{`, `{"a":`, `]`, `}`,
		strings.Repeat("[", 200) + strings.Repeat("]", 200),
		strings.Repeat(`{"a":[`, 70) + `"s"` + strings.Repeat(`]}`, 70),
		strings.Repeat(`[{"a":`, 70) + `"s"` + strings.Repeat(`}]`, 70),
		strings.Repeat("[", 100) + strings.Repeat("]", 99) + "}",
	} {
		checkSkim(t, []byte(in), 0, 0)
	}
	// The depth limit counts from where the Scanner is.
	in := []byte(strings.Repeat("[", 10) + strings.Repeat("]", 10))
	checkSkim(t, in, 0, MaxDepth-10)
	checkSkim(t, in, 0, MaxDepth-9)
	deep := []byte(strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth))
	checkSkim(t, deep, 0, 0)
	checkSkim(t, []byte("["+string(deep)+"]"), 0, 0)
}

// FuzzSkim checks that Skim accepts what the token-by-token walk accepts,
// ends where it ends and sees the same string values, from any depth.
func FuzzSkim(f *testing.F) {
	for _, s := range []string{`{"a":[1,-2.5e3,true,false,null,"\u00e9\ud83d\ude00"]}`, `"a\/b\n\ud800 and more"`, `[1,]`, `{"a" 1}`, "\"\xff\"", `01`, ` {"k":{"l":[[],{}]}} `} {
		f.Add([]byte(s), uint16(0))
	}
	f.Fuzz(func(t *testing.T, in []byte, depth uint16) {
		d := MaxDepth - int(depth)%16
		if depth < 1<<15 {
			d = int(depth) % 100
		}
		checkSkim(t, in, 0, d)
	})
}

// FuzzMatchFastPaths checks Match's early answers (a URL that does not
// start with scheme://host, and one whose host ends right there) against
// the whole comparison, which a Base without lead makes.
func FuzzMatchFastPaths(f *testing.F) {
	for _, s := range [][2]string{
		{"http://127.0.0.1:8080/fhir", "http://127.0.0.1:8080/fhir/Patient/1"},
		{"http://h/dicom-web", "HTTP://H:80/dicom-web/studies"},
		{"https://h.example", "https://h.example:443"},
		{"http://[::1]:80/x", "http://[::1]/x#f"},
		{"http://k/x", "http://\u212a/x"},
		{"http://a:b:80/x", "http://a:b:80/x?q"},
		{"http://h/x", "http://h/x2"},
	} {
		f.Add(s[0], s[1], true, true)
	}
	f.Fuzz(func(t *testing.T, base, v string, lax, fragment bool) {
		b, err := ParseBase(base, BaseOptions{Lax: lax, Fragment: fragment})
		if err != nil {
			return
		}
		whole := b
		whole.lead = ""
		k, ok := b.Match([]byte(v))
		wk, wok := whole.Match([]byte(v))
		if k != wk || ok != wok {
			t.Fatalf("Match(%q) on %q = %d %v, the whole comparison %d %v", v, base, k, ok, wk, wok)
		}
		if ok && !b.Quick().MayMatch([]byte(v), false) {
			t.Fatalf("Quick rules out %q, which %q matches", v, base)
		}
	})
}

// FuzzNextQuote checks NextQuote against bytes.IndexByte from every offset.
func FuzzNextQuote(f *testing.F) {
	f.Add([]byte(`{"a":[1,"x\"y"],"b":{}} and some more text after it`))
	f.Fuzz(func(t *testing.T, in []byte) {
		for i := 0; i <= len(in); i++ {
			want := len(in)
			if k := bytes.IndexByte(in[i:], '"'); k >= 0 {
				want = i + k
			}
			if got := NextQuote(in, i); got != want {
				t.Fatalf("NextQuote(%q, %d) = %d, want %d", in, i, got, want)
			}
		}
	})
}
