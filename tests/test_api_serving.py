"""The center's uvicorn server ticks once a second (not ten times), keeps the Date header fresh and
still stops when asked."""

from __future__ import annotations

import asyncio
import time
from email.utils import parsedate_to_datetime

import httpx
import uvicorn

from carbonflow.center.api.serving import CenterServer


async def _hello(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def test_the_server_ticks_once_a_second_serves_with_a_fresh_date_and_stops():
    async def scenario():
        config = uvicorn.Config(_hello, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        server = CenterServer(config)
        counters: list[int] = []
        on_tick = server.on_tick

        async def counted(counter: int) -> bool:
            counters.append(counter)
            return await on_tick(counter)

        server.on_tick = counted
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        started_second = int(time.time())  # the Date header's resolution
        await asyncio.sleep(2.5)
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/")
        assert response.text == "ok"
        served_at = parsedate_to_datetime(response.headers["date"]).timestamp()
        assert served_at > started_second  # renewed by the ticks, as uvicorn does once a second
        assert 2 <= len(counters) <= 4, counters  # uvicorn's own loop: ~25 ticks in 2.5 s
        assert all(counter % 10 == 0 for counter in counters)  # each tick does the once-a-second work
        server.should_exit = True
        await asyncio.wait_for(task, timeout=5)  # it stops when asked (a hang fails here)

    asyncio.run(scenario())
