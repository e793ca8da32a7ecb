package luabox

import (
	"bytes"
	"encoding/json"
	"math"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"

	"github.com/secureagentmessaging/samgw/protocol"
)

// FuzzLuaConversion checks the JSON → Lua → JSON path every payload takes
// through a Lua handler: whatever valid JSON comes in, the value that comes
// out is valid JSON equal to it (numbers as doubles), or a clear error for
// numbers a double cannot hold.
func FuzzLuaConversion(f *testing.F) {
	for _, seed := range []string{
		`{"name":"John","age":30,"email":"john@example.com"}`, `[]`, `{}`, `[[],{},[{}]]`, `null`, `[1,null,3]`,
		`{"a":{"b":{"c":[1,2,{"d":"e"}]}}}`, `"\u0000\ud83d\ude00"`, `1e400`, `-0`, `123456789012345678901234567890`,
		`{"1":"x","2":"y"}`, `{"a":1,"a":2}`, `[true,false,"\\\"\n"]`,
	} {
		f.Add([]byte(seed))
	}
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	conv := NewConverter(L)
	f.Fuzz(func(t *testing.T, data []byte) {
		if protocol.Valid(data, maxDecodeDepth) != nil {
			if _, err := conv.DecodeUntrusted(data); err == nil {
				t.Fatalf("decodeUntrusted accepted invalid JSON %q", data)
			}
			return
		}
		v, err := conv.Decode(data)
		if err != nil {
			t.Fatalf("decode of valid JSON %q: %v", data, err)
		}
		// The one-pass check accepts what Valid accepts, and decodes the same.
		u, err := conv.DecodeUntrusted(data)
		if err != nil {
			t.Fatalf("decodeUntrusted refused valid JSON %q: %v", data, err)
		}
		if a, b := encodeOrError(conv, v), encodeOrError(conv, u); a != b {
			t.Fatalf("%q: Decode gives %s, DecodeUntrusted %s", data, a, b)
		}
		out, err := conv.Encode(nil, v)
		if err != nil {
			if hasInfinity(v) {
				return // 1e400 and the like: reported, not sent
			}
			t.Fatalf("encode of %q: %v", data, err)
		}
		if !json.Valid(out) {
			t.Fatalf("%q became invalid JSON %q", data, out)
		}
		in, err := decodeNumbers(data)
		if err != nil {
			t.Fatalf("%q: %v", data, err)
		}
		back, err := decodeNumbers(out)
		if err != nil {
			t.Fatalf("%q → %q: %v", data, out, err)
		}
		if !reflect.DeepEqual(normalise(in), normalise(back)) {
			t.Fatalf("%q came back as %q", data, out)
		}
	})
}

func hasInfinity(v lua.LValue) bool {
	switch v := v.(type) {
	case lua.LNumber:
		return math.IsInf(float64(v), 0)
	case *lua.LTable:
		found := false
		v.ForEach(func(_, item lua.LValue) { found = found || hasInfinity(item) })
		return found
	}
	return false
}

// decodeNumbers decodes JSON keeping numbers as text (json.Number), so
// integers of any size compare exactly.
func decodeNumbers(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
}

// normalise makes decoded JSON comparable across the conversion: invalid
// UTF-8 is replaced the same way on both sides by encoding/json; integers
// compare by value (exactly, whatever their size: -0 is 0), other numbers
// as float64s.
func normalise(v any) any {
	switch v := v.(type) {
	case json.Number:
		if !strings.ContainsAny(string(v), ".eE") {
			n, ok := new(big.Int).SetString(string(v), 10)
			if ok {
				return n.String()
			}
		}
		f, _ := strconv.ParseFloat(string(v), 64)
		if f == math.Trunc(f) && math.Abs(f) <= 1<<53 {
			return strconv.FormatInt(int64(f), 10) // 0e+0 and 0 are one number
		}
		return f
	case map[string]any:
		for k, item := range v {
			v[k] = normalise(item)
		}
	case []any:
		for i, item := range v {
			v[i] = normalise(item)
		}
	}
	return v
}

// encodeOrError is the JSON of v, or its encoding error's text.
func encodeOrError(conv *Converter, v lua.LValue) string {
	out, err := conv.Encode(nil, v)
	if err != nil {
		return "error: " + err.Error()
	}
	return string(out)
}
