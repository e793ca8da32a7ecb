package protocol

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name  string
		frame string
		want  Message
		code  Code // empty: success
	}{
		{"data", `{"type":"data","payload":{"a":[1,2,{"b":null}]},"timestamp":1700000000000,"id":"m1"}`,
			Message{Type: TypeData, ID: "m1", Timestamp: 1700000000000, Payload: []byte(`{"a":[1,2,{"b":null}]}`)}, ""},
		{"ping without timestamp", `{"type":"ping","id":"p"}`, Message{Type: TypePing, ID: "p"}, ""},
		{"pong", `{"type":"pong"}`, Message{Type: TypePong}, ""},
		{"keepalive", `{"type":"keepalive","payload":{"message":"keepalive"}}`,
			Message{Type: TypeKeepAlive, Payload: []byte(`{"message":"keepalive"}`)}, ""},
		{"close", `{"type":"close","payload":{"reason":"bye"}}`, Message{Type: TypeClose, Payload: []byte(`{"reason":"bye"}`)}, ""},
		{"error", `{"type":"error","payload":{"code":"x"}}`, Message{Type: TypeError, Payload: []byte(`{"code":"x"}`)}, ""},
		{"route", `{"type":"data","route":"chat.v2","payload":1}`, Message{Type: TypeData, Route: "chat.v2", Payload: []byte(`1`)}, ""},
		{"auth with sig", `{"type":"auth","payload":{"token":"t"},"sig":"c2ln"}`, Message{Type: TypeAuth, Payload: []byte(`{"token":"t"}`), Sig: "c2ln"}, ""},
		{"sig not a string", `{"type":"data","sig":1}`, Message{}, CodeInvalidMessage},
		{"white space everywhere", " \t{ \"type\" : \"data\" , \"payload\" : [ 1 , \"x\" ] , \"id\" : \"a\" } \r",
			Message{Type: TypeData, ID: "a", Payload: []byte(`[ 1 , "x" ]`)}, ""},
		{"unknown fields ignored", `{"x":{"y":[true,false]},"type":"data","z":"w"}`, Message{Type: TypeData}, ""},
		{"null payload kept", `{"type":"data","payload":null}`, Message{Type: TypeData, Payload: []byte(`null`)}, ""},
		{"null id and route are absent", `{"type":"data","id":null,"route":null,"timestamp":null}`, Message{Type: TypeData}, ""},
		{"escaped id", `{"type":"data","id":"a\"b\\c\u00e9\ud83d\ude00"}`, Message{Type: TypeData, ID: "a\"b\\cé😀"}, ""},
		{"escaped key", `{"\u0074ype":"data"}`, Message{Type: TypeData}, ""},
		{"float timestamp truncated", `{"type":"data","timestamp":1.5e3}`, Message{Type: TypeData, Timestamp: 1500}, ""},
		{"negative timestamp", `{"type":"data","timestamp":-12}`, Message{Type: TypeData, Timestamp: -12}, ""},
		{"huge integer timestamp", `{"type":"data","timestamp":1234567890123456789}`, Message{Type: TypeData, Timestamp: 1234567890123456789}, ""},
		{"publication of a topic with history", `{"type":"data","payload":1,"topic":"news.eu","offset":42,"epoch":"k3x"}`,
			Message{Type: TypeData, Payload: []byte(`1`), Topic: "news.eu", Offset: 42, Epoch: "k3x"}, ""},
		{"offset not an integer", `{"type":"data","offset":1.5}`, Message{}, CodeInvalidMessage},
		{"negative offset", `{"type":"data","offset":-1}`, Message{}, CodeInvalidMessage},
		{"duplicate offset", `{"type":"data","offset":1,"offset":2}`, Message{Offset: 2}, CodeInvalidMessage},
		{"topic too long", `{"type":"data","topic":"` + strings.Repeat("t", MaxTopicLen+1) + `"}`, Message{}, CodeInvalidMessage},
		{"control character in epoch", `{"type":"data","epoch":"a\u0001"}`, Message{}, CodeInvalidMessage},
		{"unicode payload", `{"type":"data","payload":"héllo ✓"}`, Message{Type: TypeData, Payload: []byte(`"héllo ✓"`)}, ""},

		{"not JSON", `hello`, Message{}, CodeInvalidJSON},
		{"truncated", `{"type":"data","payload":{"a":1}`, Message{}, CodeInvalidJSON},
		{"trailing garbage", `{"type":"data"} x`, Message{}, CodeInvalidJSON},
		{"two objects", `{"type":"data"}{"type":"data"}`, Message{}, CodeInvalidJSON},
		{"trailing comma", `{"type":"data",}`, Message{}, CodeInvalidJSON},
		{"single quotes", `{'type':'data'}`, Message{}, CodeInvalidJSON},
		{"bad escape", `{"type":"da\qta"}`, Message{}, CodeInvalidJSON},
		{"bad unicode escape", `{"type":"data","id":"\u12g4"}`, Message{}, CodeInvalidJSON},
		{"control char in string", "{\"type\":\"da\tta\"}", Message{}, CodeInvalidJSON},
		{"invalid UTF-8", "{\"type\":\"data\",\"payload\":\"\xff\xfe\"}", Message{}, CodeInvalidJSON},
		{"NUL byte", "{\"type\":\"data\"}\x00", Message{}, CodeInvalidJSON},
		{"leading zero", `{"type":"data","payload":01}`, Message{}, CodeInvalidJSON},
		{"bad literal", `{"type":"data","payload":tru}`, Message{}, CodeInvalidJSON},
		{"bare minus", `{"type":"data","payload":-}`, Message{}, CodeInvalidJSON},
		{"syntax beats semantics", `{"type":5,"payload":[}`, Message{}, CodeInvalidJSON},
		{"only spaces", `   `, Message{}, CodeInvalidJSON},

		{"newline in route", `{"type":"data","id":"x","route":"T\ndefault"}`, Message{ID: "x"}, CodeInvalidMessage},
		{"newline in id", `{"type":"data","id":"x\nT","route":"default"}`, Message{ID: "x\nT"}, CodeInvalidMessage},
		{"NUL in id", `{"type":"data","id":"a\u0000b"}`, Message{ID: "a\x00b"}, CodeInvalidMessage},
		{"DEL in route", "{\"type\":\"data\",\"route\":\"a\x7f\"}", Message{}, CodeInvalidMessage},
		{"tab in route", `{"type":"data","route":"a\tb"}`, Message{}, CodeInvalidMessage},
		{"slash in route", `{"type":"data","route":"../default"}`, Message{}, CodeInvalidMessage},
		{"route of 129 characters", `{"type":"data","route":"` + strings.Repeat("r", 129) + `"}`, Message{}, CodeInvalidMessage},
		{"route of 128 characters", `{"type":"data","route":"` + strings.Repeat("r", 128) + `"}`, Message{Type: TypeData, Route: strings.Repeat("r", 128)}, ""},
		{"empty route is the default", `{"type":"data","route":""}`, Message{Type: TypeData}, ""},
		{"array", `[1,2]`, Message{}, CodeInvalidMessage},
		{"string", `"data"`, Message{}, CodeInvalidMessage},
		{"empty object", `{}`, Message{}, CodeInvalidMessage},
		{"type missing", `{"payload":1,"id":"x"}`, Message{ID: "x"}, CodeInvalidMessage},
		{"type not a string", `{"type":1,"id":"x"}`, Message{ID: "x"}, CodeInvalidMessage},
		{"type null", `{"type":null}`, Message{}, CodeInvalidMessage},
		{"id not a string", `{"type":"data","id":7}`, Message{Type: ""}, CodeInvalidMessage},
		{"route not a string", `{"type":"data","route":[]}`, Message{}, CodeInvalidMessage},
		{"timestamp not a number", `{"type":"data","timestamp":"now","id":"i"}`, Message{ID: "i"}, CodeInvalidMessage},
		{"timestamp out of range", `{"type":"data","timestamp":1e300}`, Message{}, CodeInvalidMessage},
		{"duplicate type", `{"type":"data","type":"ping"}`, Message{}, CodeInvalidMessage},
		{"duplicate payload", `{"type":"data","payload":1,"payload":2}`, Message{}, CodeInvalidMessage},

		{"unknown type", `{"type":"bogus","id":"u1"}`, Message{ID: "u1"}, CodeUnknownType},
		{"type is case sensitive", `{"type":"DATA"}`, Message{}, CodeUnknownType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m Message
			err := Decode([]byte(tt.frame), &m, Limits{})
			if tt.code == "" {
				if err != nil {
					t.Fatalf("Decode(%s) = %v, want success", tt.frame, err)
				}
				if m.Type != tt.want.Type || m.ID != tt.want.ID || m.Route != tt.want.Route ||
					m.Timestamp != tt.want.Timestamp || string(m.Payload) != string(tt.want.Payload) || m.Sig != tt.want.Sig ||
					(m.Payload == nil) != (tt.want.Payload == nil) {
					t.Fatalf("Decode(%s) = %+v (payload %q), want %+v (payload %q)", tt.frame, m, m.Payload, tt.want, tt.want.Payload)
				}
				return
			}
			var pe *Error
			if !errors.As(err, &pe) || pe.Code != tt.code {
				t.Fatalf("Decode(%s) error = %v, want code %s", tt.frame, err, tt.code)
			}
			if tt.want.ID != "" && m.ID != tt.want.ID {
				t.Fatalf("Decode(%s) id = %q, want %q kept for the error frame", tt.frame, m.ID, tt.want.ID)
			}
		})
	}
}

func TestDecodeDepth(t *testing.T) {
	nested := func(depth int) string {
		// the top-level object is level 1, so the payload adds depth-1 levels
		return `{"type":"data","payload":` + strings.Repeat("[", depth-1) + strings.Repeat("]", depth-1) + `}`
	}
	var m Message
	if err := Decode([]byte(nested(64)), &m, Limits{}); err != nil {
		t.Fatalf("depth 64: %v", err)
	}
	if err := Decode([]byte(nested(65)), &m, Limits{}); !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("depth 65: %v, want invalid_message", err)
	}
	if err := Decode([]byte(nested(3)), &m, Limits{MaxDepth: 2}); !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("depth 3 with limit 2: %v, want invalid_message", err)
	}
	// Far deeper than any stack would allow recursion for.
	deep := `{"type":"data","payload":` + strings.Repeat(`{"a":[`, 500000) + `1` + strings.Repeat(`]}`, 500000) + `}`
	if err := Decode([]byte(deep), &m, Limits{MaxDepth: MaxDepthLimit * 10}); !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("depth 1e6: %v, want invalid_message", err)
	}
	mixed := `{"type":"data","payload":` + strings.Repeat(`{"a":[`, 31) + `{}` + strings.Repeat(`]}`, 31) + `}`
	if err := Decode([]byte(mixed), &m, Limits{}); err != nil {
		t.Fatalf("mixed depth 64: %v", err)
	}
}

// TestDecodeAgreesWithEncodingJSON checks that the scanner accepts exactly
// the frames encoding/json accepts as objects.
func TestDecodeAgreesWithEncodingJSON(t *testing.T) {
	for _, frame := range []string{
		`{"type":"data","payload":{"a":1e5,"b":-0.5E-3,"c":"\/\b\f\n\r\t"}}`,
		`{"type":"data","payload":[[],{},[{}],""]}`,
		`{"type":"data","payload":1.}`, `{"type":"data","payload":.5}`, `{"type":"data","payload":+1}`,
		`{"type":"data","payload":[1,]}`, `{"type":"data","payload":{"a"}}`, `{"type":"data","payload":{1:2}}`,
		`{"type":"data","payload":"\ud800"}`, `{"type":"data","payload":[1 2]}`,
	} {
		var m Message
		ours := Decode([]byte(frame), &m, Limits{}) == nil
		theirs := json.Valid([]byte(frame))
		if ours != theirs {
			t.Errorf("%s: Decode ok=%v, json.Valid=%v", frame, ours, theirs)
		}
	}
}

func TestDecodeAllocs(t *testing.T) {
	frame := []byte(`{"type":"data","payload":{"name":"John","age":30,"email":"john@example.com"},"timestamp":1700000000000,"id":"k1-42"}`)
	var m Message
	allocs := testing.AllocsPerRun(100, func() {
		if err := Decode(frame, &m, Limits{}); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 { // the id string
		t.Fatalf("Decode allocates %v times, want at most 1", allocs)
	}
}

// TestWireConstants pins the wire strings: changing one breaks every peer.
func TestWireConstants(t *testing.T) {
	pins := map[string]string{
		string(TypeData): "data", string(TypePing): "ping", string(TypePong): "pong",
		string(TypeKeepAlive): "keepalive", string(TypeClose): "close", string(TypeError): "error",
		string(CodeInvalidJSON): "invalid_json", string(CodeInvalidMessage): "invalid_message",
		string(CodeUnknownType): "unknown_type", string(CodeFrameTooLarge): "frame_too_large",
		string(CodeHandlerError): "handler_error", string(CodeHandlerTimeout): "handler_timeout",
		string(CodeNoRoute): "no_route", string(TypeAuth): "auth",
		string(CodeUnauthorized): "unauthorized", string(CodeForbidden): "forbidden",
		string(CodeBadSignature): "bad_signature", string(CodeReplay): "replay", string(CodeRateLimited): "rate_limited",
	}
	for got, want := range pins {
		if got != want {
			t.Errorf("wire constant %q, want %q", got, want)
		}
	}
	if DefaultMaxFrameSize != 1<<20 || DefaultMaxDepth != 64 {
		t.Errorf("default limits changed: %d, %d", DefaultMaxFrameSize, DefaultMaxDepth)
	}
}

func BenchmarkDecode(b *testing.B) {
	frame := []byte(`{"type":"data","payload":{"name":"John","age":30,"email":"john@example.com","tags":["a","b"],"n":1.5},"timestamp":1700000000000,"id":"k1-42"}`)
	var m Message
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if err := Decode(frame, &m, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}
