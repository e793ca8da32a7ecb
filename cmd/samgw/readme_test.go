package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// readmeBlock returns the first ```sh block after heading in the README.
func readmeBlock(t *testing.T, heading string) string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), heading+"\n")
	if !ok {
		t.Fatalf("no %q in the README", heading)
	}
	_, rest, ok = strings.Cut(rest, "```sh\n")
	if !ok {
		t.Fatalf("no sh block under %q", heading)
	}
	block, _, _ := strings.Cut(rest, "```")
	return block
}

// TestReadmeSecureDeployment runs the README's secure deployment
// walkthrough as pasted (in a temporary folder, on a free port through
// SAMGW_LISTEN and SAMGW_ADDR) and checks each "# " line of expected
// output, whose "…" stand for any text.
func TestReadmeSecureDeployment(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatal("the walkthrough needs bash")
	}
	block := readmeBlock(t, "## Secure deployment")
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
	if err := os.Symlink(filepath.Join(root, "lua"), filepath.Join(dir, "lua")); err != nil {
		t.Fatal(err)
	}
	var script strings.Builder
	var expected []string
	for _, line := range strings.Split(block, "\n") {
		switch {
		case strings.HasPrefix(line, "go build"):
			// built above
		case strings.HasPrefix(line, "# "):
			if strings.HasPrefix(line, "# {") || strings.HasPrefix(line, "# samgw:") {
				expected = append(expected, strings.TrimPrefix(line, "# "))
			}
		default:
			script.WriteString(line + "\n")
		}
	}
	script.WriteString("kill $!\nwait\n")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command("bash", "-c", script.String())
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SAMGW_LISTEN="+addr, "SAMGW_ADDR="+addr, "SAMGW_LOG_LEVEL=warn")
	out, _ := cmd.CombinedOutput()
	rest := string(out)
	for _, want := range expected {
		for _, fragment := range strings.Split(want, "…") {
			i := strings.Index(rest, fragment)
			if i < 0 {
				t.Fatalf("the walkthrough's output lacks %q (from %q):\n%s", fragment, want, out)
			}
			rest = rest[i+len(fragment):]
		}
	}
	if len(expected) < 4 {
		t.Fatalf("only %d expected lines found in the README block", len(expected))
	}
}

// TestReadmeSendExamples runs the README's `samgw send` examples against
// the embedded default server (SAMGW_ADDR points them at it) and compares
// what they print, "…" standing for any text.
func TestReadmeSendExamples(t *testing.T) {
	block := readmeBlock(t, "### `samgw send`")
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
