package protocol

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func readAll(t *testing.T, r *Reader) []string {
	t.Helper()
	var frames []string
	for {
		f, err := r.ReadFrame()
		if errors.Is(err, io.EOF) {
			return frames
		}
		if err != nil {
			t.Fatalf("ReadFrame after %q: %v", frames, err)
		}
		frames = append(frames, string(f))
	}
}

func TestReaderFraming(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  []string
	}{
		{"one frame", "{\"a\":1}\n", []string{`{"a":1}`}},
		{"several in one write", "a\nb\nc\n", []string{"a", "b", "c"}},
		{"CRLF", "a\r\nb\r\n", []string{"a", "b"}},
		{"empty lines skipped", "\n\r\n\na\n\n\nb\n", []string{"a", "b"}},
		{"final frame without newline", "a\nb", []string{"a", "b"}},
		{"final CR", "a\r", []string{"a"}},
		{"nothing", "", nil},
		{"CR inside a frame is kept", "a\rb\n", []string{"a\rb"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, split := range []struct {
				name string
				r    func(io.Reader) io.Reader
			}{
				{"whole", func(r io.Reader) io.Reader { return r }},
				{"byte by byte", iotest.OneByteReader},
				{"half", iotest.HalfReader},
				{"data with EOF", iotest.DataErrReader},
			} {
				got := readAll(t, NewReader(split.r(strings.NewReader(tt.input)), Limits{}))
				if strings.Join(got, "|") != strings.Join(tt.want, "|") || len(got) != len(tt.want) {
					t.Fatalf("%s: frames %q, want %q", split.name, got, tt.want)
				}
			}
		})
	}
}

func TestReaderLimit(t *testing.T) {
	const max = 10000
	exact := strings.Repeat("x", max)
	over := strings.Repeat("x", max+1)
	tests := []struct {
		name   string
		input  string
		want   []string
		tooBig bool
	}{
		{"exactly the limit", exact + "\n" + "a\n", []string{exact, "a"}, false},
		{"exactly the limit with CRLF", exact + "\r\n", []string{exact}, false},
		{"one byte over", over + "\n", nil, true},
		{"one byte over with CRLF", over + "\r\n", nil, true},
		{"one byte over at EOF", over, nil, true},
		{"after good frames", "a\nb\n" + over + "\n", []string{"a", "b"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(iotest.HalfReader(strings.NewReader(tt.input)), Limits{MaxFrameSize: max})
			var got []string
			var err error
			for {
				var f []byte
				f, err = r.ReadFrame()
				if err != nil {
					break
				}
				got = append(got, string(f))
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Fatalf("frames %d, want %d", len(got), len(tt.want))
			}
			if tt.tooBig != errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("error %v, want too large: %v", err, tt.tooBig)
			}
			if !tt.tooBig && !errors.Is(err, io.EOF) {
				t.Fatalf("error %v, want EOF", err)
			}
		})
	}
}

// countingReader produces an endless line without a newline and counts what
// was taken from it.
type countingReader struct{ n int }

func (c *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	c.n += len(p)
	return len(p), nil
}

func TestReaderNeverBuffersPastTheLimit(t *testing.T) {
	const max = 1 << 20
	src := &countingReader{}
	r := NewReader(src, Limits{MaxFrameSize: max})
	if _, err := r.ReadFrame(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("endless line: %v, want frame too large", err)
	}
	if src.n > max+2 {
		t.Fatalf("read %d bytes of an endless line, want at most the limit + 2 (%d)", src.n, max+2)
	}
	if cap(r.buf) > max+2 {
		t.Fatalf("buffer grew to %d bytes, want at most %d", cap(r.buf), max+2)
	}
}

func TestReaderShrinksAfterLargeFrame(t *testing.T) {
	big := strings.Repeat("y", 200<<10)
	r := NewReader(strings.NewReader(big+"\nsmall\n"), Limits{})
	if f, err := r.ReadFrame(); err != nil || len(f) != len(big) {
		t.Fatalf("big frame: %d bytes, %v", len(f), err)
	}
	if f, err := r.ReadFrame(); err != nil || string(f) != "small" {
		t.Fatalf("small frame: %q, %v", f, err)
	}
	if _, err := r.ReadFrame(); !errors.Is(err, io.EOF) {
		t.Fatalf("end: %v", err)
	}
	if len(r.buf) > retainReadBuffer {
		t.Fatalf("buffer still %d bytes after the large frame was consumed", len(r.buf))
	}
}

// chunkReader returns its chunks one Read at a time, as a peer that
// trickles does.
type chunkReader struct{ chunks []string }

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	if c.chunks[0] = c.chunks[0][n:]; c.chunks[0] == "" {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

// TestReaderShrinksWhileSmallFramesTrickle: after a large frame, the start
// of the next small frame already in the buffer does not keep the large
// buffer alive while tiny frames trickle in.
func TestReaderShrinksWhileSmallFramesTrickle(t *testing.T) {
	big := strings.Repeat("y", 1<<20)
	chunks := []string{big + "\n{"}
	for range 20 {
		chunks = append(chunks, "}\n{")
	}
	r := NewReader(&chunkReader{chunks: chunks}, Limits{MaxFrameSize: 2 << 20})
	if f, err := r.ReadFrame(); err != nil || len(f) != len(big) {
		t.Fatalf("big frame: %d bytes, %v", len(f), err)
	}
	for i := range 20 {
		if f, err := r.ReadFrame(); err != nil || string(f) != "{}" {
			t.Fatalf("small frame %d: %q, %v", i, f, err)
		}
		if len(r.buf) > retainReadBuffer {
			t.Fatalf("buffer still %d bytes after small frame %d", len(r.buf), i)
		}
	}
}

func TestReaderSetMaxFrameSize(t *testing.T) {
	r := NewReader(strings.NewReader("short\n"+strings.Repeat("z", 100)+"\n"), Limits{MaxFrameSize: 1 << 20})
	r.SetMaxFrameSize(10)
	if f, err := r.ReadFrame(); err != nil || string(f) != "short" {
		t.Fatalf("within the lowered limit: %q, %v", f, err)
	}
	if _, err := r.ReadFrame(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("past the lowered limit: %v", err)
	}
}

func TestReaderReturnsReadError(t *testing.T) {
	boom := errors.New("boom")
	r := NewReader(io.MultiReader(strings.NewReader("a\nb"), iotest.ErrReader(boom)), Limits{})
	if f, err := r.ReadFrame(); err != nil || string(f) != "a" {
		t.Fatalf("first: %q %v", f, err)
	}
	if f, err := r.ReadFrame(); !errors.Is(err, boom) {
		t.Fatalf("partial frame before a failure: %q %v, want boom", f, err)
	}
	if _, err := r.ReadFrame(); !errors.Is(err, boom) {
		t.Fatalf("error %v, want boom", err)
	}
}

func BenchmarkReader(b *testing.B) {
	frame := []byte(`{"type":"data","payload":{"name":"John","age":30,"email":"john@example.com"},"timestamp":1700000000000,"id":"k1-42"}` + "\n")
	stream := bytes.Repeat(frame, 1000)
	b.ReportAllocs()
	b.SetBytes(int64(len(stream)))
	src := bytes.NewReader(stream)
	r := NewReader(src, Limits{})
	for b.Loop() {
		src.Reset(stream)
		for range 1000 {
			if _, err := r.ReadFrame(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// TestReaderSwitch changes the stream's encoding after a frame: the bytes
// already buffered behind it are read through the new decoder too.
func TestReaderSwitch(t *testing.T) {
	// After "first\n" every byte is upper-cased on the wire; the switch
	// lowers it again.
	r := NewReader(strings.NewReader("first\nSECOND\nTHIRD\n"), Limits{MaxFrameSize: 64})
	f, err := r.ReadFrame()
	if err != nil || string(f) != "first" {
		t.Fatalf("first frame: %q, %v", f, err)
	}
	r.Switch(func(rest io.Reader) io.Reader { return lowerReader{rest} })
	for _, want := range []string{"second", "third"} {
		f, err := r.ReadFrame()
		if err != nil || string(f) != want {
			t.Fatalf("after the switch: %q, %v; want %q", f, err, want)
		}
	}
	if _, err := r.ReadFrame(); err != io.EOF {
		t.Fatalf("at the end: %v, want io.EOF", err)
	}
}

type lowerReader struct{ r io.Reader }

func (l lowerReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	copy(p[:n], bytes.ToLower(p[:n]))
	return n, err
}
