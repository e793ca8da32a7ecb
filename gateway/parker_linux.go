package gateway

import (
	"container/heap"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// parkingSupported: quiet connections are held without a goroutine here.
const parkingSupported = true

// parker holds quiet plain-TCP connections without a goroutine: their
// sockets wait in an epoll set of the server's own, watched by one
// goroutine, and a connection gets a reader goroutine again only when its
// peer sends something, its keep-alive timeout passes, or it is asked to
// close. A goroutine is the largest part of what a quiet connection costs
// (its stack); a parked connection costs its structs and its socket.
//
// The socket stays registered with Go's own netpoller too; an fd may be in
// several epoll sets, and the reader that resumes reads through it as
// before. Registrations are level-triggered and one-shot, so data that
// arrived before the registration wakes the connection at once, and one
// event wakes it once.
type parker struct {
	epfd         int
	wakeR, wakeW int // a pipe that stops the loop
	timeout      time.Duration
	done         chan struct{}

	mu       sync.Mutex
	conns    map[int32]*Conn // parked or once parked, by socket fd
	deadline deadlineHeap    // keep-alive timeouts of parked connections
	stopped  bool
}

// newParker returns a parker, or nil if the system does not give one.
func newParker(keepAliveTimeout time.Duration) *parker {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil
	}
	var pipe [2]int
	if err := syscall.Pipe2(pipe[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		syscall.Close(epfd)
		return nil
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(pipe[0])}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, pipe[0], &ev); err != nil {
		syscall.Close(epfd)
		syscall.Close(pipe[0])
		syscall.Close(pipe[1])
		return nil
	}
	return &parker{epfd: epfd, wakeR: pipe[0], wakeW: pipe[1], timeout: keepAliveTimeout,
		done: make(chan struct{}), conns: make(map[int32]*Conn)}
}

// run waits for parked sockets to become readable and resumes their
// connections, until stop.
func (p *parker) run() {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 256)
	for {
		n, err := syscall.EpollWait(p.epfd, events, -1)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return
		}
		for _, ev := range events[:n] {
			if int(ev.Fd) == p.wakeR {
				return
			}
			p.mu.Lock()
			c := p.conns[ev.Fd]
			p.mu.Unlock()
			if c != nil {
				c.w.unpark()
			}
		}
	}
}

// stop ends run and releases the epoll set; connections still parked must
// have been woken (Shutdown asks them all to close first).
func (p *parker) stop() {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	p.stopped = true
	p.mu.Unlock()
	syscall.Write(p.wakeW, []byte{0}) //nolint:errcheck // a full pipe wakes it as well
	<-p.done
	syscall.Close(p.epfd)
	syscall.Close(p.wakeR)
	syscall.Close(p.wakeW)
}

// park hands c's socket to the epoll set; the calling reader goroutine
// must return at once when it reports true. It reports false when c cannot
// be parked (the reader then carries on itself).
func (p *parker) park(c *Conn) bool {
	w := c.w
	if w.fd < 0 {
		return false
	}
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return false
	}
	w.parkSeq++
	if p.timeout > 0 {
		heap.Push(&p.deadline, parkedDeadline{due: w.lastFrame.Load() + int64(p.timeout), c: c, seq: w.parkSeq})
	}
	p.conns[int32(w.fd)] = c
	op := syscall.EPOLL_CTL_MOD
	if !w.inEpoll {
		op = syscall.EPOLL_CTL_ADD
	}
	w.parked.Store(true)
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(w.fd)}
	err := syscall.EpollCtl(p.epfd, op, w.fd, &ev)
	if err == nil {
		w.inEpoll = true
	}
	p.mu.Unlock()
	if err != nil {
		// Not parked after all: whoever wins the flag carries on.
		return !w.parked.CompareAndSwap(true, false)
	}
	// A close asked for while we were parking found no parked reader to
	// wake: look again now that we are.
	if w.closeRequested.Load() || w.dead.Load() {
		w.unpark()
	}
	return true
}

// testHookForget, when set (by tests only), runs as forget begins, so a
// test can hold a reader there and force an interleaving.
var testHookForget atomic.Pointer[func(*Conn)]

// forget removes c's socket from the epoll set before it is closed (its fd
// number may be reused by the next connection). The reader that owns the
// socket calls it, and closes the socket only after it: nothing else
// closes a server connection's socket (wire.abort only wakes the reader),
// so the number it removes is still this connection's.
func (p *parker) forget(c *Conn) {
	if hook := testHookForget.Load(); hook != nil {
		(*hook)(c)
	}
	w := c.w
	p.mu.Lock() // inEpoll too: a parking goroutine may still be writing it
	defer p.mu.Unlock()
	if !w.inEpoll {
		return
	}
	if !p.stopped {
		syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, w.fd, nil) //nolint:errcheck // closing the socket removes it anyway
	}
	if p.conns[int32(w.fd)] == c {
		delete(p.conns, int32(w.fd))
	}
	w.inEpoll = false
}

// expire wakes the parked connections whose keep-alive timeout has passed:
// their reader finds the deadline gone and closes them. The keep-alive
// scheduler calls it every tick.
func (p *parker) expire(now int64) {
	p.mu.Lock()
	var due []*Conn
	for p.deadline.Len() > 0 && p.deadline[0].due <= now {
		d := heap.Pop(&p.deadline).(parkedDeadline)
		if d.c.w.parkSeq == d.seq && d.c.w.parked.Load() {
			due = append(due, d.c)
		}
	}
	p.mu.Unlock()
	for _, c := range due {
		c.w.unpark()
	}
}

// parkedDeadline is when a parked connection's keep-alive timeout passes;
// seq tells a stale entry (the connection woke and parked again since).
type parkedDeadline struct {
	due int64
	c   *Conn
	seq uint64
}

type deadlineHeap []parkedDeadline

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].due < h[j].due }
func (h deadlineHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *deadlineHeap) Push(x any)        { *h = append(*h, x.(parkedDeadline)) }
func (h *deadlineHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = parkedDeadline{}
	*h = old[:len(old)-1]
	return x
}

// socketFD returns the fd of a plain TCP socket, or -1.
func socketFD(w *wire) int {
	if w.raw == nil {
		return -1
	}
	fd := -1
	if err := w.raw.Control(func(s uintptr) { fd = int(s) }); err != nil {
		return -1
	}
	return fd
}

// parkedCount is how many connections are parked now (for tests and
// metrics).
func (p *parker) parkedCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.conns {
		if c.w.parked.Load() {
			n++
		}
	}
	return n
}
