function on_data(msg)
  return { n = gateway.publish("results." .. msg.payload.task, msg.payload) }
end
