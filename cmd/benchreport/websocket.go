package main

import (
	"fmt"
	"log"
	"net"
	"strconv"
	"strings"
	"time"
)

// freePort returns a loopback port nothing listens on now.
func freePort() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// websocket measures the Lua echo at 64 × 16 over TCP and over the
// WebSocket transport (without and with permessage-deflate negotiated) of
// the same server, alternating, and reports the ratios.
func (r *reporter) websocket(duration time.Duration) string {
	tcpPort, httpPort := freePort(), freePort()
	r.startSamgw(r.bin, "--listen", "127.0.0.1:"+tcpPort, "--http-listen", "127.0.0.1:"+httpPort)
	ws := "ws://127.0.0.1:" + httpPort + "/v1/ws"
	servers := []server{
		{"Lua echo over TCP", "127.0.0.1:" + tcpPort},
		{"Lua echo over WebSocket", ws},
		{"Lua echo over WebSocket, permessage-deflate negotiated", ws + "#deflate"},
	}
	c := config{64, 16}
	res := r.alternate(servers, c, duration)
	var b strings.Builder
	fmt.Fprintf(&b, "| transport (64 connections × 16 in flight, %d s, %d rounds; one server) | frames/s (median) | p99 ms |\n| --- | ---: | ---: |\n", int(duration.Seconds()), r.rounds)
	for _, s := range servers {
		fmt.Fprintf(&b, "| %s | %.0f | %.2f |\n", s.name, res[s.name].FramesPerSec, res[s.name].P99)
	}
	fmt.Fprintf(&b, "\nWebSocket / TCP, median of the rounds' ratios: %.3f; with deflate: %.3f\n",
		r.roundRatio(servers[1].name, servers[0].name, c), r.roundRatio(servers[2].name, servers[0].name, c))
	return b.String()
}
