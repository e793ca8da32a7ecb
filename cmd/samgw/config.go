package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"
)

// configFlag is --config FILE: a YAML file whose keys are the command's flag
// names. Precedence: flag > environment (SAMGW_…) > file > default.
func configFlag() cli.Flag {
	return &cli.StringFlag{Name: "config", Usage: "YAML file of settings, keyed by flag name (flags and SAMGW_* variables win)", EnvVars: envVar("config")}
}

// loadConfigFile applies the --config file to the flags not already set on
// the command line or by the environment. An unknown key, or a value its
// flag cannot parse, is an error naming the key, before anything starts.
func loadConfigFile(cctx *cli.Context) error {
	file := cctx.String("config")
	if file == "" {
		return nil
	}
	src, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var doc map[string]yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(src)).Decode(&doc); err != nil && err.Error() != "EOF" {
		return fmt.Errorf("--config %s: %w", file, err)
	}
	known := make(map[string]bool)
	for _, f := range cctx.Command.Flags {
		for _, name := range f.Names() {
			known[name] = true
		}
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		node := doc[key]
		if !known[key] || key == "config" {
			return fmt.Errorf("--config %s: line %d: unknown key %q (keys are the flags of `samgw %s`)", file, node.Line, key, cctx.Command.Name)
		}
		if cctx.IsSet(key) {
			continue // the command line or the environment wins
		}
		values, err := scalarValues(&node)
		if err != nil {
			return fmt.Errorf("--config %s: line %d: %s: %w", file, node.Line, key, err)
		}
		for _, v := range values {
			if pathKeys[key] && v != "" && !filepath.IsAbs(v) {
				v = filepath.Join(filepath.Dir(file), v) // as nginx, HAProxy and Caddy read their files
			}
			if err := cctx.Set(key, v); err != nil {
				return fmt.Errorf("--config %s: line %d: %s: invalid value %q: want %s", file, node.Line, key, v, expectedForm(cctx, key))
			}
		}
	}
	return nil
}

// pathKeys are the settings that name files or directories: relative ones
// in a config file are read from the file's folder.
var pathKeys = map[string]bool{
	"scripts": true, "tls-cert": true, "tls-key": true, "tls-client-ca": true, "identities": true, "audit-log": true,
	"upstream-tls-ca": true, "nats-creds": true, "nats-ca": true, "data-dir": true,
}

// expectedForm says what a flag's value looks like, for errors.
func expectedForm(cctx *cli.Context, key string) string {
	for _, f := range cctx.Command.Flags {
		if f.Names()[0] != key {
			continue
		}
		switch f.(type) {
		case *cli.DurationFlag:
			return "a duration like 30s, 500ms or 2m"
		case *cli.IntFlag:
			return "a whole number like 100"
		case *cli.Float64Flag:
			return "a number like 100 or 0.5"
		case *cli.BoolFlag:
			return "true or false"
		}
		if strings.HasPrefix(key, "max-frame") || key == "lua-memory-limit" || key == "upstream-max-body" || key == "store-max-bytes" || key == "conn-state-max-bytes" {
			return "a size like 1MiB, 512KiB or 4096B"
		}
	}
	return "a valid value"
}

// scalarValues returns a scalar's text, or each item of a list of scalars
// (for repeatable flags such as --arg).
func scalarValues(n *yaml.Node) ([]string, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		return []string{strings.TrimSpace(n.Value)}, nil
	case yaml.SequenceNode:
		var out []string
		for _, item := range n.Content {
			if item.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("want a list of plain values")
			}
			out = append(out, item.Value)
		}
		return out, nil
	}
	return nil, fmt.Errorf("want a value or a list of values")
}
