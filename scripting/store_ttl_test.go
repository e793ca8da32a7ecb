package scripting

import (
	"strings"
	"testing"
	"time"
)

// clock is a Store clock the test moves by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestStoreTTL(t *testing.T) {
	s := NewStore()
	c := &clock{t: time.Unix(1000, 0)}
	s.nowFunc = c.now
	s.Set("session", []byte(`"abc"`), 2*time.Second)
	s.Set("forever", []byte(`1`), 0)
	if got := string(s.Get("session")); got != `"abc"` {
		t.Fatalf("before expiry: %q", got)
	}
	if _, err := s.Incr("counter", 1); err != nil { // a key without ttl
		t.Fatal(err)
	}
	s.Set("n", []byte(`5`), time.Second)
	if v, err := s.Incr("n", 2); err != nil || v != 7 {
		t.Fatalf("incr of a ttl key: %v %v", v, err)
	}
	c.t = c.t.Add(1500 * time.Millisecond)
	if s.Get("n") != nil {
		t.Fatal("incr dropped the key's expiry")
	}
	c.t = c.t.Add(time.Second)
	if s.Get("session") != nil {
		t.Fatal("expired value still returned")
	}
	if string(s.Get("forever")) != `1` {
		t.Fatal("a value without ttl expired")
	}
	// Memory is given back by the next write.
	before := s.Len()
	s.Set("other", []byte(`2`), 0)
	if s.Len() != before-1 { // session and n gone, other added
		t.Fatalf("Len %d after the sweep, want %d", s.Len(), before-1)
	}
	// Rewriting a key with a new ttl is not undone by its old expiry.
	s.Set("k", []byte(`1`), time.Second)
	s.Set("k", []byte(`2`), time.Hour)
	c.t = c.t.Add(2 * time.Second)
	s.Delete("unrelated") // a write: sweeps
	if string(s.Get("k")) != `2` {
		t.Fatal("an old expiry removed the rewritten key")
	}
}

func TestStoreCAS(t *testing.T) {
	s := NewStore()
	c := &clock{t: time.Unix(1000, 0)}
	s.nowFunc = c.now
	steps := []struct {
		name       string
		old, value string // "" is nil
		ok         bool
		after      string
	}{
		{"create when absent", "", `1`, true, `1`},
		{"create again fails", "", `9`, false, `1`},
		{"wrong old fails", `2`, `3`, false, `1`},
		{"right old swaps", `1`, `{"a":1}`, true, `{"a":1}`},
		{"compares JSON bytes", `{"a":1}`, `"x"`, true, `"x"`},
		{"delete with the right old", `"x"`, "", true, ""},
		{"delete when absent", "", "", true, ""},
	}
	bytesOf := func(s string) []byte {
		if s == "" {
			return nil
		}
		return []byte(s)
	}
	for _, st := range steps {
		if ok := s.CAS("k", bytesOf(st.old), bytesOf(st.value), 0); ok != st.ok {
			t.Fatalf("%s: CAS = %v, want %v", st.name, ok, st.ok)
		}
		if got := string(s.Get("k")); got != st.after {
			t.Fatalf("%s: value %q, want %q", st.name, got, st.after)
		}
	}
	// An expired value counts as absent.
	s.CAS("lock", nil, []byte(`"me"`), time.Second)
	if s.CAS("lock", nil, []byte(`"you"`), time.Second) {
		t.Fatal("took a held lock")
	}
	c.t = c.t.Add(2 * time.Second)
	if !s.CAS("lock", nil, []byte(`"you"`), time.Second) {
		t.Fatal("an expired lock could not be taken")
	}
}

func TestStoreTTLAndCASFromLua(t *testing.T) {
	f := newFixture(t, map[string]string{"default.lua": `
function on_data(msg)
  local p = msg.payload
  if p.op == "set" then store.set(p.key, p.value, p.opts) return "ok" end
  if p.op == "get" then return {v = store.get(p.key)} end
  if p.op == "cas" then return {ok = store.cas(p.key, p.old, p.new)} end
end`}, Config{})
	c, _ := f.client()
	mustReply(t, c, "", `{"op":"cas","key":"lock","new":"a"}`, `{"ok":true}`)
	mustReply(t, c, "", `{"op":"cas","key":"lock","new":"b"}`, `{"ok":false}`)
	mustReply(t, c, "", `{"op":"cas","key":"lock","old":"a","new":"b"}`, `{"ok":true}`)
	mustReply(t, c, "", `{"op":"get","key":"lock"}`, `{"v":"b"}`)
	mustReply(t, c, "", `{"op":"set","key":"s","value":1,"opts":{"ttl_ms":60000}}`, `"ok"`)
	mustReply(t, c, "", `{"op":"get","key":"s"}`, `{"v":1}`)
	for _, bad := range []string{`{"ttl_ms":0}`, `{"ttl_ms":-5}`, `{"ttl_ms":"soon"}`, `{"ttl_ms":1e15}`} {
		got, err := request(t, c, "", `{"op":"set","key":"s","value":1,"opts":`+bad+`}`)
		if err == nil || !strings.Contains(err.Error(), "ttl_ms") {
			t.Errorf("ttl %s: %s, %v; want an error naming ttl_ms", bad, got, err)
		}
	}
}
