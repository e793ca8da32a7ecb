// Command benchreport produces the benchmark tables of docs/performance.md: it builds
// samgw, starts it as (a) the Go echo, (b) the embedded Lua echo and (c) a Lua
// handler that decodes, transforms and re-encodes, plus (d) the HAProxy + Lua
// + cjson peer and (f, g) the OpenResty stream-lua peer (echo and transform)
// found in the -peers folder (default $SAMGW_BENCH_PEERS; none without it), and measures each with 1, 16 and 64
// connections and pipelines of 1 and 16, alternating servers within each
// configuration so they share the machine's conditions. With -pin (the
// default where taskset exists and there are two cores or more) every server
// runs on core 0 (samgw with GOMAXPROCS=1, the peers with one worker) and
// the load generator on core 1, so servers are compared per core. Then it
// measures memory per held connection. -rounds N repeats every measurement
// N times, alternating, and reports medians (this machine's neighbours make
// single runs vary by ±15%).
//
// -durable runs the durable delivery benchmarks instead (mailboxes, work
// queues, topic history: go test -bench in ./delivery and ./reliability),
// each group once a round.
//
// -cores 1,2 is the scaling mode instead: for each count S, the Go echo,
// the Lua echo and the Lua transform (GOMAXPROCS=S) and the OpenResty peer
// (S workers) run on cores 0..S-1 and the load generator on the others
// (on all of them when none are left), at 64 connections × 16.
// Run it from the repository root:
//
//	go run ./cmd/benchreport [-seconds 5] [-rounds 3] [-pin=false] [-cores 1,2] [-peer …] [-openresty …]
package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/secureagentmessaging/samgw/bench"
)

// peerPath is the peer script name in dir, or "" (no such peer) without a
// folder.
func peerPath(dir, name string) string {
	if dir == "" {
		return ""
	}
	return filepath.Join(dir, name)
}

func main() {
	seconds := flag.Int("seconds", 5, "length of each measurement")
	peers := flag.String("peers", os.Getenv("SAMGW_BENCH_PEERS"), "folder of the peer scripts (haproxy-peer.sh, openresty-peer.sh); empty: samgw's rows only")
	_, tasksetErr := exec.LookPath("taskset")
	pin := flag.Bool("pin", tasksetErr == nil && runtime.NumCPU() >= 2, "servers on core 0, the load generator on core 1")
	memoryOnly := flag.Bool("memory-only", false, "measure only the memory per held connection")
	rounds := flag.Int("rounds", 1, "measure each configuration this many times, alternating servers, and report medians")
	cores := flag.String("cores", "", "scaling mode: comma-separated core counts for the servers (e.g. 1,2)")
	rolesOnly := flag.Bool("roles", false, "measure only what role checks cost: the Lua echo with identities, without and with 100 roles of 1,000 patterns, at 64 × 16")
	wsOnly := flag.Bool("ws", false, "measure only the WebSocket transport: the Lua echo at 64 × 16 over TCP and over WebSocket (without and with deflate) of one server, alternating")
	durableOnly := flag.Bool("durable", false, "measure only durable delivery: the mailbox, work queue and topic history benchmarks (go test -bench), their rounds alternating")
	flag.Parse()
	peerScript, openresty := peerPath(*peers, "haproxy-peer.sh"), peerPath(*peers, "openresty-peer.sh")
	if *rounds < 1 {
		log.Fatal("-rounds must be at least 1")
	}
	if *durableOnly {
		fmt.Print(durableReport(*rounds))
		return
	}
	dir, err := os.MkdirTemp("", "samgw-report")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()
	r := &reporter{cleanup: func(f func()) { cleanups = append(cleanups, f) }, rounds: *rounds}
	if *pin {
		r.serverCores, r.loadCores, r.procs = "0", "1", 1
	}
	bin, transform := build(dir)
	r.bin = bin
	if *cores != "" {
		fmt.Print(r.scaling(*cores, openresty, transform, time.Duration(*seconds)*time.Second))
		return
	}
	if *rolesOnly {
		fmt.Print(r.roles(dir, time.Duration(*seconds)*time.Second))
		return
	}
	if *wsOnly {
		fmt.Print(r.websocket(time.Duration(*seconds) * time.Second))
		return
	}
	if *memoryOnly {
		fmt.Printf("Memory per held connection (Lua echo server, %d connections): %s\n", heldConns, r.heldMemory(bin))
		return
	}
	servers := []server{
		{"(a) samgw Go echo (--no-scripts)", r.startSamgw(bin, "--no-scripts")},
		{"(b) samgw Lua echo (default)", r.startSamgw(bin)},
		{"(c) samgw Lua decode/transform/encode", r.startSamgw(bin, "--scripts", transform)},
	}
	if peer := r.startPeer(peerScript, "HAProxy"); peer != "" {
		servers = append(servers, server{peerName, peer})
	}
	servers = append(servers, server{"(e) samgw Go echo, --one-frame-per-write", r.startSamgw(bin, "--no-scripts", "--one-frame-per-write")})
	if peer := r.startPeer(openresty, "OpenResty"); peer != "" {
		servers = append(servers, server{openrestyName, peer})
	}
	if peer := r.startPeer(openresty, "OpenResty", "TRANSFORM=1"); peer != "" {
		servers = append(servers, server{openrestyTransformName, peer})
	}
	duration := time.Duration(*seconds) * time.Second
	results := r.measure(servers, duration)
	fmt.Print(table(servers, results, *seconds, r.serverCores != "", *rounds))
	if *rounds > 1 {
		fmt.Print(r.roundRatios(servers))
	}
	fmt.Printf("\nMemory per held connection (Lua echo server, %d connections): %s\n", heldConns, r.heldMemory(bin))
}

// Names of the peers' rows.
const (
	peerName               = "(d) HAProxy 2.6 + Lua + lua-cjson"
	openrestyName          = "(f) OpenResty stream-lua echo (LuaJIT + cjson)"
	openrestyTransformName = "(g) OpenResty stream-lua transform (TRANSFORM=1)"
)

// server is one server under measurement.
type server struct {
	name, addr string
}

// config is one load shape.
type config struct{ conns, pipeline int }

// configs are the load shapes of the table.
var configs = []config{{1, 1}, {1, 16}, {16, 1}, {16, 16}, {64, 1}, {64, 16}}

// build compiles samgw into dir and writes the transform handler; it
// returns the binary and the transform's scripts directory.
func build(dir string) (bin, transform string) {
	bin = filepath.Join(dir, "samgw")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/samgw").CombinedOutput(); err != nil {
		log.Fatalf("build (run from the repository root): %v\n%s", err, out)
	}
	transform = filepath.Join(dir, "transform")
	os.MkdirAll(transform, 0o755)
	os.WriteFile(filepath.Join(transform, "default.lua"), []byte(`
-- decode, transform, re-encode: the payload comes back equal, so replies check out
function on_data(msg)
  local p = msg.payload
  p.d = string.lower(string.upper(p.d))
  return json.decode(json.encode(p))
end`), 0o644)
	return bin, transform
}

// measure runs every load shape against every server, alternating servers
// within each shape so they share the machine's conditions.
func (r *reporter) measure(servers []server, duration time.Duration) map[string]map[config]bench.Result {
	results := make(map[string]map[config]bench.Result)
	for _, s := range servers {
		results[s.name] = make(map[config]bench.Result)
	}
	for _, c := range configs {
		for name, res := range r.alternate(servers, c, duration) {
			results[name][c] = res
		}
	}
	return results
}

// alternate measures every server with load c, r.rounds times in turn, and
// returns each one's median run (by frames/s).
func (r *reporter) alternate(servers []server, c config, duration time.Duration) map[string]bench.Result {
	runs := make(map[string][]bench.Result)
	for range r.rounds {
		for _, s := range servers {
			res, err := r.load(s.addr, c, duration)
			if err != nil || res.Errors != 0 {
				log.Fatalf("%s %+v: %v (%d errors: %s)", s.name, c, err, res.Errors, res.FirstError)
			}
			runs[s.name] = append(runs[s.name], res)
			log.Printf("%s conns=%d pipeline=%d: %.0f frames/s p99 %.3f ms", s.name, c.conns, c.pipeline, res.FramesPerSec, res.P99)
		}
	}
	if r.byRound == nil {
		r.byRound = make(map[config]map[string][]bench.Result)
	}
	r.byRound[c] = make(map[string][]bench.Result)
	medians := make(map[string]bench.Result)
	for name, rs := range runs {
		r.byRound[c][name] = slices.Clone(rs)
		slices.SortFunc(rs, func(a, b bench.Result) int { return cmp.Compare(a.FramesPerSec, b.FramesPerSec) })
		medians[name] = rs[len(rs)/2]
	}
	return medians
}

// roundRatio is the median over the rounds of a's frames/s over b's in the
// same round, with load c: neighbours in time share the machine's state, so
// on a noisy machine this ratio is steadier than the ratio of the medians.
func (r *reporter) roundRatio(a, b string, c config) float64 {
	as, bs := r.byRound[c][a], r.byRound[c][b]
	ratios := make([]float64, 0, len(as))
	for i := range min(len(as), len(bs)) {
		ratios = append(ratios, as[i].FramesPerSec/bs[i].FramesPerSec)
	}
	return median(ratios)
}

// median of xs (NaN for none); xs is sorted in place.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	slices.Sort(xs)
	if n := len(xs); n%2 == 0 {
		return (xs[n/2-1] + xs[n/2]) / 2
	}
	return xs[len(xs)/2]
}

// load runs one measurement: in this process, or, when the report pins,
// as a `samgw bench` process of its own on the load cores (on any core when
// the servers have them all).
func (r *reporter) load(addr string, c config, duration time.Duration) (bench.Result, error) {
	ws, deflate := strings.CutSuffix(addr, "#deflate")
	if !strings.HasPrefix(ws, "ws://") {
		ws = ""
	}
	if r.serverCores == "" {
		cfg := bench.Config{Addr: addr, Conns: c.conns, Pipeline: c.pipeline, Size: 128, Duration: duration, Token: r.token}
		if ws != "" {
			cfg.Dial = bench.DialWebSocket(ws, deflate)
		}
		return bench.Run(context.Background(), cfg)
	}
	args := []string{r.bin, "bench", "--addr", addr, "--conns", strconv.Itoa(c.conns),
		"--pipeline", strconv.Itoa(c.pipeline), "--size", "128", "--duration", duration.String(), "--json"}
	if ws != "" {
		args = append(args, "--ws", ws)
		if deflate {
			args = append(args, "--ws-compress")
		}
	}
	if r.token != "" {
		args = append(args, "--token", r.token)
	}
	if r.loadCores != "" {
		args = append([]string{"taskset", "-c", r.loadCores}, args...)
	}
	out, err := exec.Command(args[0], args[1:]...).Output()
	if err != nil {
		return bench.Result{}, fmt.Errorf("samgw bench: %w", err)
	}
	var res bench.Result
	if err := json.Unmarshal(out, &res); err != nil {
		return bench.Result{}, fmt.Errorf("samgw bench output %q: %w", out, err)
	}
	return res, nil
}

// table formats the results as docs/performance.md's Markdown table, with ratios to
// the first server.
func table(servers []server, results map[string]map[config]bench.Result, seconds int, pinned bool, rounds int) string {
	var b strings.Builder
	where := "servers and load generator sharing the cores"
	if pinned {
		where = "each server pinned to core 0 (samgw GOMAXPROCS=1, peers one worker), the load generator to core 1"
	}
	fmt.Fprintf(&b, "\nMachine: %d cores, %s; %s; %d s per measurement, median of %d alternating rounds, 128-byte payloads; %s.\n\n",
		runtime.NumCPU(), runtime.GOARCH, time.Now().Format("2006-01-02"), seconds, rounds, where)
	b.WriteString("| server |")
	for _, c := range configs {
		fmt.Fprintf(&b, " %d conn × %d |", c.conns, c.pipeline)
	}
	b.WriteString("\n|---|")
	for range configs {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	base := results[servers[0].name]
	for _, s := range servers {
		fmt.Fprintf(&b, "| %s |", s.name)
		for _, c := range configs {
			r := results[s.name][c]
			fmt.Fprintf(&b, " %.0fk/s (%.2f×), p99 %.2f ms |", r.FramesPerSec/1000, r.FramesPerSec/base[c].FramesPerSec, r.P99)
		}
		b.WriteString("\n")
	}
	if _, ok := results[peerName]; ok {
		peer := results[peerName][config{64, 16}].FramesPerSec
		fmt.Fprintf(&b, "\nAt 64 × 16 against the HAProxy peer: Go echo %.2f×, Lua echo %.2f×, Lua transform %.2f×.\n",
			results[servers[0].name][config{64, 16}].FramesPerSec/peer,
			results[servers[1].name][config{64, 16}].FramesPerSec/peer,
			results[servers[2].name][config{64, 16}].FramesPerSec/peer)
	}
	if or, ok := results[openrestyName]; ok {
		ratio := func(name string, c config) float64 { return results[name][c].FramesPerSec / or[c].FramesPerSec }
		fmt.Fprintf(&b, "Against OpenResty: at 64 × 16 Go echo %.2f×, Lua echo %.2f×; at 16 × 1 Lua echo %.2f× (p99 %.2f vs %.2f ms)",
			ratio(servers[0].name, config{64, 16}), ratio(servers[1].name, config{64, 16}), ratio(servers[1].name, config{16, 1}),
			results[servers[1].name][config{16, 1}].P99, or[config{16, 1}].P99)
		if ort, ok := results[openrestyTransformName]; ok {
			fmt.Fprintf(&b, "; Lua transform at 64 × 16 %.2f× OpenResty's transform", results[servers[2].name][config{64, 16}].FramesPerSec/ort[config{64, 16}].FramesPerSec)
		}
		b.WriteString(".\n")
	}
	return b.String()
}

// roundRatios is the OpenResty comparison of table again, as the median of
// the ratios within each round (see roundRatio).
func (r *reporter) roundRatios(servers []server) string {
	if _, ok := r.byRound[config{64, 16}][openrestyName]; !ok {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "The same, as the median of the %d ratios within each round: at 64 × 16 Go echo %.2f×, Lua echo %.2f×; at 16 × 1 Lua echo %.2f×",
		r.rounds, r.roundRatio(servers[0].name, openrestyName, config{64, 16}), r.roundRatio(servers[1].name, openrestyName, config{64, 16}),
		r.roundRatio(servers[1].name, openrestyName, config{16, 1}))
	if _, ok := r.byRound[config{64, 16}][openrestyTransformName]; ok {
		fmt.Fprintf(&b, "; Lua transform at 64 × 16 %.2f× OpenResty's transform", r.roundRatio(servers[2].name, openrestyTransformName, config{64, 16}))
	}
	b.WriteString(".\n")
	return b.String()
}

// reporter owns the processes the report starts.
type reporter struct {
	cleanup     func(func())
	bin         string // the samgw binary
	rounds      int
	byRound     map[config]map[string][]bench.Result // each server's runs in round order, by load
	serverCores string                               // taskset list of the servers' cores; "" pins nothing
	loadCores   string                               // the load generator's; "" lets it run anywhere
	procs       int                                  // GOMAXPROCS of samgw and workers of the peers, when pinned
	token       string                               // the load generator authenticates with it, when set
	pids        map[string]int                       // the samgw processes started, by address
}

// serverCommand is name args…, on the servers' cores when the report pins.
func (r *reporter) serverCommand(name string, args ...string) *exec.Cmd {
	if r.serverCores != "" {
		return exec.Command("taskset", append([]string{"-c", r.serverCores, name}, args...)...)
	}
	return exec.Command(name, args...)
}

// poll calls cond every interval until it holds or timeout passes.
func poll(timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}

// startSamgw runs `samgw serve` on a free port and returns its address.
func (r *reporter) startSamgw(bin string, args ...string) string {
	dataDir, err := os.MkdirTemp("", "samgw-bench-data")
	if err != nil {
		log.Fatal(err)
	}
	r.cleanup(func() { os.RemoveAll(dataDir) })
	cmd := r.serverCommand(bin, append([]string{"serve", "--listen", "127.0.0.1:0", "--log-level", "warn", "--data-dir", dataDir}, args...)...)
	if r.serverCores != "" {
		cmd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(r.procs))
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	r.cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	var addr string
	if !poll(10*time.Second, 20*time.Millisecond, func() bool { addr = listeningAddr(cmd.Process.Pid); return addr != "" }) {
		log.Fatalf("samgw %v did not start", args)
	}
	if r.pids == nil {
		r.pids = map[string]int{}
	}
	r.pids[addr] = cmd.Process.Pid
	return addr
}

// cpuSeconds is the CPU time process pid has used (user and system).
func cpuSeconds(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command (which may hold spaces) end with ')'.
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // clock ticks (USER_HZ = 100 on Linux)
}

// listeningAddr finds the loopback TCP port process pid listens on.
func listeningAddr(pid int) string {
	inodes := map[string]bool{}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		if link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 9 && f[3] == "0A" && inodes[f[9]] { // 0A: LISTEN
			port, _ := strconv.ParseUint(f[1][strings.IndexByte(f[1], ':')+1:], 16, 16)
			return fmt.Sprintf("127.0.0.1:%d", port)
		}
	}
	return ""
}

// startPeer runs the HAProxy peer script if it exists, and returns its
// address ("" if there is none).
func (r *reporter) startPeer(script, what string, env ...string) string {
	if script == "" {
		log.Printf("no -peers folder: skipping the %s peer", what)
		return ""
	}
	if _, err := os.Stat(script); err != nil {
		log.Printf("no %s peer at %s: skipping it", what, script)
		return ""
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	cmd := r.serverCommand("bash", script, port, strconv.Itoa(max(r.procs, 1)))
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	r.cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) // the script's process group: bash and haproxy
		cmd.Wait()
	})
	// The first run installs haproxy, which takes a while.
	if !poll(5*time.Minute, 100*time.Millisecond, func() bool {
		nc, err := net.Dial("tcp", addr)
		if err == nil {
			nc.Close()
		}
		return err == nil
	}) {
		log.Fatalf("the %s peer did not start", what)
	}
	return addr
}

// heldConns is how many connections the density measurement holds (under
// the 20,000 descriptors a process may have here).
const heldConns = 15000

// heldMemory measures what a held connection costs: a fresh Lua echo
// server, 15,000 connections held by `samgw bench --hold` in a process of
// its own (from 127.0.0.x source addresses), each sending a keepalive every
// 10 s; the server's RSS growth per connection 25 s after the last one
// opened, and the p99 of a ping sample taken meanwhile.
func (r *reporter) heldMemory(bin string) string {
	var lim syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	if lim.Cur < heldConns+2000 {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < heldConns+1000 {
			return fmt.Sprintf("not measured (file descriptor limit %d)", lim.Cur)
		}
	}
	addr := r.startSamgw(bin, "--max-conns", strconv.Itoa(heldConns+1000))
	pid := serverPid(addr)
	before := rss(pid)
	hold := exec.Command(bin, "bench", "--addr", addr, "--hold", strconv.Itoa(heldConns), "--duration", "30s", "--json")
	var out strings.Builder
	hold.Stdout = &out
	stderr, err := hold.StderrPipe()
	if err != nil {
		log.Fatal(err)
	}
	if err := hold.Start(); err != nil {
		log.Fatal(err)
	}
	held := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "held ") {
				close(held)
			} else {
				fmt.Fprintln(os.Stderr, sc.Text())
			}
		}
	}()
	select {
	case <-held:
	case <-time.After(2 * time.Minute):
		hold.Process.Kill()
		hold.Wait()
		return "not measured (the connections did not open)"
	}
	time.Sleep(25 * time.Second) // the measurement's own schedule, not a wait for an event
	after := rss(pid)
	if err := hold.Wait(); err != nil {
		return fmt.Sprintf("not measured (%v)", err)
	}
	var res bench.HoldResult
	if err := json.Unmarshal([]byte(out.String()), &res); err != nil {
		return fmt.Sprintf("not measured (%v)", err)
	}
	return fmt.Sprintf("%.1f KiB (RSS %d MiB → %d MiB for %d connections each sending a keepalive every 10 s, %d lost); ping p99 %.2f ms meanwhile",
		float64(after-before)/heldConns/1024, before>>20, after>>20, res.Conns, res.Lost, res.PingP99)
}

// serverPid finds the process listening on addr among our children.
func serverPid(addr string) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			f := strings.Fields(string(stat))
			if len(f) > 3 && f[3] == strconv.Itoa(os.Getpid()) && listeningAddr(pid) == addr {
				return pid
			}
		}
	}
	log.Fatalf("no child listens on %s", addr)
	return 0
}

// rss returns a process's resident set size in bytes.
func rss(pid int) int64 {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(data)
	if m == nil {
		return 0
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}

func openConns(metricsAddr string) int {
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^samgw_connections_open (\d+)`).FindSubmatch(body)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// scaling is the -cores mode: for each server core count S in list, the Go
// echo, the Lua echo, the Lua transform and the OpenResty peers on cores
// 0..S-1, the load on the others, at 64 × 16, alternating; a table of
// frames/s with each row's speed-up over its first column.
func (r *reporter) scaling(list, openresty, transform string, duration time.Duration) string {
	var counts []int
	for _, f := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > runtime.NumCPU() {
			log.Fatalf("-cores %s: want counts from 1 to %d", list, runtime.NumCPU())
		}
		counts = append(counts, n)
	}
	load := config{64, 16}
	names := []string{"samgw Go echo", "samgw Lua echo", "samgw Lua transform", "OpenResty echo", "OpenResty transform"}
	results := make(map[string]map[int]bench.Result)
	for _, n := range names {
		results[n] = make(map[int]bench.Result)
	}
	var notes []string
	for _, n := range counts {
		r.serverCores, r.procs = fmt.Sprintf("0-%d", n-1), n
		r.loadCores = ""
		if n < runtime.NumCPU() {
			r.loadCores = fmt.Sprintf("%d-%d", n, runtime.NumCPU()-1)
		} else {
			notes = append(notes, fmt.Sprintf("at %d cores the load generator shares the servers' cores", n))
		}
		var stops []func()
		r.cleanup = func(f func()) { stops = append(stops, f) }
		servers := []server{
			{names[0], r.startSamgw(r.bin, "--no-scripts")},
			{names[1], r.startSamgw(r.bin)},
			{names[2], r.startSamgw(r.bin, "--scripts", transform)},
		}
		if addr := r.startPeer(openresty, "OpenResty"); addr != "" {
			servers = append(servers, server{names[3], addr}, server{names[4], r.startPeer(openresty, "OpenResty", "TRANSFORM=1")})
		}
		for name, res := range r.alternate(servers, load, duration) {
			results[name][n] = res
		}
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nScaling: %d-core machine, %s; servers on cores 0..S-1 (samgw GOMAXPROCS=S, OpenResty S workers), load on the rest; %d conns × %d, 128-byte payloads, %v per run, median of %d alternating rounds.\n\n",
		runtime.NumCPU(), time.Now().Format("2006-01-02"), load.conns, load.pipeline, duration, r.rounds)
	b.WriteString("| server |")
	for _, n := range counts {
		fmt.Fprintf(&b, " S=%d |", n)
	}
	b.WriteString("\n|---|")
	for range counts {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, name := range names {
		if len(results[name]) == 0 {
			continue
		}
		fmt.Fprintf(&b, "| %s |", name)
		first := results[name][counts[0]].FramesPerSec
		for _, n := range counts {
			res := results[name][n]
			fmt.Fprintf(&b, " %.0fk/s (%.2f×), p99 %.2f ms |", res.FramesPerSec/1000, res.FramesPerSec/first, res.P99)
		}
		b.WriteString("\n")
	}
	for _, note := range notes {
		fmt.Fprintf(&b, "\nNote: %s.", note)
	}
	b.WriteString("\n")
	return b.String()
}
