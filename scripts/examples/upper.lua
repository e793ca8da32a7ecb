-- upper.lua: route "upper". A transform: upper-cases every string in the
-- payload, however deeply nested, and returns the result.
--   → {"type":"data","route":"upper","payload":{"greeting":"hello","list":["a","b"]},"id":"1"}
--   ← {"type":"data","route":"upper","payload":{"greeting":"HELLO","list":["A","B"]},"id":"1",…}

local function upper(v)
  if type(v) == "string" then
    return string.upper(v)
  elseif type(v) == "table" then
    for k, item in pairs(v) do
      v[k] = upper(item)
    end
  end
  return v
end

function on_data(msg, conn)
  return upper(msg.payload)
end
