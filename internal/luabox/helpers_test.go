package luabox

import (
	"regexp"
	"strings"
	"testing"
)

func TestHelpers(t *testing.T) {
	L := NewState()
	defer L.Close()
	OpenHelpers(L)
	for _, tc := range []struct{ expr, want string }{
		{`hex.encode(crypto.sha256("abc"))`, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		// RFC 4231, test case 2.
		{`hex.encode(crypto.hmac_sha256("Jefe", "what do ya want for nothing?"))`, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
		{`base64.encode("hello\0world")`, "aGVsbG8Ad29ybGQ="},
		{`base64.decode("aGVsbG8Ad29ybGQ=") == "hello\0world"`, "true"},
		{`hex.decode("00ff10") == "\0\255\16"`, "true"},
		{`tostring(#crypto.random_bytes(16))`, "16"},
		{`tostring(crypto.random_bytes(16) ~= crypto.random_bytes(16))`, "true"},
		{`tostring(#crypto.random_bytes(0))`, "0"},
		{`tostring(uuid() ~= uuid())`, "true"},
		{`tostring(#hex.encode(string.rep("a", 8 * 1024 * 1024)))`, "16777216"}, // the limit itself fits
		{`tostring(#base64.encode(string.rep("a", 12 * 1024 * 1024)))`, "16777216"},
	} {
		if err := L.DoString("result = " + tc.expr); err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		if got := L.GetGlobal("result").String(); got != tc.want {
			t.Errorf("%s = %q, want %q", tc.expr, got, tc.want)
		}
	}
	if err := L.DoString(`result = uuid()`); err != nil {
		t.Fatal(err)
	}
	if u := L.GetGlobal("result").String(); !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(u) {
		t.Errorf("uuid() = %q, not a version 4 UUID", u)
	}
	for expr, wantErr := range map[string]string{
		`base64.decode("not base64!")`:         "base64.decode",
		`hex.decode("zz")`:                     "hex.decode",
		`crypto.random_bytes(2 * 1024 * 1024)`: "between 0 and 1048576 bytes",
		`crypto.random_bytes(-1)`:              "between 0 and 1048576 bytes",
		`crypto.sha256()`:                      "string expected",
		`crypto.hmac_sha256("k")`:              "string expected",
		// Past the string limit once encoded: refused before encoding.
		`base64.encode(string.rep("a", 12 * 1024 * 1024 + 1))`: "base64.encode: result larger than the limit",
		`hex.encode(string.rep("a", 8 * 1024 * 1024 + 1))`:     "hex.encode: result larger than the limit",
	} {
		err := L.DoString(expr)
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: err %v, want %q", expr, err, wantErr)
		}
	}
}
