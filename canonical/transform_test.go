package canonical

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestTransform(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in, want string }{
		{"literals", ` [ true , false , null ] `, `[true,false,null]`},
		{"empty containers", `{"a":[],"b":{}}`, `{"a":[],"b":{}}`},
		{"sorted nested", `{"b":[{"z":1,"y":2}],"a":"x"}`, `{"a":"x","b":[{"y":2,"z":1}]}`},
		{"top-level scalar", ` "x" `, `"x"`},
		{"blanks everywhere", "\t{\r\n\"a\" :\n1 }\n", `{"a":1}`},
		{"minus zero", `-0`, `0`},
		{"one point zero", `1.0`, `1`},
		{"tenth", `0.1`, `0.1`},
		{"1e21", `1e21`, `1e+21`},
		{"1e20", `1e20`, `100000000000000000000`},
		{"1e-7", `1e-7`, `1e-7`},
		{"0.000001", `0.000001`, `0.000001`},
		{"ES large", `123456789012345680000`, `123456789012345680000`},
		{"2^53", `9007199254740992`, `9007199254740992`},
		{"upper exponent", `4.5E+3`, `4500`},
		{"zero with big exponent", `0e999999999999999999`, `0`},
		{"escapes shortened", `"\u0008\u000C\u000A\u000D\u0009"`, `"\b\f\n\r\t"`},
		{"control escape lowercase", `"\u001F\u0000"`, `"\u001f\u0000"`},
		{"solidus unescaped", `"\/"`, `"/"`},
		{"DEL and separators literal", `"\u007f\u2028"`, "\"\x7f\u2028\""},
		{"non-ASCII literal", `"\u00e9\uD83D\uDE00"`, `"é😀"`},
		{"escaped key sorts by decoded value", `{"b":1,"\u0061":2}`, `{"a":2,"b":1}`},
		{"supplementary before U+E000", `{"\ue000":1,"\ud800\udc00":2}`, "{\"\U00010000\":2,\"\ue000\":1}"},
		{"prefix sorts first", `{"ab":1,"a":2}`, `{"a":2,"ab":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Transform([]byte(tt.in))
			if err != nil || string(got) != tt.want {
				t.Fatalf("Transform(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			if !json.Valid(got) {
				t.Errorf("output %q is not valid JSON", got)
			}
		})
	}
}

func TestTransformRefuses(t *testing.T) {
	t.Parallel()
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	tests := []struct{ name, in, path, msg string }{
		{"empty", ``, "", "unexpected end of input"},
		{"blank", "  \n", "", "unexpected end of input"},
		{"trailing data", `{} {}`, "", "after the top-level value"},
		{"trailing comma array", `[1,]`, "[1]", "unexpected character"},
		{"trailing comma object", `{"a":1,}`, "", "expected a string as object key"},
		{"missing colon", `{"a" 1}`, "a", "expected ':'"},
		{"missing comma", `[1 2]`, "", "expected ',' or ']'"},
		{"unclosed object", `{"a":1`, "", "unexpected end of input in object"},
		{"unquoted key", `{a:1}`, "", "expected a string as object key"},
		{"bad literal", `nul`, "", "expected null"},
		{"literal with tail", `truex`, "", "after the top-level value"},
		{"byte order mark", "\ufeff{}", "", "unexpected character"},
		{"leading zero", `01`, "", "after the top-level value"},
		{"bare point", `1.`, "", "invalid number"},
		{"leading point", `.5`, "", "unexpected character"},
		{"plus sign", `+1`, "", "unexpected character"},
		{"lone minus", `-`, "", "invalid number"},
		{"empty exponent", `1e`, "", "invalid number"},
		{"NaN", `NaN`, "", "unexpected character"},
		{"2^53+1", `{"a":{"items":[1,2,9007199254740993]}}`, "a.items[2]",
			"number 9007199254740993 cannot be represented exactly as an IEEE 754 double"},
		{"too many digits", `0.10000000000000000001`, "", "cannot be represented exactly"},
		{"double in long form", `[1152921504606846976]`, "[0]",
			"number 1152921504606846976 would change value in canonical form (1152921504606847000)"},
		{"exact double not shortest", `0.1000000000000000055511151231257827021181583404541015625`, "",
			"would change value in canonical form (0.1)"},
		{"overflow", `[1e400]`, "[0]", "number 1e400 overflows an IEEE 754 double"},
		{"negative overflow", `-1e400`, "", "overflows"},
		{"underflow", `1e-400`, "", "cannot be represented exactly"},
		{"huge exponent", `1e99999999999999999999`, "", "overflows"},
		{"raw control character", "\"a\nb\"", "", "control character"},
		{"invalid UTF-8", "\"\xff\"", "", "invalid UTF-8"},
		{"UTF-8 encoded surrogate", "\"\xed\xa0\x80\"", "", "invalid UTF-8"},
		{"invalid UTF-8 after escape", "\"\\n\xc3\"", "", "invalid UTF-8"},
		{"bad escape", `"\x41"`, "", "invalid escape"},
		{"short unicode escape", `"\u12"`, "", "invalid \\u escape"},
		{"lone high surrogate", `"\ud800"`, "", "lone surrogate \\ud800"},
		{"high then non-low", `"\ud800\u0041"`, "", "lone surrogate"},
		{"lone low surrogate", `"\udc00"`, "", "lone surrogate \\udc00"},
		{"unterminated string", `"abc`, "", "unterminated string"},
		{"duplicate key", `{"a":1,"b":2,"a":3}`, "a", "duplicate object key"},
		{"duplicate key in order", `{"a":1,"a":1}`, "a", "duplicate object key"},
		{"duplicate by escape", `{"x":{"a":1,"\u0061":2}}`, "x.a", "duplicate object key"},
		{"path quotes odd keys", `{"a.b":[{"":-1e400}]}`, `["a.b"][0][""]`, "overflows"},
		{"too deep", deep(65), strings.Repeat("[0]", 64), "nesting deeper than 64 levels"},
		{"too deep objects", strings.Repeat(`{"k":`, 65) + "1" + strings.Repeat("}", 65),
			strings.TrimPrefix(strings.Repeat(".k", 64), "."), "nesting deeper"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Transform([]byte(tt.in))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Transform(%q) = %q, %v; want *Error", tt.in, got, err)
			}
			if ce.Path != tt.path || !strings.Contains(ce.Msg, tt.msg) {
				t.Errorf("Transform(%q) error = Path %q Msg %q; want Path %q, Msg containing %q",
					tt.in, ce.Path, ce.Msg, tt.path, tt.msg)
			}
			if json.Valid([]byte(tt.in)) && strings.Contains(tt.msg, "invalid JSON") {
				t.Errorf("case %q is valid JSON but expects a syntax error", tt.in)
			}
		})
	}
}

func TestTransformDepthLimit(t *testing.T) {
	t.Parallel()
	in := strings.Repeat("[", 64) + strings.Repeat("]", 64)
	if got, err := Transform([]byte(in)); err != nil || string(got) != in {
		t.Fatalf("64 levels: %q, %v", got, err)
	}
}

func TestErrorMessage(t *testing.T) {
	t.Parallel()
	e := &Error{Path: "payload.items[2].amount", Msg: "number 9007199254740993 cannot be represented exactly as an IEEE 754 double"}
	want := "payload.items[2].amount: number 9007199254740993 cannot be represented exactly as an IEEE 754 double"
	if e.Error() != want {
		t.Errorf("Error() = %q, want %q", e.Error(), want)
	}
	if got := (&Error{Msg: "m"}).Error(); got != "m" {
		t.Errorf("Error() without path = %q", got)
	}
}
