-- default.lua: echo, as the embedded default does.
function on_data(msg, conn)
  return msg.payload
end
