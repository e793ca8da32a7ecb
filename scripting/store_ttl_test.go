package scripting

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// clock is a Store clock the test moves by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestStoreTTL(t *testing.T) {
	s := NewStore(0)
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
	s := NewStore(0)
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
		if ok, err := s.CAS("k", bytesOf(st.old), bytesOf(st.value), 0); err != nil || ok != st.ok {
			t.Fatalf("%s: CAS = %v, want %v", st.name, ok, st.ok)
		}
		if got := string(s.Get("k")); got != st.after {
			t.Fatalf("%s: value %q, want %q", st.name, got, st.after)
		}
	}
	// An expired value counts as absent.
	s.CAS("lock", nil, []byte(`"me"`), time.Second) //nolint:errcheck // far within the budget
	if ok, _ := s.CAS("lock", nil, []byte(`"you"`), time.Second); ok {
		t.Fatal("took a held lock")
	}
	c.t = c.t.Add(2 * time.Second)
	if ok, _ := s.CAS("lock", nil, []byte(`"you"`), time.Second); !ok {
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

// The store holds at most its budget of keys, values and per-entry
// overhead: a write past it fails with ErrStoreFull and leaves what is
// stored; deleting, overwriting smaller and expiry give bytes back.
func TestStoreBudget(t *testing.T) {
	const budget = 10 * (entryOverhead + 2 + 100) // ten entries of a 2-byte key and 100 bytes
	s := NewStore(budget)
	c := &clock{t: time.Unix(1000, 0)}
	s.nowFunc = c.now
	value := []byte(strings.Repeat("x", 100))
	for i := range 10 {
		if err := s.Set(fmt.Sprintf("k%d", i), value, 0); err != nil {
			t.Fatalf("entry %d within the budget: %v", i, err)
		}
	}
	if s.Bytes() != budget {
		t.Fatalf("Bytes() = %d, want %d", s.Bytes(), budget)
	}
	full := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrStoreFull) {
			t.Fatalf("%s at the budget: %v, want ErrStoreFull", what, err)
		}
	}
	full("a new key", s.Set("kx", []byte(`1`), 0))
	_, err := s.Incr("kx", 1)
	full("incr of a new key", err)
	_, err = s.CAS("kx", nil, []byte(`1`), 0)
	full("cas of a new key", err)
	full("a larger value for a key", s.Set("k0", append(value, 'x'), 0))
	if s.Len() != 10 || string(s.Get("k0")) != string(value) || s.Bytes() != budget {
		t.Fatalf("a refused write changed the store: %d keys, %d bytes", s.Len(), s.Bytes())
	}
	// A smaller value for a key fits, and frees the difference.
	if err := s.Set("k0", []byte(`1`), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Set("k0", value, 0); err != nil {
		t.Fatalf("back to the old size: %v", err)
	}
	s.Delete("k1")
	if err := s.Set("kx", []byte(`1`), 0); err != nil {
		t.Fatalf("after a delete: %v", err)
	}
	// Expired entries count as free for the next write.
	if err := s.Set("k2", value, time.Second); err != nil {
		t.Fatal(err)
	}
	full("while k2 lives", s.Set("ky", value, 0))
	c.t = c.t.Add(2 * time.Second)
	if err := s.Set("ky", value, 0); err != nil {
		t.Fatalf("after k2 expired: %v", err)
	}
	if want := int64(8*(entryOverhead+2+100) + entryOverhead + 2 + 1 + entryOverhead + 2 + 100); s.Bytes() != want {
		t.Fatalf("Bytes() = %d, want %d", s.Bytes(), want)
	}
}

// A key rewritten over and over with a long time to live leaves a bounded
// number of expiry entries behind, not one per write.
func TestStoreExpiryStaysBounded(t *testing.T) {
	s := NewStore(0)
	for i := range 100000 {
		if err := s.Set("session", []byte(fmt.Sprint(i)), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(s.expiry); n > 2*s.Len()+64+1 {
		t.Fatalf("%d expiry entries for %d keys", n, s.Len())
	}
	if got := string(s.Get("session")); got != "99999" {
		t.Fatalf("session = %q", got)
	}
}
