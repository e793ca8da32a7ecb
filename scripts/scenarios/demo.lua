-- demo.lua: the prototype's demo client, as a scenario. `samgw client` runs
-- it when no --scenario is given; `--time-scale 0.01` runs it in 0.3 s.
--
-- Connect, send data, ping at 5 s, send data again at 10 s, disconnect at
-- 30 s, printing what arrives.

on("data", function(msg) log("Data received:", json.encode(msg.payload)) end)
-- The server's own keepalives ({"message":"keepalive"}, every 10 s), not
-- its answers to ours ({"status":"alive"}): what the prototype printed.
on("keepalive", function(msg)
  if type(msg.payload) == "table" and msg.payload.message == "keepalive" then
    log("Keep-alive received")
  end
end)

log("Connected to server")
send({name = "John", age = 30, email = "john@example.com"})
sleep(5000); local rtt = ping(); log("Pong received")
sleep(5000); send({message = "Hello again!", timestamp = now()})
sleep(20000); log("Disconnecting after 30 seconds..."); disconnect()
log("Disconnected from server")
