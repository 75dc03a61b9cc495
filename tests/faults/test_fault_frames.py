"""A corrupted frame stream between the collector and a meter (DL/T 645 and DL/T 698.45): a proxy on the
line flips bits, cuts frames short, adds line noise and repeats replies (a late, stale answer).  No value
from a broken or stale frame may be stored; the meter's readings go on; the books balance exactly — on
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import tomllib
from collections import Counter, defaultdict
from decimal import Decimal

import pytest
from faultfield import Center, Collector, Field, assert_nothing_lost, running, wait_for
from services import database_url, postgres_database, postgres_url, sqlite_url  # noqa: F401
from sqlalchemy import select

from carbonflow.center.store.schema import Reading
from carbonflow.collector.clients.dlt645 import Dlt645Client
from carbonflow.collector.clients.dlt698 import Dlt698Client
from carbonflow.collector.clients.errors import DeviceError, RetryPolicy
from carbonflow.collector.pollers import first_number
from carbonflow.protocols import dlt645
from carbonflow.protocols.dlt645.di_table import DEFAULT_TABLE, HOURLY_FREEZE
from carbonflow.protocols.dlt698.apdu import GetResponseNormal, GetResponseNormalList, GetResponseRecord
from carbonflow.protocols.dlt698.apdu_decode import decode_apdu
from carbonflow.protocols.dlt698.frame import decode_frame
from carbonflow.protocols.dlt698.frame import split_frames as dlt698_frames
from carbonflow.protocols.errors import ProtocolError

METER = "EM-U12"
MODES = ("bitflip", "noise", "duplicate", "bitflip", "truncate", "duplicate")


class CorruptingProxy:
    """collector <-> proxy <-> meter.  Requests pass untouched; every ``every``-th reply is damaged in
    the next way of :data:`MODES`.  Every reply that went out intact is decoded and kept per DI: the
    only values the collector may store."""

    def __init__(
        self,
        upstream: tuple[str, int],
        every: int = 3,
        modes: tuple[str, ...] = MODES,
        protocol: str = "dlt645",
    ) -> None:
        self.upstream, self.every, self.modes, self.protocol = upstream, every, modes, protocol
        self._reader698 = Dlt698Client("127.0.0.1", 9, "000000000000")  # only its value decoding is used
        self.replies = 0
        self.damaged: Counter[str] = Counter()
        self.clean: dict[str, set[Decimal]] = defaultdict(set)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        tasks = [
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._replies(up_reader, writer)),
        ]
        self._tasks.update(tasks)
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
            self._tasks.discard(task)
        for w in (writer, up_writer):
            w.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(4096):
            writer.write(data)
            await writer.drain()

    async def _replies(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buffer = bytearray()
        while data := await reader.read(4096):
            buffer += data
            for frame in self._frames(buffer):
                self.replies += 1
                turn = self.replies // self.every
                mode = self.modes[turn % len(self.modes)] if self.replies % self.every == 0 else None
                writer.write(self._damage(frame, mode))
                await writer.drain()
                if mode == "truncate":
                    return  # the rest never comes: the collector times out, reconnects

    def _frames(self, buffer: bytearray) -> list[bytes]:
        if self.protocol == "dlt698":
            return dlt698_frames(buffer)
        frames = []
        while (frame := dlt645.take_frame(buffer)) is not None:
            frames.append(frame)
        return frames

    def _damage(self, frame: bytes, mode: str | None) -> bytes:
        if mode in (None, "noise", "duplicate"):
            self._remember(frame)  # it arrives intact (the duplicate: once more, late)
        if mode is None:
            return frame
        self.damaged[mode] += 1
        if mode == "bitflip":  # a bit of the data field flipped: the checksum no longer fits
            broken = bytearray(frame)
            if self.protocol == "dlt698":  # inside the APDU, before FCS and 16H
                broken[len(frame) - 4 - (self.replies % 4)] ^= 0x10
            else:
                broken[10 + (self.replies % max(1, frame[9]))] ^= 0x10
            return bytes(broken)
        if mode == "noise":
            return b"\x00\xff\x68\x11\x16\xfe\x68" + frame
        if mode == "duplicate":
            return frame + b"\xfe\xfe" + frame
        return frame[: len(frame) // 2]  # truncate

    def _remember(self, frame: bytes) -> None:
        if self.protocol == "dlt698":
            self._remember_698(frame)
            return
        with contextlib.suppress(ProtocolError, ValueError):
            reply = dlt645.parse_reply(dlt645.parse_frame(frame))
            if reply.di is not None and reply.error is None:
                number = first_number(reply.value(DEFAULT_TABLE))
                if number is not None:
                    self.clean[reply.di].add(number)

    def _remember_698(self, frame: bytes) -> None:
        with contextlib.suppress(ProtocolError, ValueError, DeviceError):
            apdu = decode_apdu(decode_frame(frame).apdu)
            results = (
                [apdu.result]
                if isinstance(apdu, GetResponseNormal)
                else list(apdu.results)
                if isinstance(apdu, GetResponseNormalList)
                else []
            )
            for result in results:
                number = first_number(self._reader698._reading(result).value)
                if number is not None:
                    self.clean[str(result.oad).replace("-", "").lower()].add(number)
            if isinstance(apdu, GetResponseRecord):  # freeze records: any of their numbers
                self.clean["record"].update(_numbers(apdu))


def _numbers(value: object) -> set[Decimal]:
    """Every number anywhere inside a decoded APDU (freeze records are checked loosely)."""
    if isinstance(value, Decimal):
        return {value}
    if isinstance(value, int) and not isinstance(value, bool):
        return {Decimal(value)}
    if isinstance(value, list | tuple):
        return set().union(*(_numbers(v) for v in value)) if value else set()
    if hasattr(value, "__dataclass_fields__"):
        return set().union(*(_numbers(getattr(value, f)) for f in value.__dataclass_fields__))
    return set()


def test_a_stale_reply_is_not_the_answer_to_the_next_request(tmp_path):
    """A reply that comes twice (or late, after its request timed out) answers the earlier DI: the next
    read of another DI must not take it as its own."""
    field = Field(tmp_path, f"sqlite:///{tmp_path / 'center.db'}", devices=[METER])

    async def body() -> None:
        proxy = CorruptingProxy(field.farm.endpoint_of(METER), every=1, modes=("duplicate",))
        await proxy.start()
        address = field.served["devices"][0]["address"]["address"]
        client = Dlt645Client("127.0.0.1", proxy.port, policy=RetryPolicy(timeout_s=1.0, retries=0))
        try:
            energy = await client.read(address, "00010000")
            power = await client.read(address, "02030000")  # the stale energy reply is waiting
            again = await client.read(address, "00010000")
        finally:
            await client.close()
            await proxy.stop()
        assert first_number(power) in proxy.clean[dlt645.normalize_di("02030000")]
        assert (
            first_number(energy) in proxy.clean["00010000"] and first_number(again) in proxy.clean["00010000"]
        )

    asyncio.run(running(field, body))


METERS = {"dlt645": (METER, "di"), "dlt698": ("ECM-G3-1", "oad")}
CARBON_FACTOR_OAD = "41200200"  # the factor in force is worked out from the schedule, not read as is


@pytest.mark.parametrize("protocol", ["dlt645", "dlt698"])
def test_a_corrupted_frame_stream(tmp_path, database_url, protocol):  # noqa: F811
    meter, address_key = METERS[protocol]
    field = Field(tmp_path, database_url, devices=[meter, "MB-S057-1"])
    center = Center(database_url, tmp_path)
    collector = Collector(tmp_path)

    async def body() -> None:
        proxy = CorruptingProxy(field.farm.endpoint_of(meter), protocol=protocol)
        await proxy.start()

        def through_proxy(config: dict) -> None:
            for device in config["devices"]:
                if device["id"] == meter:
                    device["endpoint"] = f"127.0.0.1:{proxy.port}"
                    device["timeout_s"] = 0.5

        path = field.collector_config(center.url, edit=through_proxy)
        keys = {  # point id -> the DI / OAD it is read by
            f"{meter}/{p['name']}": str(p[address_key]).upper()
            for d in tomllib.loads(path.read_text())["devices"]
            if d["id"] == meter
            for p in d["points"]
            if str(p[address_key]).upper() != CARBON_FACTOR_OAD
        }
        await center.start()
        await collector.start()
        await wait_for(
            lambda: all(proxy.damaged[m] >= 2 for m in set(MODES)), "every kind of damage twice", 90
        )
        await field.drain(collector)
        await proxy.stop()
        assert_nothing_lost(field.outbox, field.store, min_readings=50)
        with field.store.read() as connection:
            stored = connection.execute(
                select(Reading.point_id, Reading.value, Reading.quality).where(
                    Reading.point_id.in_(list(keys))
                )
            ).all()
        good = [row for row in stored if row.quality == "good"]
        assert len(good) >= 10 and {r.point_id for r in good} == set(keys), stored  # readings went on
        frozen = set().union(
            *(v for key, v in proxy.clean.items() if key.startswith(HOURLY_FREEZE) or key == "record")
        )

        def allowed(row) -> bool:  # a live read of the point's DI / OAD, or a freeze record's value
            return Decimal(row.value) in proxy.clean[keys[row.point_id]] | frozen

        wrong = [row for row in stored if row.value is not None and not allowed(row)]
        assert not wrong, (wrong[:5], {key: sorted(v)[:5] for key, v in proxy.clean.items()})

    asyncio.run(running(field, body, collector, center))
