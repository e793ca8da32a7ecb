package protocol

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"
)

func TestPayloadsRoundTrip(t *testing.T) {
	if e := ParseError(AppendErrorPayload(nil, CodeNoRoute, `no "x"`)); e.Code != CodeNoRoute || e.Message != `no "x"` {
		t.Fatalf("error payload: %+v", e)
	}
	if r := ParseClose(AppendReasonPayload(nil, "reason", "server shutdown")); r != "server shutdown" {
		t.Fatalf("close payload: %q", r)
	}
	if tok := ParseAuthToken(AppendAuthPayload(nil, "t\u00e9\"k")); tok != "t\u00e9\"k" {
		t.Fatalf("auth payload: %q", tok)
	}
	if id := ParseAuthReply(AppendAuthReply(nil, "agent-a")); id != "agent-a" {
		t.Fatalf("auth reply: %q", id)
	}
}

func TestParsePayloads(t *testing.T) {
	tests := []struct {
		name, payload string
		parse         func([]byte) string
		want          string
	}{
		{"close reason", `{"reason":"bye"}`, ParseClose, "bye"},
		{"close message", `{"message":"Connection closed by client"}`, ParseClose, "Connection closed by client"},
		{"close reason wins", `{"message":"m","reason":"r"}`, ParseClose, "r"},
		{"close nothing", `{}`, ParseClose, ""},
		{"close not an object", `"bye"`, ParseClose, ""},
		{"token among other fields", `{"x":[1,{"y":"z"}],"token":"abc","n":null}`, ParseAuthToken, "abc"},
		{"escaped key and value", `{"\u0074oken":"a\nb"}`, ParseAuthToken, "a\nb"},
		{"token not a string", `{"token":123}`, ParseAuthToken, ""},
		{"token in a nested object only", `{"inner":{"token":"no"}}`, ParseAuthToken, ""},
		{"truncated", `{"token":"abc`, ParseAuthToken, ""},
		{"empty", ``, ParseAuthToken, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.parse([]byte(tt.payload)); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
	if e := ParseError([]byte(`{"message":"no code"}`)); e.Code != CodeInvalidMessage {
		t.Fatalf("an error payload without a code: %+v", e)
	}
}

func TestSignAndVerify(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	m := Message{Type: TypeData, ID: "m1", Timestamp: 1764100000000, Route: "chat", Payload: []byte(`{"a":1}`)}
	Sign(priv, &m)
	scratch, err := Verify(pub, &m, nil)
	if err != nil {
		t.Fatalf("a fresh signature: %v", err)
	}
	if string(scratch) != "samgw-sig-v1\nm1\n1764100000000\nchat\n{\"a\":1}" {
		t.Fatalf("signed bytes %q", scratch)
	}
	for name, mutate := range map[string]func(*Message){
		"payload":    func(m *Message) { m.Payload = []byte(`{"a":2}`) },
		"route":      func(m *Message) { m.Route = "other" },
		"timestamp":  func(m *Message) { m.Timestamp++ },
		"missing":    func(m *Message) { m.Sig = "" },
		"unpadded":   func(m *Message) { m.Sig = strings.Repeat("A", 88) },
		"not base64": func(m *Message) { m.Sig = "!" + m.Sig[1:] },
	} {
		t.Run(name, func(t *testing.T) {
			c := m
			mutate(&c)
			if _, err := Verify(pub, &c, nil); CodeOf(err) != CodeBadSignature {
				t.Fatalf("got %v, want bad_signature", err)
			}
		})
	}
}

func TestParseJob(t *testing.T) {
	for _, tc := range []struct {
		payload string
		job     string
		ok, err bool
	}{
		{`{"job":"j-1"}`, "j-1", true, false},
		{`{"job":"a\u00e9"}`, "aé", true, false},
		{`{"seq":3}`, "", false, false},
		{`{"job":""}`, "", true, true},
		{`{"job":7}`, "", true, true},
		{`{"job":null}`, "", true, true},
		{`{"job":"a\nb"}`, "", true, true},
		{`{"job":"` + strings.Repeat("x", MaxJobLen+1) + `"}`, "", true, true},
	} {
		job, ok, err := ParseJob([]byte(tc.payload))
		if job != tc.job || ok != tc.ok || (err != nil) != tc.err {
			t.Errorf("ParseJob(%.40s) = %q, %v, %v", tc.payload, job, ok, err)
		}
	}
	if got := string(AppendJobPayload(nil, `a"b`)); got != `{"job":"a\"b"}` {
		t.Errorf("AppendJobPayload = %s", got)
	}
}

func TestJobField(t *testing.T) {
	var m Message
	if err := Decode([]byte(`{"type":"data","route":"q","job":"j1","payload":1}`), &m, Limits{}); err != nil || m.Job != "j1" {
		t.Fatalf("Decode: %+v, %v", m, err)
	}
	if got := string(AppendFrame(nil, &Message{Type: TypeData, Route: "q", Job: "j1", Timestamp: 5, Payload: []byte(`1`)})); !strings.Contains(got, `"route":"q","job":"j1"`) {
		t.Fatalf("AppendFrame: %s", got)
	}
	for _, bad := range []string{`{"type":"data","job":3}`, `{"type":"data","job":"a\u0000"}`, `{"type":"data","job":"a","job":"b"}`} {
		if err := Decode([]byte(bad), &m, Limits{}); err == nil {
			t.Errorf("Decode(%s) accepted", bad)
		}
	}
	for _, typ := range []string{"nack", "progress"} {
		if err := Decode([]byte(`{"type":"`+typ+`","payload":{"job":"j"}}`), &m, Limits{}); err != nil || string(m.Type) != typ {
			t.Errorf("type %s: %v", typ, err)
		}
	}
}

func TestCompressOption(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", `{"compress":"deflate"}`},
		{"{}", `{"compress":"deflate"}`},
		{`{"token":"t"}`, `{"token":"t","compress":"deflate"}`},
		{`{"token":"t","resume":true}`, `{"token":"t","resume":true,"compress":"deflate"}`},
	} {
		got := string(AppendCompressOption([]byte(tc.in), CompressDeflate))
		if got != tc.want {
			t.Errorf("AppendCompressOption(%q) = %s, want %s", tc.in, got, tc.want)
		}
		if a := ParseCompress([]byte(got)); a != CompressDeflate {
			t.Errorf("ParseCompress(%s) = %q", got, a)
		}
	}
	for _, p := range []string{`{}`, `{"compress":1}`, `{"compress":null}`, `not json`} {
		if a := ParseCompress([]byte(p)); a != "" {
			t.Errorf("ParseCompress(%s) = %q, want none", p, a)
		}
	}
}
