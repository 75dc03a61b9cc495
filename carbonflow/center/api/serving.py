"""The uvicorn server a center runs, its housekeeping tick once a second.

uvicorn's ``Server.main_loop`` wakes ten times a second to look whether it should exit and, every
tenth time, to renew the ``Date`` header.  An idle center does nothing else that often: measured,
the tick is about half of an idle center process's CPU (~1.6 of ~3 ms per second; eleven of them on
two cores in ``bench/cascade.py``).  :class:`CenterServer` ticks once a second and does, at each tick,
what uvicorn does every tenth: the ``Date`` header is renewed as often as before; a request to stop
(``should_exit``, a signal) is seen within a second instead of a tenth of one.

Once started (the app's lifespan has run: store, MQTT subscriber, metering, cascade), the objects made so
far — modules, the app, the store's metadata, pydantic's validators: most of the process's ~10⁶ objects,
alive for its lifetime — are moved out of the cyclic garbage collector's reach (``gc.freeze``).  Ingest
allocates ~10⁵ short-lived objects per batch of 2,000 readings; each full collection they trigger then
scans the young objects only instead of the whole heap: measured ~17 of ~50 ms of CPU per batch
(docs/performance.md, issue 17 §2, seventh session).  Startup objects that later become cyclic garbage
are freed with the process (reference counting still frees all the rest).
"""

from __future__ import annotations

import asyncio
import gc
import socket

import uvicorn

TICK_S = 1.0
_ONCE_A_SECOND = 10  # uvicorn's on_tick does its once-a-second work when the counter is a multiple of 10
_WRAP = 864000  # uvicorn's own wrap of the counter


def freeze_startup_objects() -> None:
    """Move every object alive now to the collector's permanent generation (see the module docstring)."""
    gc.collect()  # what is garbage already goes first, not into the permanent generation
    gc.freeze()


class CenterServer(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            freeze_startup_objects()

    async def main_loop(self) -> None:
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + _ONCE_A_SECOND) % _WRAP
            await asyncio.sleep(TICK_S)
            should_exit = await self.on_tick(counter)
