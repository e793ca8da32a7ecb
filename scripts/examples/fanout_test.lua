-- Tests of fanout.lua: the upstreams are stubbed.

test("merges the answers of both upstreams", function()
  stub.upstream("left", function(payload) return { side = "left", q = payload.q } end)
  stub.upstream("right", { side = "right" })
  assert_eq(call("fanout", { q = 42 }), { left = { side = "left", q = 42 }, right = { side = "right" } })
end)

test("reports a failed upstream in place of its answer", function()
  stub.upstream("left", { ok = true })
  stub.upstream("right", function() return nil, "timeout" end)
  assert_eq(call("fanout", { q = 1 }), { left = { ok = true }, right = { error = "timeout" } })
end)
