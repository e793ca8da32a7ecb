package scripting

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// readScriptConfig reads the scripts' settings file (YAML, or JSON, which
// YAML includes) and returns it as JSON: an object at the top.
func readScriptConfig(file string) ([]byte, error) {
	src, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("script config: %w", err)
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
		return nil, fmt.Errorf("script config %s: %w", file, err)
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, fmt.Errorf("script config %s: the top level must be a mapping of settings", file)
	}
	out, err := json.Marshal(v)
	if err != nil { // YAML mappings with keys that are not strings
		return nil, fmt.Errorf("script config %s: %w", file, err)
	}
	return out, nil
}
