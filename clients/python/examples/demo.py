"""The prototype's client demo on the samgw client: connect, send data, ping
at 5 s, send again at 10 s, disconnect at 30 s.

    python3 examples/demo.py                      # against samgw serve on 127.0.0.1:4000
    SAMGW_TIME_SCALE=0.01 python3 examples/demo.py   # the 30 s in 0.3 s
    SAMGW_ADDR=host:port SAMGW_TOKEN=... python3 examples/demo.py
"""

import asyncio
import os
import sys
import time
from pathlib import Path

try:
    from samgw import Client
except ImportError:  # run from a checkout, not installed: the package beside examples/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from samgw import Client


async def main() -> None:
    host, _, port = os.environ.get("SAMGW_ADDR", "127.0.0.1:4000").rpartition(":")
    scale = float(os.environ.get("SAMGW_TIME_SCALE", "1"))
    client = Client(host, int(port), token=os.environ.get("SAMGW_TOKEN"))
    client.on("data", lambda m: print("Data received:", m.payload))
    client.on("pong", lambda m: print("Pong received"))
    client.on("keepalive", lambda m: m.payload == {"message": "keepalive"} and print("Keep-alive received"))
    client.on("end", lambda: print("Disconnected from server"))
    await client.connect()
    print("Connected to server")
    start = time.monotonic()

    async def at(seconds: float) -> None:
        await asyncio.sleep(max(0.0, start + seconds * scale - time.monotonic()))

    client.send({"name": "John", "age": 30, "email": "john@example.com"})
    await at(5)
    client.send_message("ping", {"message": "ping"})
    await at(10)
    client.send({"message": "Hello again!", "timestamp": int(time.time() * 1000)})
    await at(30)
    print("Disconnecting after 30 seconds...")
    await client.disconnect("Client disconnect")


if __name__ == "__main__":
    asyncio.run(main())
