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
//
// The load generator's WebSocket client costs more per frame than the
// server does (it masks every frame, as clients must), so with one core
// each the generator can be the limit: the report also gives the frames
// per second of the server's own CPU time, which compares the transports
// per server core whoever is the limit.
func (r *reporter) websocket(duration time.Duration) string {
	tcpPort, httpPort := freePort(), freePort()
	addr := r.startSamgw(r.bin, "--listen", "127.0.0.1:"+tcpPort, "--http-listen", "127.0.0.1:"+httpPort)
	pid := r.pids[addr]
	ws := "ws://127.0.0.1:" + httpPort + "/v1/ws"
	servers := []server{
		{"Lua echo over TCP", "127.0.0.1:" + tcpPort},
		{"Lua echo over WebSocket", ws},
		{"Lua echo over WebSocket, permessage-deflate negotiated", ws + "#deflate"},
	}
	c := config{64, 16}
	perCore := map[string][]float64{}
	var b strings.Builder
	fmt.Fprintf(&b, "| round | transport (64 connections × 16 in flight, %d s; one server) | frames/s | p99 ms | server CPU | frames per server CPU second |\n| --- | --- | ---: | ---: | ---: | ---: |\n", int(duration.Seconds()))
	for round := range r.rounds {
		for _, s := range servers {
			before := cpuSeconds(pid)
			res, err := r.load(s.addr, c, duration)
			if err != nil || res.Errors != 0 {
				log.Fatalf("%s: %v (%d errors: %s)", s.name, err, res.Errors, res.FirstError)
			}
			cpu := cpuSeconds(pid) - before
			fpc := res.FramesPerSec * res.ElapsedSec / max(cpu, 0.01)
			perCore[s.name] = append(perCore[s.name], fpc)
			fmt.Fprintf(&b, "| %d | %s | %.0f | %.2f | %.0f%% | %.0f |\n", round+1, s.name, res.FramesPerSec, res.P99, 100*cpu/res.ElapsedSec, fpc)
		}
	}
	ratio := func(a, z string) float64 {
		var rs []float64
		for i := range perCore[a] {
			rs = append(rs, perCore[a][i]/perCore[z][i])
		}
		return median(rs)
	}
	fmt.Fprintf(&b, "\nPer server CPU second, WebSocket / TCP, median of the rounds: %.3f; with deflate: %.3f\n",
		ratio(servers[1].name, servers[0].name), ratio(servers[2].name, servers[0].name))
	return b.String()
}
