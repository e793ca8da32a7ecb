package luabox

import (
	"testing"

	lua "github.com/yuin/gopher-lua"
)

func TestExactIntegers(t *testing.T) {
	L := lua.NewState()
	defer L.Close()
	conv := NewConverter(L)
	OpenJSON(L, conv)
	in := `{"id":12345678901234567890,"n":9007199254740993,"neg":-9223372036854775809,"edge":9007199254740992,"small":42,"f":1.5e300,"list":[18446744073709551616,1]}`
	v, err := conv.DecodeUntrusted([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	L.SetGlobal("p", v)
	// Round trip through a handler that does not compute with them.
	out, err := conv.Encode(nil, v)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":12345678901234567890,"n":9007199254740993,"neg":-9223372036854775809,"edge":9007199254740992,"small":42,"f":1.5e+300,"list":[18446744073709551616,1]}`
	if string(out) != want {
		t.Errorf("round trip:\n got %s\nwant %s", out, want)
	}
	for _, tc := range []struct{ expr, want string }{
		{`tostring(p.id)`, "12345678901234567890"},
		{`"id " .. p.id .. "!"`, "id 12345678901234567890!"},
		{`type(p.id)`, "userdata"},
		{`tostring(json.is_exact(p.id)) .. tostring(json.is_exact(p.small)) .. tostring(json.is_exact(p.edge))`, "truefalsefalse"},
		{`tostring(p.n == json.decode("9007199254740993"))`, "true"},
		{`tostring(p.n == json.decode("9007199254740994"))`, "false"},
		{`tostring(p.n < json.decode("9007199254740994"))`, "true"},
		{`tostring(p.neg < p.n)`, "true"},
		{`tostring(p.id >= p.n)`, "true"},
		{`tostring(p.n + 1)`, "9007199254740992"}, // arithmetic is in floats: …993 is …992 there
		{`tostring(-p.n)`, "-9007199254740992"},
		{`tostring(p.small + p.small)`, "84"},
		{`json.encode({x = p.list[1]})`, `{"x":18446744073709551616}`},
		{`tostring(p.n == 9007199254740993)`, "false"}, // a userdata never equals a number (Lua 5.1)
	} {
		if err := L.DoString(`result = ` + tc.expr); err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		if got := L.GetGlobal("result").String(); got != tc.want {
			t.Errorf("%s = %s, want %s", tc.expr, got, tc.want)
		}
	}
	if err := L.DoString(`getmetatable(p.id).__eq = nil`); err == nil {
		t.Error("the exact integers' metatable can be changed")
	}
}

func TestNeedsExact(t *testing.T) {
	for num, want := range map[string]bool{
		"9007199254740992": false, "-9007199254740992": false, "9007199254740993": true,
		"123456789012345": false, "1234567890123456": false, "99999999999999999": true, "-9007199254740993": true,
	} {
		if got := needsExact([]byte(num)); got != want {
			t.Errorf("needsExact(%s) = %v, want %v", num, got, want)
		}
	}
}
