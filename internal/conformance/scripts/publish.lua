-- publish.lua: route "publish". Publishes {"n": payload.n} to
-- payload.topic on route "news" and answers how many it reached.
function on_data(msg)
  local reached = gateway.publish(msg.payload.topic, { n = msg.payload.n }, "news")
  return reached
end
