-- check.lua: a request/response check, usable as an integration test in CI:
--   samgw client --scenario scripts/scenarios/check.lua --arg route=upper
-- Exits non-zero, naming this file and line, if any answer is wrong or late.

local route = args.route -- nil: the default handler

local reply = request({greeting = "hello", list = {"a", "b"}}, route, 2000)
if route == "upper" then
  assert(reply.greeting == "HELLO", "upper: got " .. json.encode(reply))
else
  assert(reply.greeting == "hello", "echo: got " .. json.encode(reply))
end

-- And the connection answers pings.
local rtt = ping(1000)
log(string.format("check passed (ping %.2f ms)", rtt))
