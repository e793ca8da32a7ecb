-- Tests of relay.lua.

test("relays a body to another connection", function()
  local a, b = new_conn(), new_conn()
  assert_eq(call("relay", { to = b.id, body = { task = "index" } }, a), { delivered = true })
  assert_eq(pushes(b), { { route = "relay", payload = { from = a.id, body = { task = "index" } } } })
  assert_eq(pushes(a), {})
end)

test("reports a connection that is not there", function()
  assert_eq(call("relay", { to = "c404", body = 1 }), { delivered = false })
end)

test("lists the connections", function()
  local a, b = new_conn(), new_conn()
  assert_eq(call("relay", { list = true }, b), { connections = { a.id, b.id }, you = b.id })
end)

test("refuses a payload that is not an object", function()
  assert_error(function() call("relay", "not an object") end, "payload must be an object")
  assert_error(function() call("relay", { body = 1 }) end, "payload.to must be a connection id")
end)
