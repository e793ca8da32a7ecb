package luabox

import (
	"fmt"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"

	"github.com/secureagentmessaging/samgw/protocol"
)

// TestObjectKeysAreSharedWithinBounds: repeated keys share one string, keys
// with escapes or past the length decode as before, and a peer sending ever
// new keys cannot grow what a converter keeps.
func TestObjectKeysAreSharedWithinBounds(t *testing.T) {
	L := NewState()
	defer L.Close()
	c := NewConverter(L)
	long := strings.Repeat("k", maxSharedKeyLen+5)
	for _, tc := range []struct{ in, key, want string }{
		{`{"name":1}`, "name", "1"},
		{`{"a\"b":2}`, `a"b`, "2"},
		{`{"\u00e9t\u00e9":3}`, "été", "3"},
		{`{"` + long + `":4}`, long, "4"},
		{`{"":5}`, "", "5"},
	} {
		for range 2 { // the second time from the shared keys
			v, err := c.Decode([]byte(tc.in))
			if err != nil {
				t.Fatalf("%s: %v", tc.in, err)
			}
			if got := v.(*lua.LTable).RawGetString(tc.key).String(); got != tc.want {
				t.Fatalf("%s: [%q] = %s, want %s", tc.in, tc.key, got, tc.want)
			}
		}
	}
	for i := range 10 * maxSharedKeys {
		if _, err := c.Decode(fmt.Appendf(nil, `{"key%d":%d}`, i, i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(c.keys); n > maxSharedKeys {
		t.Fatalf("%d keys kept, want at most %d", n, maxSharedKeys)
	}
	for k := range c.keys {
		if len(k) > maxSharedKeyLen {
			t.Fatalf("kept a key of %d bytes", len(k))
		}
	}
	// The keys kept still decode right, and so do new ones past the bound.
	v, err := c.Decode([]byte(`{"name":7,"key99999":8}`))
	if err != nil || v.(*lua.LTable).RawGetString("name").String() != "7" || v.(*lua.LTable).RawGetString("key99999").String() != "8" {
		t.Fatalf("%v, %v", v, err)
	}
}

// TestJSONEncodeReusesItsBufferSafely: json.encode encodes into a kept
// buffer, yet each result is a string of its own, and a large result's
// buffer is not kept.
func TestJSONEncodeReusesItsBufferSafely(t *testing.T) {
	L := NewState()
	defer L.Close()
	c := NewConverter(L)
	OpenJSON(L, c)
	if err := L.DoString(`
		a = json.encode({x = "first"})
		b = json.encode({y = "second"})
		big = json.encode({z = string.rep("z", 100000)})
		c = json.encode({w = 1})
		back = json.decode(a)
	`); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"a": `{"x":"first"}`, "b": `{"y":"second"}`, "c": `{"w":1}`} {
		if got := L.GetGlobal(name).String(); got != want {
			t.Errorf("%s = %s, want %s", name, got, want)
		}
	}
	if got := len(L.GetGlobal("big").String()); got != 100000+len(`{"z":""}`) {
		t.Errorf("big is %d bytes", got)
	}
	if cap(c.scratch) > maxScratch {
		t.Errorf("kept a %d-byte buffer, want at most %d", cap(c.scratch), maxScratch)
	}
	if got := L.GetGlobal("back").(*lua.LTable).RawGetString("x").String(); got != "first" {
		t.Errorf("decode of a: x = %s", got)
	}
}

// TestDecodeUntrustedChecksAsValidDoes: text from a script is checked in the
// same pass that decodes it, and everything protocol.Valid refuses is
// refused, with the byte it failed at.
func TestDecodeUntrustedChecksAsValidDoes(t *testing.T) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	conv := NewConverter(L)
	for _, tc := range []struct{ in, want string }{
		{`{"a":"b\x"}`, "invalid escape"},
		{`{"a":"b\u12"}`, "invalid \\u escape"},
		{"{\"a\":\"b\tc\"}", "control character in string"},
		{"{\"a\xff\":1}", "invalid UTF-8"},
		{"[\"\xc3\"]", "invalid UTF-8"},
		{`[01]`, "expected ',' or ']'"},
		{`[1.]`, "invalid number"},
		{`[1e]`, "invalid number"},
		{`[-]`, "invalid number"},
		{`[1-2]`, "expected ',' or ']'"},
		{`{"a":1} x`, "unexpected data after the value"},
		{`[1,]`, "expected a value"},
		{`{"a":1,}`, "expected a string key"},
		{`[tru]`, "invalid literal"},
		{`"abc`, "unterminated string"},
		{strings.Repeat("[", maxDecodeDepth+1) + strings.Repeat("]", maxDecodeDepth+1), "nesting deeper than"},
		{``, "unexpected end of input"},
	} {
		if protocol.Valid([]byte(tc.in), maxDecodeDepth) == nil {
			t.Fatalf("%q: protocol.Valid accepts it: not a case", tc.in)
		}
		_, err := conv.DecodeUntrusted([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("DecodeUntrusted(%q) = %v, want an error saying %q", tc.in, err, tc.want)
		}
	}
	v, err := conv.DecodeUntrusted([]byte(" {\"k\xc3\xa9\":[-0.5e+2,\"\\u00e9\\n\",true,null]} \n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := encodeOrError(conv, v); got != `{"ké":[-50,"é\n",true,null]}` {
		t.Fatalf("decoded %s", got)
	}
}
