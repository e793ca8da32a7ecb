package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// docBlock returns the first ```sh block after heading in file (relative
// to the repository root: README.md or a page of docs/).
func docBlock(t *testing.T, file, heading string) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("../..", file))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), heading+"\n")
	if !ok {
		t.Fatalf("no %q in %s", heading, file)
	}
	_, rest, ok = strings.Cut(rest, "```sh\n")
	if !ok {
		t.Fatalf("no sh block under %q in %s", heading, file)
	}
	block, _, _ := strings.Cut(rest, "```")
	return block
}

// walkthroughPorts are the addresses the walkthroughs write out; the tests
// give each port (wherever the block names it, with its address or alone)
// a free one instead, so they never meet a server of the machine's own.
var walkthroughPorts = []string{"127.0.0.1:4000", "127.0.0.1:4001", "127.0.0.1:8081"}

// expectedOutput tells a walkthrough's "# " line that shows output (JSON,
// samgw's messages, test summaries) from one that explains a step.
var expectedOutput = regexp.MustCompile(`^# ([{"\[]|samgw:|\d+ passed|\S+: \d+ errors)`)

// runWalkthrough runs a documented walkthrough as a user pastes it, from a
// folder laid out like the repository (scripts/ and a built samgw: the
// block's own `go build` line is left out), pasted `times` times in a row
// into one shell, and checks after each paste that every line of expected
// output appears in order ("…" stands for any text). A paste that leaves a
// server running or a file behind that the next paste trips on fails the
// second round.
func runWalkthrough(t *testing.T, file, heading string, times int) {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatal("the walkthrough needs bash")
	}
	block := docBlock(t, file, heading)
	dir := t.TempDir()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "samgw"), "./cmd/samgw")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	if err := os.Symlink(filepath.Join(root, "scripts"), filepath.Join(dir, "scripts")); err != nil {
		t.Fatal(err)
	}
	for _, addr := range walkthroughPorts {
		if strings.Contains(block, addr) {
			_, port, _ := net.SplitHostPort(addr)
			_, free, _ := net.SplitHostPort(freeAddr(t))
			block = regexp.MustCompile(`\b`+port+`\b`).ReplaceAllString(block, free)
		}
	}
	var script strings.Builder
	var expected []string
	for _, line := range strings.Split(block, "\n") {
		switch {
		case strings.HasPrefix(line, "go build"):
			// built above
		case expectedOutput.MatchString(line):
			want, _, _ := strings.Cut(strings.TrimPrefix(line, "# "), "   (") // a note after the output
			expected = append(expected, want)
		default:
			script.WriteString(line + "\n")
		}
	}
	if len(expected) < 2 {
		t.Fatalf("only %d expected lines found in the block", len(expected))
	}
	for round := 1; round <= times; round++ {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "SAMGW_LOG_LEVEL=warn")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		out, _ := cmd.CombinedOutput()
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // anything the paste left running
		cancel()
		rest := string(out)
		for _, want := range expected {
			for _, fragment := range strings.Split(want, "…") {
				i := strings.Index(rest, fragment)
				if i < 0 {
					t.Fatalf("paste %d: the output lacks %q (from %q):\n%s", round, fragment, want, out)
				}
				rest = rest[i+len(fragment):]
			}
		}
	}
}

// freeAddr is a loopback address with a port nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestReadmeQuickStart pastes the README's quick start twice.
func TestReadmeQuickStart(t *testing.T) {
	runWalkthrough(t, "README.md", "## Quick start", 2)
}

// TestReadmeSecureDeployment pastes the secure deployment walkthrough
// (TLS, tokens, signing, mTLS) twice.
func TestReadmeSecureDeployment(t *testing.T) {
	runWalkthrough(t, "docs/security.md", "# Secure deployment", 2)
}

// TestReadmeUpstreamWalkthrough pastes the HTTP bridge walkthrough twice.
// TestDeliveryWalkthrough runs docs/delivery.md's walkthrough: messages
// left for an absent agent survive kill -9 and reach it once it resumes.
func TestDeliveryWalkthrough(t *testing.T) {
	runWalkthrough(t, "docs/delivery.md", "## Walkthrough", 2)
}

func TestReadmeUpstreamWalkthrough(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Fatal("the walkthrough's HTTP server is python3's")
	}
	runWalkthrough(t, "docs/upstreams.md", "## Walk-through", 2)
}

// TestReadmeSendExamples runs docs/cli.md's `samgw send` examples against
// the embedded default server (SAMGW_ADDR points them at it) and compares
// what they print, "…" standing for any text.
func TestReadmeSendExamples(t *testing.T) {
	block := docBlock(t, "docs/cli.md", "## `samgw send`")
	addr, _, _ := startServe(t)
	t.Setenv("SAMGW_ADDR", addr)
	type example struct {
		cmd  string
		want []string
	}
	var examples []example
	for _, line := range strings.Split(strings.TrimSpace(block), "\n") {
		if cmd, ok := strings.CutPrefix(line, "$ "); ok {
			examples = append(examples, example{cmd: cmd})
		} else if len(examples) > 0 {
			examples[len(examples)-1].want = append(examples[len(examples)-1].want, line)
		}
	}
	if len(examples) < 3 {
		t.Fatalf("only %d examples found", len(examples))
	}
	for _, ex := range examples {
		t.Run(ex.cmd, func(t *testing.T) {
			stdin, args := "", ex.cmd
			if before, after, ok := strings.Cut(ex.cmd, " | "); ok { // echo '…' | samgw send -
				stdin = strings.Trim(strings.TrimPrefix(before, "echo "), "'") + "\n"
				args = after
			}
			args, printExit := strings.CutSuffix(args, "; echo $?")
			fields := shellWords(t, strings.TrimPrefix(args, "samgw "))
			code, out, errOut := runSamgw(t, stdin, fields...)
			got := out + errOut
			if printExit {
				got += fmt.Sprintln(code)
			}
			rest := got
			for _, fragment := range strings.Split(strings.Join(ex.want, "\n"), "…") {
				i := strings.Index(rest, fragment)
				if i < 0 {
					t.Fatalf("printed %q, want %q", got, strings.Join(ex.want, "\n"))
				}
				rest = rest[i+len(fragment):]
			}
		})
	}
}

// shellWords splits a command line with single quotes, as the examples
// write them.
func shellWords(t *testing.T, s string) []string {
	t.Helper()
	var words []string
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		if rest, ok := strings.CutPrefix(s, "'"); ok {
			word, after, found := strings.Cut(rest, "'")
			if !found {
				t.Fatalf("unbalanced quote in %q", s)
			}
			words, s = append(words, word), after
			continue
		}
		word, after, _ := strings.Cut(s, " ")
		words, s = append(words, word), after
	}
	return words
}

// TestDocsTestExample runs the `samgw test` examples of docs/cli.md: the
// shipped examples, and the README quick start's handlers (written from its
// here-documents) with the change the page names, comparing the output.
func TestDocsTestExample(t *testing.T) {
	block := docBlock(t, "docs/cli.md", "## `samgw test`: testing handlers offline")
	quick := docBlock(t, "README.md", "## Quick start")
	dir := filepath.Join(t.TempDir(), "quickstart", "handlers")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	heredoc := regexp.MustCompile(`(?s)cat > quickstart/handlers/(\S+) <<'EOF'\n(.*?)\nEOF\n`)
	for _, m := range heredoc.FindAllStringSubmatch(quick, -1) {
		writeFile(t, filepath.Join(dir, m[1]), m[2]+"\n")
	}
	src, err := os.ReadFile(filepath.Join(dir, "shout_test.lua"))
	if err != nil {
		t.Fatalf("the quick start writes no shout_test.lua: %v", err)
	}
	writeFile(t, filepath.Join(dir, "shout_test.lua"), strings.Replace(string(src), `"HI!"`, `"HI"`, 1))
	commands := strings.Split(strings.TrimSpace(block), "$ ")[1:]
	if len(commands) != 3 {
		t.Fatalf("want three commands in the block, got %q", commands)
	}
	for i, arg := range []string{"../../scripts/examples", dir} {
		_, want, _ := strings.Cut(commands[i], "\n")
		code, out, errOut := runSamgw(t, "", "test", arg)
		if got := out + errOut; got != want {
			t.Errorf("samgw test %s printed\n%s\nthe page shows\n%s", arg, got, want)
		}
		if wantCode := map[bool]int{true: 0, false: 1}[i == 0]; code != wantCode {
			t.Errorf("samgw test %s exited %d, want %d", arg, code, wantCode)
		}
	}
	if strings.TrimSpace(commands[2]) != "echo $?\n1" {
		t.Errorf("the page's exit status line: %q", commands[2])
	}
}
