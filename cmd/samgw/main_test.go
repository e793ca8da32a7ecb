package main

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/secureagentmessaging/samgw/gateway"
	"github.com/secureagentmessaging/samgw/internal/gatewaytest"
	"github.com/secureagentmessaging/samgw/protocol"

	"github.com/secureagentmessaging/samgw/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const waitTimeout = testutil.WaitTimeout

// runSamgw runs the command line and returns its exit code and output.
func runSamgw(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var out, errOut testutil.SyncBuffer
	code = run(ctx, append([]string{"samgw"}, withDataDir(t, args)...), strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

// withDataDir gives a serve command line a data directory of the test's
// own unless it names one: the default (samgw-data in the working
// directory) would be shared by the tests, and one process at a time may
// use it.
func withDataDir(t *testing.T, args []string) []string {
	if len(args) == 0 || args[0] != "serve" || slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--data-dir") }) {
		return args
	}
	return append([]string{"serve", "--data-dir", t.TempDir()}, args[1:]...)
}

// startGateway serves handler (nil: echo) on a loopback port for the test.
func startGateway(t *testing.T, handler gateway.Handler) string {
	t.Helper()
	_, addr := gatewaytest.Serve(t, "", gateway.Config{Handler: handler})
	return addr
}

// startServe runs `samgw serve` with args on a free loopback port and
// returns its address, its log and a function that stops it (as SIGINT
// would) and returns its exit code.
func startServe(t *testing.T, args ...string) (addr string, log *testutil.SyncBuffer, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log = &testutil.SyncBuffer{}
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, append([]string{"samgw"}, withDataDir(t, append([]string{"serve", "--listen", "127.0.0.1:0"}, args...))...), strings.NewReader(""), io.Discard, log)
	}()
	listening := regexp.MustCompile(`msg="TCP server listening" addr=(\S+)|"msg":"TCP server listening","addr":"([^"]+)"`)
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if m := listening.FindStringSubmatch(log.String()); m != nil {
			addr = m[1] + m[2]
			break
		}
		select {
		case code := <-exit:
			cancel()
			t.Fatalf("serve exited with %d: %s", code, log.String())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("serve did not start: %s", log.String())
		}
	}
	stopped := false
	var code int
	stop = func() int {
		if !stopped {
			stopped = true
			cancel()
			code = <-exit
		}
		return code
	}
	t.Cleanup(func() { stop() })
	return addr, log, stop
}

func TestServeAnswersAndShutsDownCleanly(t *testing.T) {
	addr, log, stop := startServe(t, "--keepalive-interval", "1s", "--keepalive-timeout", "3s")
	code, out, errOut := runSamgw(t, "", "send", "--addr", addr, `{"name":"John","age":30}`)
	if code != 0 || out != `{"name":"John","age":30}`+"\n" {
		t.Fatalf("send: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code := stop(); code != 0 {
		t.Fatalf("serve exited with %d after its context ended: %s", code, log.String())
	}
	for _, want := range []string{"keepalive_timeout=3s keepalive_interval=1s", `msg="Client connected"`,
		`msg="Client disconnected"`, `reason="closed by client"`, `msg="Server stopped"`} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
}

func TestServeSettingsFromEnvAndFlags(t *testing.T) {
	t.Setenv("SAMGW_MAX_FRAME", "64")
	t.Setenv("SAMGW_LOG_FORMAT", "json")
	addr, log, _ := startServe(t)
	if !strings.Contains(log.String(), `"max_frame":64`) {
		t.Fatalf("SAMGW_MAX_FRAME and SAMGW_LOG_FORMAT not applied: %s", log.String())
	}
	code, _, errOut := runSamgw(t, "", "send", "--addr", addr, `"`+strings.Repeat("x", 100)+`"`)
	if code == 0 || !strings.Contains(errOut, "frame_too_large: frame exceeds the limit of 64 bytes") {
		t.Fatalf("oversized send: exit %d, stderr %q", code, errOut)
	}
	// A flag beats the environment.
	_, log2, _ := startServe(t, "--max-frame", "2KiB", "--log-format", "text")
	if !strings.Contains(log2.String(), "max_frame=2048") {
		t.Fatalf("--max-frame did not override SAMGW_MAX_FRAME: %s", log2.String())
	}
}

func TestServeRejectsBadSettings(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--max-frame", "lots"}, "--max-frame"},
		{[]string{"--max-frame", "-5"}, "--max-frame"},
		{[]string{"--log-format", "xml"}, "--log-format"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"--keepalive-timeout", "0s"}, "--keepalive-timeout"},
		{[]string{"--max-conns", "0"}, "--max-conns"},
		{[]string{"--store-max-bytes", "0"}, "--store-max-bytes"},
		{[]string{"--conn-state-max-bytes", "-1KiB"}, "--conn-state-max-bytes"},
		{[]string{"--store-max-bytes", "plenty"}, "--store-max-bytes"},
		{[]string{"--listen", "256.0.0.1:1"}, "listen"},
	}
	for _, tt := range tests {
		code, _, errOut := runSamgw(t, "", append([]string{"serve"}, tt.args...)...)
		if code == 0 || !strings.Contains(errOut, tt.want) {
			t.Errorf("serve %v: exit %d, stderr %q, want an error naming %s", tt.args, code, errOut, tt.want)
		}
	}
}

// TestClientDemo checks that `samgw client` runs the embedded demo; the
// demo's exact output is checked by scripting's TestDemoScenario.
func TestClientDemo(t *testing.T) {
	addr := startGateway(t, nil)
	code, out, errOut := runSamgw(t, "", "client", "--addr", addr, "--time-scale", "0.01")
	if code != 0 {
		t.Fatalf("client: exit %d, stderr %s", code, errOut)
	}
	if !strings.HasPrefix(out, "Connected to server\n") || !strings.Contains(out, "\nPong received\n") ||
		!strings.HasSuffix(out, "Disconnecting after 30 seconds...\nDisconnected from server\n") {
		t.Fatalf("demo printed:\n%s", out)
	}
}

func TestClientDemoWithoutServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	code, _, errOut := runSamgw(t, "", "client", "--addr", addr, "--time-scale", "0.01")
	if code == 0 || !strings.Contains(errOut, "connection refused") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

func TestSend(t *testing.T) {
	echo := startGateway(t, nil)
	refusing := startGateway(t, gateway.HandlerFunc(func(_ context.Context, _ *gateway.Conn, m *protocol.Message) error {
		return protocol.Errorf(protocol.CodeNoRoute, "no handler for route %q", m.Route)
	}))
	release := make(chan struct{})
	silent := startGateway(t, gateway.HandlerFunc(func(ctx context.Context, _ *gateway.Conn, _ *protocol.Message) error {
		<-release
		return nil
	}))
	t.Cleanup(func() { close(release) }) // before the server's shutdown: cleanups run last first
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	tests := []struct {
		name    string
		stdin   string
		args    []string
		code    int
		stdout  string
		stderrs string
	}{
		{"object", "", []string{"--addr", echo, `{"a":[1,2,{"b":null}]}`}, 0, `{"a":[1,2,{"b":null}]}` + "\n", ""},
		{"string", "", []string{"--addr", echo, `"hi"`}, 0, `"hi"` + "\n", ""},
		{"stdin", "  [1, 2]\n", []string{"--addr", echo, "-"}, 0, "[1, 2]\n", ""},
		{"negative number", "", []string{"--addr", echo, "-0"}, 0, "-0\n", ""},
		{"negative number after --", "", []string{"--addr", echo, "--", "-5.5"}, 0, "-5.5\n", ""},
		{"not JSON", "", []string{"--addr", echo, "hello"}, 1, "", "not valid JSON"},
		{"no payload", "", []string{"--addr", echo}, 1, "", "PAYLOAD"},
		{"error reply", "", []string{"--addr", refusing, "--route", "nowhere", "1"}, 1, "", `error no_route: no handler for route "nowhere"`},
		{"timeout", "", []string{"--addr", silent, "--timeout", "200ms", "1"}, 1, "", "no reply within 200ms"},
		{"unreachable", "", []string{"--addr", closed, "--connect-timeout", "100ms", "1"}, 1, "", "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runSamgw(t, tt.stdin, append([]string{"send"}, tt.args...)...)
			if code != tt.code || out != tt.stdout || !strings.Contains(errOut, tt.stderrs) {
				t.Fatalf("exit %d stdout %q stderr %q; want exit %d stdout %q stderr containing %q",
					code, out, errOut, tt.code, tt.stdout, tt.stderrs)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runSamgw(t, "", "version")
	if code != 0 || !regexp.MustCompile(`^samgw \S+ \w+/\w+ go\S+\n$`).MatchString(out) {
		t.Fatalf("version: exit %d, %q", code, out)
	}
}

// TestVersionOfACheckoutBuild: a binary built from this git checkout with
// VCS stamping (Go's default; -buildvcs=false turns it off) names its
// revision, as docs/cli.md shows; a link-time version wins over it.
func TestVersionOfACheckoutBuild(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatal("needs git")
	}
	if _, err := os.Stat("../../.git"); err != nil {
		t.Fatalf("not a git checkout: %v", err)
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		flags []string
		want  string
	}{
		{[]string{"-buildvcs=true"}, `^samgw v0\.0\.0-\d{14}-[0-9a-f]{12}(\+dirty)? \w+/\w+ go\S+\n$`},
		{[]string{"-buildvcs=true", "-ldflags", "-X main.version=v9.8.7"}, `^samgw v9\.8\.7 \w+/\w+ go\S+\n$`},
		{[]string{"-buildvcs=false"}, `^samgw \(devel\) \w+/\w+ go\S+\n$`},
	} {
		bin := filepath.Join(dir, "samgw")
		build := exec.Command("go", append(append([]string{"build"}, tc.flags...), "-o", bin, ".")...)
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build %v: %v\n%s", tc.flags, err, out)
		}
		out, err := exec.Command(bin, "version").Output()
		if err != nil || !regexp.MustCompile(tc.want).Match(out) {
			t.Errorf("built with %v: %q, %v; want %s", tc.flags, out, err, tc.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int
		err  bool
	}{
		{"1MiB", 1 << 20, false}, {"1 MiB", 1 << 20, false}, {"512KiB", 512 << 10, false}, {"64k", 64 << 10, false},
		{"2MB", 2 << 20, false}, {"1G", 1 << 30, false}, {"100", 100, false}, {"100B", 100, false},
		{"", 0, true}, {"x", 0, true}, {"-1", 0, true}, {"0", 0, true}, {"1.5MiB", 0, true}, {"99999999GiB", 0, true},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestUnknownCommand(t *testing.T) {
	code, _, errOut := runSamgw(t, "", "teleport")
	if code == 0 || !strings.Contains(errOut, "teleport") {
		t.Fatalf("unknown command: exit %d, stderr %q", code, errOut)
	}
}

// TestServeNamesTheFlagOfAnInvalidSetting: the library validates its
// config; the command words the error in terms of the flag.
func TestServeNamesTheFlagOfAnInvalidSetting(t *testing.T) {
	for _, tt := range []struct{ args []string }{
		{[]string{"--rate", "-1"}},
		{[]string{"--rate-burst", "-3"}},
		{[]string{"--max-conns-per-ip", "-1"}},
		{[]string{"--max-unauthenticated", "-1"}},
		{[]string{"--max-unauthenticated", "20000"}},
	} {
		code, _, errOut := runSamgw(t, "", append([]string{"serve", "--listen", "127.0.0.1:0"}, tt.args...)...)
		if code == 0 || !strings.Contains(errOut, tt.args[0]) {
			t.Errorf("serve %v: exit %d, stderr %q, want an error naming %s", tt.args, code, errOut, tt.args[0])
		}
	}
}

func TestVersionFromBuildInfo(t *testing.T) {
	settings := func(kv ...string) []debug.BuildSetting {
		var out []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			out = append(out, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return out
	}
	tests := []struct {
		info debug.BuildInfo
		want string
	}{
		{debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, "v1.2.3"},
		{debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "(devel)"},
		{debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: settings("vcs.revision", "afec5453bcc5f00d", "vcs.time", "2026-11-30T03:57:04Z", "vcs.modified", "true")},
			"afec5453bcc5+dirty@2026-11-30T03:57:04Z"},
		{debug.BuildInfo{Main: debug.Module{Version: ""}, Settings: settings("vcs.revision", "0123456789abcdef", "vcs.modified", "false")}, "0123456789ab"},
	}
	for _, tt := range tests {
		if got := versionOf(&tt.info); got != tt.want {
			t.Errorf("versionOf(%+v) = %q, want %q", tt.info, got, tt.want)
		}
	}
}

// TestEveryFlagHasItsEnvironmentVariable: as docs/cli.md says, every flag
// of every command can be set by SAMGW_<NAME>.
func TestEveryFlagHasItsEnvironmentVariable(t *testing.T) {
	app := newApp(nil, io.Discard, io.Discard)
	for _, cmd := range app.Commands {
		for _, f := range cmd.Flags {
			name := f.Names()[0]
			vars := reflect.ValueOf(f).Elem().FieldByName("EnvVars")
			if !vars.IsValid() || vars.Len() != 1 || vars.Index(0).String() != envVar(name)[0] {
				t.Errorf("%s --%s: EnvVars %v, want %v", cmd.Name, name, vars, envVar(name))
			}
		}
	}
	t.Run("SAMGW_ROUTE reaches send", func(t *testing.T) {
		addr := startGateway(t, gateway.HandlerFunc(func(_ context.Context, c *gateway.Conn, m *protocol.Message) error {
			return c.Reply(m, []byte(strconv.Quote(m.Route)))
		}))
		t.Setenv("SAMGW_ROUTE", "from-env")
		code, out, errOut := runSamgw(t, "", "send", "--addr", addr, "1")
		if code != 0 || out != "\"from-env\"\n" {
			t.Fatalf("exit %d, %q %q", code, out, errOut)
		}
	})
}
