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
  assert_error(function() call("pubsub", { subscribe = "room.1", since = -1 }) end, "since must be an offset")
  assert_error(function() call("pubsub", { subscribe = "room.1", since = 1.5 }) end, "since must be an offset")
  assert_error(function() call("pubsub", { subscribe = "room.1", since = "7" }) end, "since must be an offset")
  assert_error(function() call("pubsub", { subscribe = "room.1", since = 1, epoch = string.rep("e", 65) }) end, "epoch must be")
end)

test("with topic history, a subscriber that was away gets what it missed", function()
  topic_history("room.*", 3)
  local a, publisher = new_conn(), new_conn()
  assert_eq(call("pubsub", { subscribe = "room.1" }, a), { subscribed = true, offset = 0, epoch = "test" })
  local first = call("pubsub", { publish = "room.1", message = 1 }, publisher)
  assert_eq(first, { delivered = 1, offset = 1 })
  assert_eq(pushes(a)[1].offset, 1)
  assert_eq(pushes(a)[1].epoch, "test")
  disconnect(a)
  call("pubsub", { publish = "room.1", message = 2 }, publisher)
  call("pubsub", { publish = "room.1", message = 3 }, publisher)

  local back = new_conn()
  assert_eq(call("pubsub", { subscribe = "room.1", since = 1, epoch = "test" }, back),
    { subscribed = true, recovered = true, offset = 3, epoch = "test" })
  local got = pushes(back)
  assert_eq(#got, 2)
  assert_eq({ got[1].offset, got[1].payload.message, got[2].offset, got[2].payload.message }, { 2, 2, 3, 3 })

  -- Past the 3 kept: not recovered; what is kept is sent.
  call("pubsub", { publish = "room.1", message = 4 }, publisher)
  call("pubsub", { publish = "room.1", message = 5 }, publisher)
  local late = new_conn()
  assert_eq(call("pubsub", { subscribe = "room.1", since = 1 }, late).recovered, false)
  assert_eq(#pushes(late), 3)
  -- Another epoch: nothing sent, the current offset and epoch answered.
  local other = new_conn()
  assert_eq(call("pubsub", { subscribe = "room.1", since = 4, epoch = "old" }, other),
    { subscribed = true, recovered = false, offset = 5, epoch = "test" })
  assert_eq(pushes(other), {})
end)
