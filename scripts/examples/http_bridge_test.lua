-- Tests of http_bridge.lua: the HTTP API is stubbed.

test("returns the API's JSON answer", function()
  stub.http("POST http://127.0.0.1:8081/", function(req)
    assert_eq(req.body, { q = "status" })
    assert_eq(req.headers["X-Samgw-Conn"], "c1")
    return { status = 200, headers = { ["content-type"] = "application/json" }, body = '{"up":true}' }
  end)
  assert_eq(call("http_bridge", { q = "status" }, new_conn()), { up = true })
end)

test("passes on a status and text that are not JSON", function()
  stub.http("http://127.0.0.1:8081/", { status = 503, body = "down for maintenance" })
  assert_eq(call("http_bridge", {}), { status = 503, body = "down for maintenance" })
end)

test("reports a failed request", function()
  stub.http("POST http://127.0.0.1:8081/", function() return nil, "connection refused" end)
  assert_eq(call("http_bridge", {}), { error = "connection refused" })
end)
