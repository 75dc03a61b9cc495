"""The IEC 104 poller: the link stays open, a general interrogation (GI) is made at start and after
every reconnect, spontaneous data arrives by itself, and ``poll`` is a counter interrogation (CI);
every value reaches the collector through ``deliver`` (batched per event-loop tick).  Time stamps: see
:mod:`carbonflow.collector.poller_base`."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from carbonflow.collector.clients.iec104 import Iec104Client
from carbonflow.collector.clients.iec104 import Reading as IecReading
from carbonflow.collector.poller_base import (
    COUNTER_TYPE_IDS,
    IEC_QUALITY,
    OFFSET_SAMPLES,
    Poller,
    device_time_ts,
    read_stamp,
)
from carbonflow.collector.validate import RawValue
from carbonflow.messages.c4 import Quality

INTERROGATED_COTS = (20, 36)  # answers to a station or group interrogation (GI)
COUNTED_COTS = (37, 41)  # answers to a counter interrogation (CI)


class Iec104Poller(Poller):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        device = self.device
        self.by_ioa = {p.ioa: p for p in device.points}
        scales = {p.ioa: p.scale for p in device.points if p.scale != 1}
        self.client = Iec104Client(
            device.host,
            device.port,
            common_address=device.common_address or 1,
            name=f"{device.id} (iec104 CA {device.common_address})",
            policy=self.policy,
            scales=scales,
            on_reading=self._on_reading,
            station_tz=device.zone,
        )
        # counters the RTU freezes: only their time-tagged (frozen) readings count
        self.frozen_ioas = {p.ioa for p in device.points if p.kind == "counter" and p.frozen}
        self._last_counter: dict[int, tuple[datetime, Decimal]] = {}  # IOA -> last (ts, value) sent
        self._buffer: list[RawValue] = []
        self._flush_scheduled = False
        self._offset_samples: list[float] = []
        self._interrogated_at_reconnects = -1  # the client's reconnect count when the last GI ran
        self._interrogated_at: datetime | None = None  # collector time of the last GI
        self._counted_at: datetime | None = None  # collector time of the last counter interrogation
        self._measured = [p.ioa for p in device.points if p.kind != "counter"]
        self._heard: dict[int, datetime] = {}  # measured IOA -> collector time it last arrived

    async def open(self) -> None:
        await self.client.connect()
        await self._general_interrogation()

    async def close(self) -> None:
        await self.client.close()

    async def _general_interrogation(self) -> None:
        self._interrogated_at = self.now()
        await self.client.general_interrogation()
        self._interrogated_at_reconnects = self.client.reconnects

    def _silent(self) -> bool:
        """A measured point not heard for ``refresh_s`` (since it last arrived or the last GI), and no
        GI within ``refresh_s``: an RTU that reports on change only has nothing new to say about a steady
        value, so the collector asks (the value comes back, time-stamped now)."""
        refresh, last = self.device.refresh_s, self._interrogated_at
        if refresh is None or last is None:
            return False
        now = self.now()
        if (now - last).total_seconds() < refresh:
            return False
        return any(
            (now - max(self._heard.get(ioa, last), last)).total_seconds() >= refresh for ioa in self._measured
        )

    async def poll(self) -> list[RawValue]:
        if not self.client.connected:
            await self.client.connect()
        if self.client.reconnects != self._interrogated_at_reconnects or self._silent():
            await self._general_interrogation()  # after a reconnect the picture must be complete again
        if any(p.kind == "counter" for p in self.device.points):
            # a freezing RTU answers with its last freeze (a missed spontaneous one is recovered)
            self._counted_at = self.now()
            await self.client.counter_interrogation()
        return []  # every value arrives through _on_reading

    def _on_reading(self, reading: IecReading) -> None:
        point = self.by_ioa.get(reading.ioa)
        if point is None or reading.common_address != self.client.common_address:
            return
        counter = reading.type_id in COUNTER_TYPE_IDS
        if counter and reading.ioa in self.frozen_ioas and not reading.time_tagged:
            return  # a register read at an unknown moment must not compete with the frozen values
        received = self.now()
        if not counter:
            self._heard[reading.ioa] = received
        quality: Quality = "good"
        for flag in reading.quality:
            candidate = IEC_QUALITY.get(flag)
            if candidate == "invalid" or (candidate and quality == "good"):
                quality = candidate
        if not reading.time_tagged:
            ts, when = self._untagged_stamp(reading, received)
            quality = when if quality == "good" else quality
        if reading.time_tagged:
            if not counter:  # a measured value is tagged when sent; a counter when it was frozen
                sample = (reading.timestamp - received).total_seconds()
                self._offset_samples = [*self._offset_samples[-(OFFSET_SAMPLES - 1) :], sample]
                # the tag is taken before the frame travels: the largest sample has the least latency
                self.clock_offset_s = round(max(self._offset_samples), 3)
            ts, quality = device_time_ts(reading.timestamp, self.clock_offset_s, self.device, quality)
        if counter:
            if self._last_counter.get(reading.ioa) == (ts, reading.value):
                return  # the same freeze again (spontaneous, then read by the counter interrogation)
            self._last_counter[reading.ioa] = (ts, reading.value)
        self._buffer.append(RawValue(point.name, reading.value, ts, quality))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _untagged_stamp(self, reading: IecReading, received: datetime) -> tuple[datetime, Quality]:
        """A value without a time tag was taken by the RTU at an unknown moment before it arrived: after
        the interrogation it answers (GI: COT 20-36, CI: 37-41), or — sent unasked (background scan,
        periodic, untagged spontaneous) — at most the link's latency before, as the spread of the tagged
        frames' delays shows.  Its time is the middle of that window, and when an interval boundary
        falls inside it the interval it belongs to is not known: ``estimated`` (:func:`read_stamp`).
        On a busy machine, or at the demo's accelerated clock, a value taken just before a boundary and
        stamped on arrival would otherwise count in the next interval."""
        asked = None
        if INTERROGATED_COTS[0] <= reading.cot <= INTERROGATED_COTS[1]:
            asked = self._interrogated_at
        elif COUNTED_COTS[0] <= reading.cot <= COUNTED_COTS[1]:
            asked = self._counted_at
        if asked is None or asked > received:
            samples = self._offset_samples
            latency_s = max(samples) - min(samples) if samples else 0.0
            asked = received - timedelta(seconds=latency_s)
        return read_stamp(asked, received, self.device.freeze_period_s)

    def _flush(self) -> None:
        values, self._buffer, self._flush_scheduled = self._buffer, [], False
        if values:
            self.deliver(self.device.id, values)

    async def read_clock_offset(self) -> float | None:
        return self.clock_offset_s  # measured from the time tags of spontaneous data

    async def time_sync(self) -> str:
        sent = self.now()
        confirmed = await self.client.clock_sync(sent)
        self._offset_samples.clear()
        self.clock_offset_s = None
        return f"clock synchronisation confirmed (station time {confirmed})"
