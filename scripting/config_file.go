package scripting

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// readScriptConfig reads the scripts' settings file (YAML, or JSON, which
// YAML includes) and returns it as JSON: an object at the top.
func readScriptConfig(file string) ([]byte, error) {
	out, _, err := readScriptConfigValues(file)
	return out, err
}

// minRedacted is the shortest setting redacted from error texts: shorter
// strings (a level, a flag, a port) are words a message uses anyway.
const minRedacted = 8

// readScriptConfigValues is readScriptConfig that also returns the
// settings' string values of minRedacted bytes or more, which error texts
// never carry to a client or the log (an API key in a URL a handler
// built, say).
func readScriptConfigValues(file string) ([]byte, []string, error) {
	src, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, fmt.Errorf("script config: %w", err)
	}
	var v any
	if strings.EqualFold(filepath.Ext(file), ".json") {
		dec := json.NewDecoder(bytes.NewReader(src))
		dec.UseNumber()
		err = dec.Decode(&v)
	} else {
		err = yaml.Unmarshal(src, &v)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("script config %s: %w", file, err)
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, nil, fmt.Errorf("script config %s: the top level must be a mapping of settings", file)
	}
	out, err := json.Marshal(v)
	if err != nil { // YAML mappings with keys that are not strings
		return nil, nil, fmt.Errorf("script config %s: %w", file, err)
	}
	return out, stringLeaves(v, nil), nil
}

// stringLeaves appends the string values of v, at any depth, of at least
// minRedacted bytes.
func stringLeaves(v any, out []string) []string {
	switch x := v.(type) {
	case string:
		if len(x) >= minRedacted {
			out = append(out, x)
		}
	case map[string]any:
		for _, e := range x {
			out = stringLeaves(e, out)
		}
	case []any:
		for _, e := range x {
			out = stringLeaves(e, out)
		}
	}
	return out
}

// newRedactor replaces each of values, longest first, with [redacted];
// nil when there is nothing to redact.
func newRedactor(values []string) *strings.Replacer {
	if len(values) == 0 {
		return nil
	}
	slices.SortFunc(values, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	pairs := make([]string, 0, 2*len(values))
	for _, v := range values {
		pairs = append(pairs, v, "[redacted]")
	}
	return strings.NewReplacer(pairs...)
}
