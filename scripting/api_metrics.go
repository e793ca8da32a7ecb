package scripting

import (
	lua "github.com/yuin/gopher-lua"
)

// ScriptMetrics receives the metrics the scripts define
// (metrics.ScriptMetrics): counters, gauges and histograms by name. Its
// errors (a bad name, too many names, a name used as two kinds) fail the
// call that caused them.
type ScriptMetrics interface {
	Inc(name string, n float64) error
	Set(name string, v float64) error
	Observe(name string, v float64) error
}

// metricsModule is the metrics table: inc, set and observe call record.
func (st *luaState) metricsModule(record func(kind, name string, v float64) error) *lua.LTable {
	call := func(kind, what string, defaultValue bool) lua.LGFunction {
		return func(L *lua.LState) int {
			name := L.CheckString(1)
			v := 1.0
			if !defaultValue || L.Get(2) != lua.LNil {
				v = float64(L.CheckNumber(2))
			}
			if err := record(kind, name, v); err != nil {
				L.RaiseError("metrics.%s: %s", what, err)
			}
			return 0
		}
	}
	return st.module(map[string]lua.LGFunction{
		"inc":     call("counter", "inc", true),
		"set":     call("gauge", "set", false),
		"observe": call("histogram", "observe", false),
	})
}

// apiMetricsRecord hands a script's metric to the engine's ScriptMetrics.
func (st *luaState) apiMetricsRecord(kind, name string, v float64) error {
	m := st.gen.engine.metrics
	if m == nil {
		return nil
	}
	switch kind {
	case "counter":
		return m.Inc(name, v)
	case "gauge":
		return m.Set(name, v)
	}
	return m.Observe(name, v)
}
