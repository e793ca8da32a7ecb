-- Tests of chat.lua.

test("a message reaches every other connection", function()
  local alice, bob, carol = new_conn(), new_conn(), new_conn()
  assert_eq(call("chat", "hi all", alice), { sent_to = 2 })
  local want = { { route = "chat", payload = { from = alice.id, text = "hi all" } } }
  assert_eq(pushes(bob), want)
  assert_eq(pushes(carol), want)
  assert_eq(pushes(alice), {}, "the sender does not get its own message")
end)

test("takes {text = ...} too", function()
  local alice, bob = new_conn(), new_conn()
  call("chat", { text = "hello" }, alice)
  assert_eq(pushes(bob)[1].payload.text, "hello")
end)

test("refuses anything else", function()
  assert_error(function() call("chat", 42) end, "payload must be a string or {text: string}")
end)
