-- Tests of default.lua: `samgw test lua`.

test("echoes the payload", function()
  for _, payload in ipairs({ "hello", 42, { nested = { 1, 2, 3 } }, true }) do
    assert_eq(call("default", payload), payload)
  end
end)

test("keeps integers beyond 2^53 exactly", function()
  local got = call("default", json.decode("12345678901234567890"))
  assert_eq(json.encode(got), "12345678901234567890")
end)
