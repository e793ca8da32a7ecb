package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocsLinksResolve: every relative link of README.md and docs/ names a
// file of the repository and, with a #fragment, a heading (or an anchor)
// of that file, as GitHub renders them; the README stays within 400 lines.
func TestDocsLinksResolve(t *testing.T) {
	pages, err := filepath.Glob("../../docs/*.md")
	if err != nil || len(pages) < 5 {
		t.Fatalf("docs pages %v, %v", pages, err)
	}
	pages = append(pages, "../../README.md", "../../clients/typescript/README.md", "../../clients/python/README.md")
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	for _, page := range pages {
		src, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(stripCode(string(src)), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, fragment, _ := strings.Cut(target, "#")
			path := page
			if file != "" {
				path = filepath.Join(filepath.Dir(page), file)
			}
			if _, err := os.Stat(path); err != nil {
				t.Errorf("%s: link %q: no such file", page, target)
				continue
			}
			if fragment != "" && !hasAnchor(t, path, fragment) {
				t.Errorf("%s: link %q: no heading or anchor %q in %s", page, target, fragment, path)
			}
		}
	}
	readme, _ := os.ReadFile("../../README.md")
	if n := strings.Count(string(readme), "\n"); n > 400 {
		t.Errorf("README.md has %d lines; keep it to 400 and move topics to docs/", n)
	}
}

// stripCode drops fenced code blocks, whose brackets are not links.
func stripCode(md string) string {
	var out strings.Builder
	fence := false
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fence = !fence
			continue
		}
		if !fence {
			out.WriteString(line + "\n")
		}
	}
	return out.String()
}

// hasAnchor reports whether the Markdown file has a heading whose GitHub
// slug is fragment, or an <a id="fragment">.
func hasAnchor(t *testing.T, file, fragment string) bool {
	t.Helper()
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(src), `<a id="`+fragment+`"`) {
		return true
	}
	for _, line := range strings.Split(stripCode(string(src)), "\n") {
		if heading, ok := strings.CutPrefix(strings.TrimLeft(line, "#"), " "); ok && strings.HasPrefix(line, "#") && githubSlug(heading) == fragment {
			return true
		}
	}
	return false
}

// githubSlug is the anchor GitHub gives a heading: lower case, punctuation
// other than - and _ dropped, spaces as -.
func githubSlug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
			b.WriteRune(r)
		}
	}
	return b.String()
}
