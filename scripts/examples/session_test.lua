-- Tests of session.lua: the clock is the test's (clock.advance).

test("a renewed session lives on, an idle one is closed", function()
  local c = new_conn()
  assert_eq(call("session", { login = "ann" }, c), { session = "ann", idle_ms = 30000 })
  clock.advance(29000)
  assert_eq(closed(c), nil)
  assert_eq(call("session", "still here", c), { session = "ann", renewed = true })
  clock.advance(29000)
  assert_eq(closed(c), nil, "renewed 29 s ago")
  clock.advance(2000)
  assert_eq(closed(c), "session expired")
end)

test("the timer stops once the session is over", function()
  local c = new_conn()
  call("session", { login = "bob" }, c)
  clock.advance(31000)
  assert_eq(closed(c), "session expired")
  local closes = 0
  clock.advance(60000)
  for _, action in ipairs(outbox()) do
    if action.action == "close" then closes = closes + 1 end
  end
  assert_eq(closes, 1)
end)

test("needs a login first", function()
  assert_error(function() call("session", "hello") end, "no session")
end)
