"""Commands from the center executed against simulated devices over real TCP: time sync through each
protocol, carbon-factor download (DL/T 698.45 with read-back, Modbus write_point), read now, restart,
reload configuration; results back as CommandResults (HTTP).  And the same path over the real
Mosquitto broker: batches acknowledged on carbonflow/{id}/acks, commands on carbonflow/{id}/commands."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from collector_services import (  # noqa: F401 - fixtures
    SECRET,
    HttpCenter,
    MqttCenter,
    config,
    eventually,
    forget_session,
    http_center,
    mqtt_broker,
    queue_command,
)

from carbonflow.collector.config import config_from_dict
from carbonflow.collector.service import Collector
from carbonflow.devices.base import DeviceClock, StaticSource
from carbonflow.devices.dlt645_meter import Dlt645Meter
from carbonflow.devices.dlt698_meter import Dlt698Meter
from carbonflow.devices.iec104_rtu import plant_rtu
from carbonflow.devices.modbus_meter import ModbusMeter
from carbonflow.messages.c4 import Command
from carbonflow.protocols.modbus import builtin_map


def devices_with_wrong_clocks():
    return {
        "M645": Dlt645Meter(
            "m645", "110100000001", StaticSource({"p_kw": 5.0}), clock=DeviceClock(offset_s=-200)
        ),
        "ECM": Dlt698Meter(
            "ecm", "220100000001", StaticSource({"p_kw": 50.0}), clock=DeviceClock(offset_s=300)
        ),
        "RTU": plant_rtu("rtu", clock=DeviceClock(offset_s=90)),
        "MB": ModbusMeter("mb", builtin_map("cf-3ph-meter"), StaticSource({"p_kw": 1.0}), unit_id=2),
    }


def tables(devices) -> list[dict]:
    return [
        {
            "id": "M645",
            "protocol": "dlt645",
            "endpoint": f"127.0.0.1:{devices['M645'].port}",
            "address": "110100000001",
            "points": [{"name": "p", "di": "02030000"}],
        },
        {
            "id": "ECM",
            "protocol": "dlt698",
            "endpoint": f"127.0.0.1:{devices['ECM'].port}",
            "address": "220100000001",
            "points": [{"name": "e", "oad": "00100200", "kind": "counter"}, {"name": "f", "oad": "41200200"}],
        },
        {
            "id": "RTU",
            "protocol": "iec104",
            "endpoint": f"127.0.0.1:{devices['RTU'].port}",
            "common_address": 1,
            "points": [{"name": "p", "ioa": 0x4001}],
        },
        {
            "id": "MB",
            "protocol": "modbus-tcp",
            "endpoint": f"127.0.0.1:{devices['MB'].port}",
            "unit_id": 2,
            "model": "cf-3ph-meter",
            "points": [{"name": "p", "register": "p_kw"}],
        },
    ]


def clock_error_s(device) -> float:
    return abs((device.clock.now() - datetime.now(UTC)).total_seconds())


def test_commands_over_http_sync_clocks_download_factors_and_report_results(
    tmp_path,
    http_center: HttpCenter,  # noqa: F811
):
    devices = devices_with_wrong_clocks()
    config_path = tmp_path / "collector.toml"

    async def main():
        for device in devices.values():
            await device.start()
        cfg = config(tables(devices), tmp_path, http_center.url)
        collector = Collector(cfg, config_path)
        await collector.start()
        record = http_center.record
        try:
            assert await eventually(lambda: all(r.state.online for r in collector.runners.values()))
            ids = {
                "sync": queue_command(record, "time_sync").command_id,  # every device of the collector
                "factor698": queue_command(
                    record,
                    "set_carbon_factor",
                    "ECM",
                    factors=["0.5366", "0.6012"],
                    start="2026-06-01T00:00:00+08:00",
                    interval_s=900,
                ).command_id,
                "factor_mb": queue_command(record, "set_carbon_factor", "MB", factor="612.5").command_id,
                "bad": queue_command(record, "set_carbon_factor", "RTU", factor="1").command_id,
                "unknown": queue_command(record, "read_now", "NOPE").command_id,
                "read": queue_command(record, "read_now", "M645").command_id,
            }

            # a result posted again (its first answer timed out on a loaded machine) counts once
            def answered() -> int:
                return len({r.command_id for r in record.results})

            assert await eventually(lambda: answered() == len(ids))

            def factors_shown() -> set[str | None]:
                with record.lock:
                    return {v for (point, _), v in record.readings.items() if point == "ECM/f"}

            assert await eventually(lambda: "0.6012" in factors_shown())  # the factor in force, polled
            results = {r.command_id: r for r in record.results}
            # reload: the file now drops the Modbus meter
            config_path.write_text(_toml(cfg, [t for t in tables(devices) if t["id"] != "MB"]))
            reload_id = queue_command(record, "reload_config").command_id
            restart_id = queue_command(record, "restart").command_id
            assert await eventually(lambda: answered() == len(ids) + 2)
            results.update({r.command_id: r for r in record.results})
            return ids, results, reload_id, restart_id, sorted(collector.runners)
        finally:
            await collector.stop()
            for device in devices.values():
                await device.stop()

    ids, results, reload_id, restart_id, running = asyncio.run(main())
    sync = results[ids["sync"]]
    assert sync.status == "failed"  # the Modbus meter has no clock: said so, the others were set
    assert "MB" in sync.detail and "no clock" in sync.detail
    assert "M645: broadcast time sync sent" in sync.detail and "ECM: SET 40000200 done" in sync.detail
    assert "RTU: clock synchronisation confirmed" in sync.detail
    assert all(clock_error_s(devices[d]) < 3 for d in ("M645", "ECM", "RTU"))  # were 200, 300, 90 s off

    assert (
        results[ids["factor698"]].status == "acknowledged"
        and "0.5366, 0.6012" in results[ids["factor698"]].detail
    )
    schedule = devices["ECM"].forward_carbon.schedule
    assert schedule is not None and schedule.factors == (Decimal("0.5366"), Decimal("0.6012"))
    assert results[ids["factor_mb"]].status == "acknowledged"
    assert devices["MB"].settings["carbon_factor_g_per_kwh"] == Decimal("612.5")

    assert (
        results[ids["bad"]].status == "failed" and "no carbon factor download" in results[ids["bad"]].detail
    )
    assert results[ids["unknown"]].status == "failed" and "NOPE" in results[ids["unknown"]].detail
    assert results[ids["read"]].status == "acknowledged" and "M645: 1 readings" in results[ids["read"]].detail
    assert results[reload_id].status == "acknowledged" and "3 devices" in results[reload_id].detail
    assert results[restart_id].status == "acknowledged" and running == ["ECM", "M645", "RTU"]


def _toml(cfg, device_tables: list[dict]) -> str:
    from carbonflow.collector.device_map_config import to_toml

    document = {
        "id": cfg.id,
        "secret": SECRET,
        "center": {"url": cfg.center.url, "command_poll_s": 0.2},
        "defaults": {"period_s": 0.2, "timeout_s": 0.3, "retries": 0},
        "outbox": {"path": str(cfg.outbox_path), "batch_max_age_s": 0.1},
        "devices": device_tables,
    }
    return to_toml(document)


def test_mqtt_batches_are_acked_by_the_center_and_commands_come_back(tmp_path, mqtt_broker):  # noqa: F811
    collector_id = f"c-{uuid.uuid4().hex[:8]}"  # a fresh persistent session per run
    center = MqttCenter(collector_id).start()
    center.acking = False  # the center is down at first: nothing is acknowledged
    meter = Dlt645Meter("m645", "110100000001", StaticSource({"p_kw": 5.0}), clock=DeviceClock(offset_s=-60))

    async def main():
        await meter.start()
        cfg = config_from_dict(
            {
                "id": collector_id,
                "secret": SECRET,
                "center": {
                    "url": f"mqtt://{mqtt_broker[0]}:{mqtt_broker[1]}",
                    "ack_timeout_s": 0.3,
                    "backoff_min_s": 0.05,
                    "backoff_max_s": 0.2,
                },
                "defaults": {"period_s": 0.2, "timeout_s": 0.3, "retries": 0, "status_period_s": 0.5},
                "outbox": {"path": str(tmp_path / "outbox.sqlite"), "batch_max_age_s": 0.1},
                "devices": [
                    {
                        "id": "M645",
                        "protocol": "dlt645",
                        "endpoint": f"127.0.0.1:{meter.port}",
                        "address": "110100000001",
                        "points": [{"name": "p", "di": "02030000"}],
                    }
                ],
            }
        )
        collector = Collector(cfg)
        await collector.start()
        try:
            assert await eventually(lambda: collector.outbox.stats().batches >= 3)
            await collector.stop_polling()
            collector._form_batches(force=True)
            accepted = collector.accepted_readings
            center.acking = True  # the center is back: resent batches are now stored and acknowledged
            assert await eventually(lambda: collector.outbox.stats().batches == 0)
            with center.record.lock:  # what the center holds once the outbox is empty
                stored = len(center.record.readings)
                in_batches = sum(len(b.readings) for b in center.record.batches.values())
            collector.start_polling()  # commands go to running devices
            command = Command(
                command_id=str(uuid.uuid4()),
                collector_id=collector_id,
                kind="time_sync",
                device="M645",
                created_at=datetime.now(UTC),
            )
            center.send_command(command)
            assert await eventually(lambda: len(center.results) == 1, 10)
            assert await eventually(lambda: center.status_messages, 5)
            return accepted, stored, in_batches, command.command_id
        finally:
            await collector.stop()
            await meter.stop()
            center.stop()
            forget_session(f"carbonflow-collector-{collector_id}")

    accepted, stored, in_batches, command_id = asyncio.run(main())
    assert stored == in_batches == accepted  # every reading exactly once, though batches were re-published
    result = center.results[0]
    assert result.command_id == command_id and result.status == "acknowledged", result.detail
    assert clock_error_s(meter) < 3
    status = center.status_messages[-1]
    assert (
        status["collector_id"] == collector_id
        and status["signature"]
        and status["devices"][0]["device"] == "M645"
    )
    assert datetime.now(UTC) - datetime.fromisoformat(status["sent_at"]) < timedelta(minutes=5)


def test_a_command_result_the_center_did_not_take_is_sent_again_later():
    from datetime import UTC, datetime

    from carbonflow.collector.commands import CommandLoop
    from carbonflow.delivery import DeliveryError
    from carbonflow.messages.c4 import CommandResult

    class FlakyCenter:
        def __init__(self) -> None:
            self.calls, self.taken = 0, []

        async def send_result(self, result) -> None:
            self.calls += 1
            if self.calls == 1:
                raise DeliveryError("timed out")
            self.taken.append(result.command_id)

    center = FlakyCenter()
    loop = CommandLoop(None, center.send_result, None, retry_s=0.1)  # only the result sending
    now = datetime(2026, 6, 1, tzinfo=UTC)
    results = [CommandResult(command_id=i, status="acknowledged", finished_at=now) for i in ("a", "b")]
    left = asyncio.run(loop.send_results(results))
    assert [r.command_id for r in left] == ["a", "b"] and center.taken == []
    assert asyncio.run(loop.send_results(left)) == [] and center.taken == ["a", "b"]


def test_the_command_registry_types_parameters_and_answers_an_unknown_kind_clearly():
    from carbonflow.collector.commands import COMMANDS, run_command
    from carbonflow.messages.c4 import CommandKind

    now = datetime(2026, 6, 1, tzinfo=UTC)

    def command(kind: str, **params) -> Command:  # model_construct: a kind the schema would refuse
        return Command.model_construct(
            command_id=kind, collector_id="C1", kind=kind, device="X", params=params, created_at=now
        )

    async def answer(cmd: Command):
        return await run_command(lambda c: COMMANDS.run(None, c), cmd, lambda: now, events.append)

    events: list[str] = []
    unknown = asyncio.run(answer(command("reboot_world")))
    bad = asyncio.run(answer(command("set_carbon_factor", factors="many")))
    assert unknown.status == "failed" and "unknown command kind 'reboot_world'" in unknown.detail
    assert bad.status == "failed" and bad.detail.startswith("set_carbon_factor: parameter factors")
    assert unknown.finished_at == now and len(events) == 2
    assert set(COMMANDS.handlers) == set(CommandKind.__args__)  # every kind of the contract is handled
