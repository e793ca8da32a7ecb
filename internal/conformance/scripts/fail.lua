-- fail.lua: route "fail". Always raises, so the client gets handler_error.
function on_data(msg, conn)
  error("this handler always fails")
end
