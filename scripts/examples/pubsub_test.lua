-- Tests of pubsub.lua.

test("subscribers of a topic get what is published to it", function()
  local a, b, publisher = new_conn(), new_conn(), new_conn()
  assert_eq(call("pubsub", { subscribe = "room.1" }, a), { subscribed = true })
  assert_eq(call("pubsub", { subscribe = "room.1" }, b), { subscribed = true })
  assert_eq(call("pubsub", { publish = "room.1", message = "hi" }, publisher), { delivered = 2 })
  local want = { { route = "pubsub", payload = { topic = "room.1", from = publisher.id, message = "hi" } } }
  assert_eq(pushes(a), want)
  assert_eq(pushes(b), want)
  assert_eq(pushes(publisher), {})
end)

test("unsubscribing and disconnecting end a subscription", function()
  local a, b = new_conn(), new_conn()
  call("pubsub", { subscribe = "room.1" }, a)
  call("pubsub", { subscribe = "room.1" }, b)
  assert_eq(call("pubsub", { unsubscribe = "room.1" }, a), { unsubscribed = true })
  assert_eq(call("pubsub", { unsubscribe = "room.1" }, a), { unsubscribed = false })
  disconnect(b)
  assert_eq(call("pubsub", { publish = "room.1", message = 1 }), { delivered = 0 })
end)

test("refuses bad requests and bad topics", function()
  assert_error(function() call("pubsub", "hello") end, 'send {"subscribe": topic}')
  assert_error(function() call("pubsub", { other = 1 }) end, "unknown request")
  assert_error(function() call("pubsub", { subscribe = "a..b" }) end, "invalid topic")
end)
