-- away.lua: route "away". Closes the sender's connection, then publishes
-- {"n": i} for i = payload.from..payload.to to payload.topic on route
-- "news": publications its subscription misses, unless the client resumes.
function on_data(msg, conn)
  gateway.close(conn.id, "away")
  for i = msg.payload.from, msg.payload.to do
    gateway.publish(msg.payload.topic, { n = i }, "news")
  end
end
