package protocol

import (
	"errors"
	"io"
	"slices"
	"testing"
)

// readySource feeds chunks through ReadReady and records whether the Reader
// held a buffer each time it had to wait for the peer.
type readySource struct {
	r          *Reader
	chunks     []string // "" means: nothing there yet (EAGAIN), then the next chunk
	heldOnWait []bool   // at each wait: after an EAGAIN in ReadReady, or in a plain Read
	releases   int
}

// Read is what the Reader uses while part of a frame is unread: it holds
// a buffer then anyway.
func (s *readySource) Read(p []byte) (int, error) {
	s.heldOnWait = append(s.heldOnWait, s.r.buf != nil)
	if len(s.chunks) == 0 {
		return 0, io.EOF
	}
	c := s.chunks[0]
	s.chunks = s.chunks[1:]
	return copy(p, c), nil
}

func (s *readySource) ReadReady(buf func() []byte, release func()) (int, error) {
	for len(s.chunks) > 0 {
		c := s.chunks[0]
		s.chunks = s.chunks[1:]
		p := buf()
		if c == "" {
			release() // as a socket that had nothing after all, before it waits
			s.releases++
			s.heldOnWait = append(s.heldOnWait, s.r.buf != nil)
			continue
		}
		return copy(p, c), nil
	}
	return 0, io.EOF
}

func TestReaderWaitsWithoutABuffer(t *testing.T) {
	src := &readySource{chunks: []string{`{"a":1}` + "\n" + `{"b"`, `:2}` + "\n", "", "", `{"c":3}` + "\n\n"}}
	r := NewReader(src, Limits{})
	src.r = r
	if r.buf != nil {
		t.Fatal("a new Reader of a ReadySource holds a buffer")
	}
	var got []string
	for {
		f, err := r.ReadFrame()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(f))
	}
	if want := []string{`{"a":1}`, `{"b":2}`, `{"c":3}`}; !slices.Equal(got, want) {
		t.Fatalf("frames %q, want %q", got, want)
	}
	// It held a buffer only while part of a frame was unread ({"b"), never
	// while waiting with nothing unread.
	if want := []bool{true, false, false}; !slices.Equal(src.heldOnWait, want) {
		t.Fatalf("buffer held on each wait: %v, want %v", src.heldOnWait, want)
	}
	if src.releases != 2 {
		t.Fatalf("releases = %d, want 2", src.releases)
	}
}

func TestReaderResumeAfterATransientError(t *testing.T) {
	errWake := errors.New("woken")
	steps := []func(p []byte) (int, error){
		func(p []byte) (int, error) { return copy(p, `{"x"`), nil },
		func([]byte) (int, error) { return 0, errWake },
		func(p []byte) (int, error) { return copy(p, ":1}\n"), nil },
	}
	r := NewReader(readerFunc(func(p []byte) (int, error) {
		if len(steps) == 0 {
			return 0, io.EOF
		}
		f := steps[0]
		steps = steps[1:]
		return f(p)
	}), Limits{})
	if _, err := r.ReadFrame(); !errors.Is(err, errWake) {
		t.Fatalf("err = %v, want the wake-up", err)
	}
	r.Resume()
	f, err := r.ReadFrame()
	if err != nil || string(f) != `{"x":1}` {
		t.Fatalf("after Resume: %q, %v; want the frame whose start was buffered before the error", f, err)
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
