"""The uvicorn server a center runs, its housekeeping tick once a second.

uvicorn's ``Server.main_loop`` wakes ten times a second to look whether it should exit and, every
tenth time, to renew the ``Date`` header.  An idle center does nothing else that often: measured,
the tick is about half of an idle center process's CPU (~1.6 of ~3 ms per second; eleven of them on
two cores in ``bench/cascade.py``).  :class:`CenterServer` ticks once a second and does, at each tick,
what uvicorn does every tenth: the ``Date`` header is renewed as often as before; a request to stop
(``should_exit``, a signal) is seen within a second instead of a tenth of one.
"""

from __future__ import annotations

import asyncio

import uvicorn

TICK_S = 1.0
_ONCE_A_SECOND = 10  # uvicorn's on_tick does its once-a-second work when the counter is a multiple of 10
_WRAP = 864000  # uvicorn's own wrap of the counter


class CenterServer(uvicorn.Server):
    async def main_loop(self) -> None:
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + _ONCE_A_SECOND) % _WRAP
            await asyncio.sleep(TICK_S)
            should_exit = await self.on_tick(counter)
