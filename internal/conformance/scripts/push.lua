-- push.lua: route "push". Pushes {"n": i} for i = 1..payload.count to the
-- sender (frames with server ids, on route "push"), then replies
-- {"pushed": count}.
function on_data(msg, conn)
  local count = msg.payload.count
  for i = 1, count do
    gateway.send(conn.id, { n = i }, "push")
  end
  return { pushed = count }
end
