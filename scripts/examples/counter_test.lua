-- Tests of counter.lua.

test("counts per connection and in all", function()
  local a, b = new_conn(), new_conn()
  assert_eq(call("counter", 1, a), { connection = 1, total = 1 })
  assert_eq(call("counter", 1, a), { connection = 2, total = 2 })
  assert_eq(call("counter", 1, b), { connection = 1, total = 3 })
  assert_eq(conn_state(a), { count = 2 })
  assert_eq(store.get("counter.total"), 3)
end)

test("each test starts with an empty store", function()
  assert_eq(store.get("counter.total"), nil)
end)
