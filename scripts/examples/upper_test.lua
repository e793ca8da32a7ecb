-- Tests of upper.lua: run them with `samgw test scripts/examples`.

test("upper-cases strings however deeply nested", function()
  local got = call("upper", { greeting = "hello", list = { "a", { b = "c" } }, n = 1 })
  assert_eq(got, { greeting = "HELLO", list = { "A", { b = "C" } }, n = 1 })
end)

test("leaves other values alone", function()
  assert_eq(call("upper", 42), 42)
  assert_eq(call("upper", true), true)
  assert_eq(call("upper", json.null), json.null)
end)
