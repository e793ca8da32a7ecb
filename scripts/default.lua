-- default.lua: the handler of every data message without a route.
-- It echoes the payload back; the reply carries the message's id and route.
-- Edit it (or point `samgw serve --scripts DIR` at your own copy) and the
-- gateway reloads it on save.

function on_data(msg, conn)
  return msg.payload
end
