package protocol

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestAppendFrame(t *testing.T) {
	tests := []struct {
		name string
		msg  Message
		want string
	}{
		{"data", Message{Type: TypeData, ID: "m1", Timestamp: 5, Payload: []byte(`{"a":1}`)},
			`{"type":"data","payload":{"a":1},"timestamp":5,"id":"m1"}`},
		{"route", Message{Type: TypeData, ID: "m1", Route: "chat", Timestamp: 5, Payload: []byte(`1`)},
			`{"type":"data","payload":1,"timestamp":5,"id":"m1","route":"chat"}`},
		{"publication", Message{Type: TypeData, ID: "s-1", Route: "news", Timestamp: 5, Payload: []byte(`1`), Topic: "news.eu", Offset: 7, Epoch: "e1"},
			`{"type":"data","payload":1,"timestamp":5,"id":"s-1","route":"news","topic":"news.eu","offset":7,"epoch":"e1"}`},
		{"no payload, no id", Message{Type: TypePong, Timestamp: 7}, `{"type":"pong","timestamp":7}`},
		{"escaped id", Message{Type: TypeData, ID: "a\"b\\\n\x01\u2028é", Timestamp: 1},
			`{"type":"data","timestamp":1,"id":"a\"b\\\n\u0001\u2028é"}`},
		{"invalid UTF-8 id", Message{Type: TypeData, ID: "a\xffb", Timestamp: 1}, `{"type":"data","timestamp":1,"id":"a\ufffdb"}`},
		{"newline in payload white space", Message{Type: TypeData, Timestamp: 1, Payload: []byte("{\n\"a\": 1\n}")},
			`{"type":"data","payload":{ "a": 1 },"timestamp":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(AppendFrame(nil, &tt.msg))
			if got != tt.want+"\n" {
				t.Fatalf("AppendFrame = %s, want %s", got, tt.want)
			}
			var back Message
			err := Decode([]byte(strings.TrimSuffix(got, "\n")), &back, Limits{})
			if strings.ContainsAny(tt.msg.ID, "\n\x01") {
				// Encoded faithfully, but control characters in an id are
				// refused on the way in (they would make signatures ambiguous).
				if err == nil || err.(*Error).Code != CodeInvalidMessage {
					t.Fatalf("an id with control characters decoded: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("the frame does not decode: %v", err)
			}
			if back.ID != strings.ToValidUTF8(tt.msg.ID, "\ufffd") || back.Route != tt.msg.Route || back.Type != tt.msg.Type ||
				back.Topic != tt.msg.Topic || back.Offset != tt.msg.Offset || back.Epoch != tt.msg.Epoch {
				t.Fatalf("round trip %+v, want %+v", back, tt.msg)
			}
		})
	}
}

func TestAppendFrameDefaultsTimestamp(t *testing.T) {
	before := Now()
	var m Message
	if err := Decode(AppendFrame(nil, &Message{Type: TypePing})[:0:0], &m, Limits{}); err == nil {
		t.Fatal("an empty frame must not decode")
	}
	frame := AppendFrame(nil, &Message{Type: TypePing})
	if err := Decode(frame[:len(frame)-1], &m, Limits{}); err != nil {
		t.Fatal(err)
	}
	if m.Timestamp < before || m.Timestamp > Now() {
		t.Fatalf("timestamp %d not the current time", m.Timestamp)
	}
}

func TestAppendErrorFrame(t *testing.T) {
	got := string(AppendErrorFrame(nil, "x1", Errorf(CodeUnknownType, "unknown message type %q", "bogus")))
	var f struct {
		Type    string `json:"type"`
		ID      string `json:"id"`
		Payload struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"payload"`
	}
	if err := json.Unmarshal([]byte(got), &f); err != nil {
		t.Fatalf("%s: %v", got, err)
	}
	if f.Type != "error" || f.ID != "x1" || f.Payload.Code != "unknown_type" || f.Payload.Message != `unknown message type "bogus"` {
		t.Fatalf("error frame %s", got)
	}
	// A plain Go error never reaches the peer.
	got = string(AppendErrorFrame(nil, "", errBoom{}))
	if !strings.Contains(got, `"code":"handler_error","message":"internal error"`) || strings.Contains(got, "secret") {
		t.Fatalf("generic error frame %s", got)
	}
}

type errBoom struct{}

func (errBoom) Error() string { return "secret internals" }

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", "quote\"back\\slash", "tab\tnl\ncr\r", "\x00\x1f", "ünïcödé ✓ 😀", "\u2028\u2029"} {
		got := AppendString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil || back != s {
			t.Errorf("AppendString(%q) = %s, decodes to %q (%v)", s, got, back, err)
		}
	}
}

// EncodedStringLen must be exactly what AppendString appends: bounded
// encoders refuse by it before they build (FuzzDecode checks it too).
func TestEncodedStringLenIsWhatAppendStringAppends(t *testing.T) {
	var every strings.Builder
	for b := range 256 {
		every.WriteByte(byte(b))
	}
	for _, s := range []string{"", "plain", "quote\"back\\slash", "tab\tnl\ncr\r", "\x00\x1f\x7f", "ünïcödé ✓ 😀",
		"\u2028\u2029", "\xff\xfe", "\xe2\x80", "a\xe2\x80\xa8b", every.String(), strings.Repeat("x\x01é\xff\u2029", 100)} {
		if got, want := EncodedStringLen(s), len(AppendString(nil, s)); got != want {
			t.Errorf("EncodedStringLen(%q) = %d, AppendString appends %d", s, got, want)
		}
	}
}

func TestDecodeEncodeAllocs(t *testing.T) {
	frame := []byte(`{"type":"data","payload":{"text":"` + strings.Repeat("p", 100) + `"},"timestamp":1700000000000,"id":"k1-42"}`)
	buf := make([]byte, 0, 512)
	var m Message
	allocs := testing.AllocsPerRun(100, func() {
		if err := Decode(frame, &m, Limits{}); err != nil {
			t.Fatal(err)
		}
		buf = AppendFrame(buf[:0], &m)
	})
	if allocs > 2 {
		t.Fatalf("decode + encode of a 128-byte payload allocates %v times, want at most 2", allocs)
	}
}

func BenchmarkAppendFrame(b *testing.B) {
	m := Message{Type: TypeData, ID: "k1-42", Timestamp: 1700000000000,
		Payload: []byte(`{"name":"John","age":30,"email":"john@example.com","tags":["a","b"],"n":1.5}`)}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendFrame(buf[:0], &m)
	}
}

func BenchmarkDecodeEncode128(b *testing.B) {
	frame := []byte(`{"type":"data","payload":{"text":"` + strings.Repeat("p", 115) + `"},"timestamp":1700000000000,"id":"k1-42"}`)
	buf := make([]byte, 0, 512)
	var m Message
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if err := Decode(frame, &m, Limits{}); err != nil {
			b.Fatal(err)
		}
		buf = AppendFrame(buf[:0], &m)
	}
}

func TestAppendSigned(t *testing.T) {
	m := Message{Type: TypeData, ID: "a-1", Timestamp: 1700000000123, Route: "chat", Payload: []byte(`{"x": 1}`)}
	want := "samgw-sig-v1\na-1\n1700000000123\nchat\n{\"x\": 1}"
	if got := string(AppendSigned(nil, &m)); got != want {
		t.Fatalf("signed bytes %q, want %q", got, want)
	}
	m.Route, m.Payload = "", nil
	if got := string(AppendSigned(nil, &m)); got != "samgw-sig-v1\na-1\n1700000000123\n\n" {
		t.Fatalf("signed bytes without route and payload %q", got)
	}
	frame := AppendFrame(nil, &Message{Type: TypeData, ID: "x", Timestamp: 1, Sig: "c2ln"})
	if !strings.HasSuffix(string(frame), `,"sig":"c2ln"}`+"\n") {
		t.Fatalf("frame %s", frame)
	}
}
