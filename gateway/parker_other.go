//go:build !linux

package gateway

import "time"

// parkingSupported: quiet connections keep a goroutine here.
const parkingSupported = false

// parker is Linux-only (epoll); elsewhere quiet readers move to fresh
// goroutines but keep one.
type parker struct{}

func newParker(time.Duration) *parker { return nil }
func (p *parker) run()                {}
func (p *parker) stop()               {}
func (p *parker) park(*Conn) bool     { return false }
func (p *parker) forget(*Conn)        {}
func (p *parker) expire(int64)        {}
func socketFD(*wire) int              { return -1 }
func (p *parker) parkedCount() int    { return 0 }
