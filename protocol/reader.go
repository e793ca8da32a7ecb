package protocol

import (
	"bytes"
	"io"
	"sync"
)

// Reader sizes: a connection starts with a small buffer (most frames are
// small and idle connections should cost little) and grows it up to the frame
// limit only while a large frame is being read.
const (
	initialReadBuffer = 4 << 10
	retainReadBuffer  = 64 << 10
)

// Reader splits a stream into frames. A frame ends with "\n" or "\r\n";
// empty lines are skipped. It never buffers more than the frame limit plus
// the line ending, whatever the peer sends.
//
// A Reader is not safe for concurrent use.
type Reader struct {
	r          io.Reader
	ready      ReadySource   // r, when it can wait without a buffer
	take       func() []byte // takeBuffer and releaseBuffer as func values, made once
	release    func()
	buf        []byte      // nil while waiting on a ReadySource with nothing unread
	pooled     *readBuffer // where buf came from, when it came from the pool
	start, end int         // unread bytes are buf[start:end]
	scanned    int         // bytes of buf[start:end] known to hold no '\n'
	max        int
	err        error // sticky read error, returned once buffered frames are consumed
}

// NewReader returns a Reader of r that accepts frames of at most
// limits.MaxFrameSize bytes.
//
// When r is also a ReadySource, the Reader holds no buffer while it waits
// for the peer with nothing unread: it takes a pooled one when data is
// there and gives it back when everything read has been returned as
// frames, so a quiet connection costs no read buffer.
func NewReader(r io.Reader, limits Limits) *Reader {
	max := limits.maxFrameSize()
	rd := &Reader{r: r, max: max}
	if rs, ok := r.(ReadySource); ok {
		rd.ready, rd.take, rd.release = rs, rd.takeBuffer, rd.releaseBuffer
		return rd
	}
	rd.buf = make([]byte, min(initialReadBuffer, max+2))
	return rd
}

// ReadySource is a source that can wait for the peer without a buffer.
// ReadReady blocks until data is ready, then reads it into the slice buf()
// returns (calling buf only then) and reports what a Read would. When it
// called buf but found nothing to read after all, it calls release before
// waiting again.
type ReadySource interface {
	ReadReady(buf func() []byte, release func()) (int, error)
}

// readBuffer is a pooled read buffer of the initial size.
type readBuffer [initialReadBuffer]byte

var readBuffers = sync.Pool{New: func() any { return new(readBuffer) }}

// takeBuffer gives the Reader a buffer when it has none and returns the
// free part; it is the buf callback of ReadReady.
func (r *Reader) takeBuffer() []byte {
	if r.buf == nil {
		r.pooled = readBuffers.Get().(*readBuffer)
		r.buf = r.pooled[:min(initialReadBuffer, r.max+2)]
		r.start, r.end, r.scanned = 0, 0, 0
	}
	return r.buf[r.end:]
}

// releaseBuffer gives the buffer back while nothing unread is in it.
func (r *Reader) releaseBuffer() {
	if r.buf == nil || r.start != r.end {
		return
	}
	if r.pooled != nil {
		readBuffers.Put(r.pooled)
	}
	r.buf, r.pooled = nil, nil
	r.start, r.end, r.scanned = 0, 0, 0
}

// SetMaxFrameSize changes the frame limit for the frames still to be read:
// a server reads with a small limit until the peer has authenticated.
func (r *Reader) SetMaxFrameSize(n int) {
	if n > 0 {
		r.max = n
	}
}

// Resume clears the error of a read that failed for a reason the caller
// made and knows to be passing (a read deadline set only to wake the
// reader): reading goes on where it stopped, buffered bytes kept. It must
// not be used after io.EOF or an oversized frame.
func (r *Reader) Resume() { r.err = nil }

// Switch makes the Reader read, from here on, what wrap makes of the rest
// of the stream: the bytes it holds but has not returned as frames, then
// its source. The stream changes its encoding at this point (a compressed
// stream starts after the auth frame). The Reader keeps a buffer of its own
// from then on: wrap's reader cannot wait without one.
func (r *Reader) Switch(wrap func(rest io.Reader) io.Reader) {
	rest := r.r
	if r.start < r.end {
		unread := bytes.Clone(r.buf[r.start:r.end])
		rest = io.MultiReader(bytes.NewReader(unread), r.r)
	}
	r.r = wrap(rest)
	r.ready, r.take, r.release = nil, nil, nil
	r.start, r.end, r.scanned = 0, 0, 0
	r.err = nil
}

// Buffered returns how many bytes have been read from the underlying reader
// but not yet returned as frames.
func (r *Reader) Buffered() int { return r.end - r.start }

// ReadFrame returns the next non-empty frame without its line ending. The
// slice aliases the Reader's buffer and is valid until the next call.
//
// A frame longer than the limit yields an error matching ErrFrameTooLarge;
// the stream is then out of step and the Reader must not be used again. At
// a clean end of the stream (io.EOF), a final frame without a line ending is
// returned before io.EOF; after any other read error, a partial frame is
// dropped and the error returned.
func (r *Reader) ReadFrame() ([]byte, error) {
	for {
		if i := bytes.IndexByte(r.buf[r.start+r.scanned:r.end], '\n'); i >= 0 {
			lineEnd := r.start + r.scanned + i
			line := r.buf[r.start:lineEnd]
			r.start = lineEnd + 1
			r.scanned = 0
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
			if len(line) == 0 {
				continue
			}
			if len(line) > r.max {
				return nil, r.tooLarge()
			}
			return line, nil
		}
		r.scanned = r.end - r.start
		// Without a newline, more than max+1 bytes ("\r" may follow the
		// frame) can only be an oversized frame.
		if r.scanned > r.max+1 {
			return nil, r.tooLarge()
		}
		if r.err != nil {
			if r.err == io.EOF {
				return r.finalFrame()
			}
			return nil, r.err // a partial frame before a failure is not a frame
		}
		var n int
		var err error
		if r.ready != nil && r.start == r.end {
			// Nothing unread: the source gives the buffer back (release)
			// if it has to wait for the peer, and takes one (take) when
			// data is there; while data keeps coming the buffer stays.
			r.start, r.end, r.scanned = 0, 0, 0
			if len(r.buf) > retainReadBuffer {
				r.releaseBuffer() // after a large frame: back to a small one
			}
			n, err = r.ready.ReadReady(r.take, r.release)
		} else {
			r.takeBuffer()
			r.makeRoom()
			n, err = r.r.Read(r.buf[r.end:])
		}
		r.end += n
		if err != nil {
			r.err = err
		}
	}
}

// finalFrame returns what is left after the stream ended, if anything.
func (r *Reader) finalFrame() ([]byte, error) {
	line := bytes.TrimSuffix(r.buf[r.start:r.end], []byte{'\r'})
	r.start, r.end, r.scanned = 0, 0, 0
	if len(line) == 0 {
		return nil, r.err
	}
	if len(line) > r.max {
		return nil, r.tooLarge()
	}
	return line, nil
}

// makeRoom ensures buf has free space after end: it moves unread bytes to
// the front, grows the buffer (up to the limit) when it is full, and drops a
// grown buffer once the large frame that needed it is gone, even when the
// start of a small frame is already buffered behind it (a peer trickling
// tiny frames after one large one must not keep the large buffer).
func (r *Reader) makeRoom() {
	unread := r.end - r.start
	if r.start > 0 {
		if len(r.buf) > retainReadBuffer && unread <= initialReadBuffer/2 {
			small := make([]byte, initialReadBuffer)
			copy(small, r.buf[r.start:r.end])
			r.buf, r.pooled = small, nil
		} else {
			copy(r.buf, r.buf[r.start:r.end])
		}
		r.start, r.end = 0, unread
	}
	if r.end < len(r.buf) {
		return
	}
	size := 2 * len(r.buf)
	if limit := max(r.max+2, len(r.buf)); size > limit {
		size = limit
	}
	if size <= len(r.buf) {
		return // full at the limit: ReadFrame reports the oversized frame
	}
	grown := make([]byte, size)
	copy(grown, r.buf[:r.end])
	if r.pooled != nil {
		readBuffers.Put(r.pooled)
		r.pooled = nil
	}
	r.buf = grown
}

func (r *Reader) tooLarge() error {
	r.err = Errorf(CodeFrameTooLarge, "frame exceeds the limit of %d bytes", r.max)
	return r.err
}
