package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"
	"testing/iotest"
	"unicode/utf8"
)

// seedFrames are real frames of every type and some broken ones.
var seedFrames = []string{
	`{"type":"data","payload":{"name":"John","age":30,"email":"john@example.com"},"timestamp":1700000000000,"id":"k1-1"}`,
	`{"type":"ping","payload":{"message":"ping"},"timestamp":1700000000000,"id":"k1-2"}`,
	`{"type":"pong","payload":{"message":"pong"},"timestamp":1700000000000,"id":"k1-2"}`,
	`{"type":"keepalive","payload":{"message":"keepalive"},"timestamp":1700000000000}`,
	`{"type":"close","payload":{"reason":"bye"}}`,
	`{"type":"data","route":"chat","payload":[1,"two",{"3":null},true,-4.5e6],"id":"\u00e9\"x"}`,
	`{"type":"data","payload":[[[[[[[[]]]]]]]]}`,
	`{"type":"bogus"}`, `{"type":1}`, `[1,2]`, `{"type":"data",}`, "{\"type\":\"\xff\"}", `{"type":"data","payload":"\ud800"}`,
}

// FuzzReader feeds arbitrary streams, split at an arbitrary point, through
// Reader and Decode. Frames must come out the same whatever the split, never
// exceed the limit, and Decode must agree with encoding/json on validity.
func FuzzReader(f *testing.F) {
	for _, s := range seedFrames {
		f.Add([]byte(s+"\n"+s+"\r\n"), uint16(len(s)/2))
	}
	f.Add([]byte("\n\n\r\n"), uint16(1))
	f.Fuzz(func(t *testing.T, stream []byte, split uint16) {
		const max = 512
		limits := Limits{MaxFrameSize: max}
		whole, wholeErr := frames(bytes.NewReader(stream), limits)
		cut := int(split) % (len(stream) + 1)
		parts, partsErr := frames(io.MultiReader(bytes.NewReader(stream[:cut]), iotest.OneByteReader(bytes.NewReader(stream[cut:]))), limits)
		if len(whole) != len(parts) || errors.Is(wholeErr, ErrFrameTooLarge) != errors.Is(partsErr, ErrFrameTooLarge) {
			t.Fatalf("split at %d changed the result: %d frames (%v) vs %d (%v)", cut, len(whole), wholeErr, len(parts), partsErr)
		}
		for i := range whole {
			if !bytes.Equal(whole[i], parts[i]) {
				t.Fatalf("frame %d differs when split: %q vs %q", i, whole[i], parts[i])
			}
			if len(whole[i]) > max {
				t.Fatalf("frame of %d bytes passed a limit of %d", len(whole[i]), max)
			}
			checkDecode(t, whole[i])
		}
	})
}

// FuzzDecode checks Decode against encoding/json and that a decoded message
// survives an encode/decode round trip.
func FuzzDecode(f *testing.F) {
	for _, s := range seedFrames {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		if bytes.IndexByte(frame, '\n') >= 0 {
			return // Reader never yields a frame with a newline
		}
		checkDecode(t, frame)
	})
}

func checkDecode(t *testing.T, frame []byte) {
	if got, want := EncodedStringLen(string(frame)), len(AppendString(nil, string(frame))); got != want {
		t.Fatalf("EncodedStringLen(%q) = %d, AppendString appends %d", frame, got, want)
	}
	var m Message
	err := Decode(frame, &m, Limits{MaxDepth: MaxDepthLimit})
	var pe *Error
	if err != nil && !errors.As(err, &pe) {
		t.Fatalf("Decode(%q) returned a non-protocol error %v", frame, err)
	}
	valid := json.Valid(frame) && utf8.Valid(frame) // the protocol also demands UTF-8
	if pe != nil && pe.Code == CodeInvalidJSON && valid {
		t.Fatalf("Decode(%q) = invalid_json, but encoding/json accepts it", frame)
	}
	if err == nil && !valid {
		t.Fatalf("Decode(%q) accepted what encoding/json rejects", frame)
	}
	if err != nil {
		return
	}
	if m.Payload != nil && !json.Valid(m.Payload) {
		t.Fatalf("payload %q of %q is not valid JSON", m.Payload, frame)
	}
	out := AppendFrame(nil, &m)
	var back Message
	if err := Decode(out[:len(out)-1], &back, Limits{MaxDepth: MaxDepthLimit}); err != nil {
		t.Fatalf("re-encoded %q does not decode: %v", out, err)
	}
	if back.Type != m.Type || back.ID != m.ID || back.Route != m.Route || !bytes.Equal(back.Payload, m.Payload) {
		t.Fatalf("round trip of %q: %+v vs %+v", frame, back, m)
	}
}

func frames(r io.Reader, limits Limits) ([][]byte, error) {
	fr := NewReader(r, limits)
	var out [][]byte
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return out, err
		}
		out = append(out, bytes.Clone(f))
	}
}
