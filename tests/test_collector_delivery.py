"""Store-and-forward over HTTP against a real test center on 127.0.0.1: center down -> batches kept ->
center up -> everything delivered exactly once; a collector killed (SIGKILL) while the center holds its
batch -> the same batch_id is sent again and the center stores nothing twice; 4xx -> dead letter."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from collector_services import SECRET, HttpCenter, config, eventually, free_port, http_center  # noqa: F401

from carbonflow.collector.outbox import Outbox
from carbonflow.collector.service import Collector
from carbonflow.devices.base import StaticSource
from carbonflow.devices.dlt645_meter import Dlt645Meter
from carbonflow.devices.modbus_meter import ModbusMeter
from carbonflow.messages.c4 import Batch
from carbonflow.protocols.modbus import builtin_map


def meters() -> tuple[Dlt645Meter, ModbusMeter]:
    return (
        Dlt645Meter("m645", "110100000001", StaticSource({"p_kw": 5.0})),
        ModbusMeter(
            "mb", builtin_map("cf-3ph-meter"), StaticSource({"p_kw": 10.0, "q_kvar": 1.0}), unit_id=1
        ),
    )


def device_tables(m645: Dlt645Meter, modbus: ModbusMeter | None = None) -> list[dict]:
    tables = [
        {
            "id": "M645",
            "protocol": "dlt645",
            "endpoint": f"127.0.0.1:{m645.port}",
            "address": "110100000001",
            "points": [{"name": "e", "di": "00010000", "kind": "counter"}, {"name": "p", "di": "02030000"}],
        },
    ]
    if modbus is not None:
        tables.append(
            {
                "id": "MB",
                "protocol": "modbus-tcp",
                "endpoint": f"127.0.0.1:{modbus.port}",
                "unit_id": 1,
                "model": "cf-3ph-meter",
                "points": [{"name": "p", "register": "p_kw"}, {"name": "q", "register": "q_kvar"}],
            }
        )
    return tables


def test_center_down_then_up_delivers_every_reading_exactly_once(tmp_path):
    center = HttpCenter()  # not started yet: the center is down
    m645, modbus = meters()

    async def main():
        await m645.start()
        await modbus.start()
        cfg = config(device_tables(m645, modbus), tmp_path, center.url, outbox={"batch_max_readings": 7})
        collector = Collector(cfg)
        await collector.start()
        try:
            assert await eventually(lambda: collector.outbox.stats().batches >= 4)
            await collector.stop_polling()  # a fixed set of readings from here on
            collector._form_batches(force=True)
            held = collector.outbox.stats()
            assert held.batched_readings == collector.accepted_readings and held.pending_readings == 0
            assert collector.last_send_error and "unreachable" in collector.last_send_error
            await asyncio.to_thread(center.start)
            assert await eventually(lambda: collector.outbox.stats().batches == 0, 20)
            return collector.accepted_readings, held.batches
        finally:
            await collector.stop()
            await m645.stop()
            await modbus.stop()
            await asyncio.to_thread(center.stop)

    accepted, batches = asyncio.run(main())
    record = center.record
    assert accepted > 0 and len(record.readings) == accepted  # nothing lost
    assert sum(len(b.readings) for b in record.batches.values()) == accepted  # nothing stored twice
    assert record.replays == 0 and len(record.batches) >= batches
    seqs = sorted(b.seq for b in record.batches.values())
    assert seqs == list(range(len(seqs)))  # no gap: every batch arrived


COLLECTOR_MAIN = """
import sys
from carbonflow.collector.config import load_config
from carbonflow.collector.service import Collector
Collector(load_config(sys.argv[1]), sys.argv[1]).run_forever()
"""


def test_a_collector_killed_mid_batch_resends_the_same_batch_id_after_restart(tmp_path):
    center = HttpCenter()
    center.hang_s = 30.0  # store, then never answer: the collector dies waiting for its Ack
    m645, _ = meters()
    config_path = tmp_path / "collector.toml"

    async def main():
        await m645.start()
        await asyncio.to_thread(center.start)
        config_path.write_text(
            f'id = "c1"\nsecret = "{SECRET}"\n[center]\nurl = "{center.url}"\nrequest_timeout_s = 60\n'
            '[defaults]\nperiod_s = 0.2\n[outbox]\npath = "outbox.sqlite"\nbatch_max_age_s = 0.1\n'
            f'[[devices]]\nid = "M645"\nprotocol = "dlt645"\nendpoint = "127.0.0.1:{m645.port}"\n'
            'address = "110100000001"\n[[devices.points]]\nname = "p"\ndi = "02030000"\n'
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            COLLECTOR_MAIN,
            str(config_path),
            stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )
        try:
            assert await eventually(lambda: center.record.posts >= 1, 30), "the collector never sent"
            process.send_signal(signal.SIGKILL)  # killed while its batch is at the center, unacknowledged
            await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        first_id = center.record.posted_ids[0]
        with Outbox(tmp_path / "outbox.sqlite") as outbox:  # the file the dead process left
            left = outbox.unacked(100)
            accepted_before = outbox.stats().batched_readings + outbox.stats().pending_readings
        assert left[0].batch_id == first_id  # still there: no Ack ever came
        center.hang_s = 0.0
        restarted = config(device_tables(m645), tmp_path, center.url)
        assert restarted.outbox_path == tmp_path / "outbox.sqlite"  # the same file
        collector = Collector(restarted)
        await collector.start()
        await collector.stop_polling()  # (at most one new poll got in before this)
        try:

            def drained() -> bool:
                stats = collector.outbox.stats()
                return stats.batches == 0 and stats.pending_readings == 0

            assert await eventually(drained, 20)
            return first_id, left, accepted_before
        finally:
            await collector.stop()
            await m645.stop()
            await asyncio.to_thread(center.stop)

    first_id, left, accepted_before = asyncio.run(main())
    record = center.record
    assert record.posted_ids.count(first_id) == 2 and record.replays == 1  # resent once, same batch_id
    stored_first = record.batches[first_id]
    assert Batch.model_validate_json(left[0].body).readings == stored_first.readings
    total_left = sum(b.readings for b in left)
    assert len(record.readings) == sum(len(b.readings) for b in record.batches.values())  # no duplicates
    assert total_left <= accepted_before


def test_a_rejected_batch_goes_to_the_dead_letters_and_is_not_retried(tmp_path, http_center: HttpCenter):  # noqa: F811
    http_center.reject_with = 422
    m645, modbus = meters()

    async def main():
        await m645.start()
        await modbus.start()
        collector = Collector(config(device_tables(m645, modbus), tmp_path, http_center.url))
        await collector.start()
        try:
            assert await eventually(lambda: collector.outbox.stats().dead_letters >= 2)
            await collector.stop_polling()
            http_center.reject_with = None  # the center is fixed: new batches go through again
            collector._form_batches(force=True)
            assert await eventually(lambda: collector.outbox.stats().batches == 0)
            dead = collector.outbox.dead_letters()
            return dead, collector.rejected
        finally:
            await collector.stop()
            await m645.stop()
            await modbus.stop()

    dead, rejected = asyncio.run(main())
    record = http_center.record
    dead_ids = {d["batch_id"] for d in dead}
    assert len(dead_ids) == rejected >= 2 and all(d["status"] == 422 for d in dead)
    assert "rejected by the test" in dead[0]["error"]
    assert not dead_ids & set(record.batches)  # none stored
    assert sorted(record.rejected_ids) == sorted(dead_ids)  # each posted once: a 4xx is never retried
    assert record.posts == len(record.batches) and record.replays == 0  # later batches went through


def test_the_port_of_a_stopped_center_really_refuses(tmp_path):
    # guards the "center down" tests: a stopped HttpCenter must not answer on its port
    center = HttpCenter(port=free_port())
    center.start()
    center.stop()
    import socket

    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", center.port)) != 0


def test_refused_credentials_keep_the_batches_queued_not_dead(tmp_path):
    center = HttpCenter(secret="the-center-knows-another-secret").start()
    m645, _ = meters()

    async def main():
        await m645.start()
        collector = Collector(config(device_tables(m645), tmp_path, center.url))
        await collector.start()
        try:
            assert await eventually(lambda: any("credentials" in e for e in collector.events))
            await collector.stop_polling()
            return collector.outbox.stats()
        finally:
            await collector.stop()
            await m645.stop()
            center.stop()

    stats = asyncio.run(main())
    assert stats.batches >= 1 and stats.dead_letters == 0  # the data waits for a corrected secret
    assert center.record.batches == {}
