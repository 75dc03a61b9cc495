"""Meter-vs-platform comparison: the arithmetic on hand-computed cases, then a real simulated DL/T 698.45
electric-carbon meter polled and given factors by the collector's poller over TCP, its readings and
acknowledged downloads stored in the center, compared by ``check_meters``: agrees, then tampered."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from carbonflow.center.metering.meter_check import (
    FactorDownload,
    Sample,
    check_meters,
    compare,
    downloads_from_commands,
    list_checks,
    meter_summary,
    pair_samples,
    resolution_of,
)
from carbonflow.center.store import (
    Store,
    ingest_batch,
    queue_command,
    record_command_result,
    register_devices,
    take_queued_commands,
    upsert_collector,
)
from carbonflow.collector import pollers
from carbonflow.collector.config import config_from_dict
from carbonflow.devices.base import DeviceClock, StaticSource
from carbonflow.devices.dlt698_meter import Dlt698Meter
from carbonflow.messages.c4 import Batch, CommandResult, Reading

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
D = Decimal


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def samples(*rows: tuple[float, str, str]) -> list[Sample]:
    return [Sample(at(m), D(e), D(c)) for m, e, c in rows]


def factors(*rows: tuple[float, str]) -> list[FactorDownload]:
    return [FactorDownload(at(m), D(f)) for m, f in rows]


def test_constant_factor_expected_is_previous_register_plus_energy_times_factor():
    result = compare(
        samples((0, "100.00", "10.00"), (15, "110.00", "15.00"), (30, "130.00", "25.00")), factors((0, "0.5"))
    )
    assert result.status == "ok"
    assert result.energy_kwh == D("30.00") and result.expected_kg == D("25.0000")
    assert result.deviation_kg == 0 and result.resolution_kg == D("0.01")
    assert result.uncertainty_kg == D("0.01") * (D("0.5") + D("0.5"))  # energy register flooring
    assert result.start_ts == at(0) and result.end_ts == at(30)


def test_factor_change_at_a_reading_is_exact():
    # 0.5 until 10 min (10 kWh -> 5 kg), then 0.8 (10 kWh -> 8 kg): 10 + 5 + 8 = 23
    result = compare(
        samples((0, "100.00", "10.00"), (10, "110.00", "15.00"), (20, "120.00", "23.00")),
        factors((0, "0.5"), (10, "0.8")),
        energy_resolution_kwh=D(0),
    )
    assert result.status == "ok" and result.expected_kg == D("23.00") and result.uncertainty_kg == 0
    assert [f["factor"] for f in result.factors] == ["0.5", "0.8"]


def test_factor_change_between_readings_is_interpolated_and_bounded():
    # change at 5 of 20 minutes: 20 kWh split 5/15 -> 5 x 0.5 + 15 x 0.8 = 14.5; the meter's energy at the
    # change lies between the readings: the split is off by at most 15 kWh -> bound 15 x 0.3 = 4.5
    result = compare(
        samples((0, "100.00", "10.00"), (20, "120.00", "24.50")),
        factors((0, "0.5"), (5, "0.8")),
        energy_resolution_kwh=D(0),
    )
    assert result.expected_kg == D("24.50") and result.uncertainty_kg == D("4.5")
    assert result.status == "ok"
    # the meter split its energy differently (all 20 kWh at 0.8 = 26.00): still within the bound
    assert (
        compare(
            samples((0, "100.00", "10.00"), (20, "120.00", "26.00")), factors((0, "0.5"), (5, "0.8"))
        ).status
        == "ok"
    )
    # beyond the bound (24.50 + 4.5 + resolutions): reported
    assert compare(
        samples((0, "100.00", "10.00"), (20, "120.00", "29.10")), factors((0, "0.5"), (5, "0.8"))
    ).status == ("mismatch")


def test_missing_readings_do_not_break_the_sum():
    energy = [(at(0), D("100.00")), (at(15), D("110.00")), (at(30), D("130.00")), (at(45), None)]
    carbon = [(at(0), D("10.00")), (at(30), D("25.00")), (at(40), D("30.00"))]  # 15 missing, 40 alone
    paired, unpaired = pair_samples(energy, carbon)
    assert [s.ts for s in paired] == [at(0), at(30)] and unpaired == 2
    result = compare(paired, factors((0, "0.5")))
    assert result.status == "ok" and result.expected_kg == D("25.00")
    assert compare(paired[:1], factors((0, "0.5"))).status == "incomplete"
    assert compare(paired, []).detail == "no acknowledged factor download"


def test_meter_resolution_rounding_floor_is_accepted_one_step_more_is_not():
    # 12.345 kWh x 1.0 = 12.345 kg; the meter floors to 12.34 (shown - expected = -0.005: fine)
    base = (0, "0.000", "0.00")
    floored = compare(samples(base, (15, "12.345", "12.34")), factors((0, "1.0")), energy_resolution_kwh=D(0))
    assert floored.status == "ok" and floored.deviation_kg == D("-0.005")
    assert resolution_of([D("12.34"), D("1.5")]) == D("0.01")
    over = compare(samples(base, (15, "12.345", "12.36")), factors((0, "1.0")), energy_resolution_kwh=D(0))
    assert over.status == "mismatch" and over.deviation_kg == D("0.015")
    # a configured tolerance overrides the register's resolution
    loose = compare(
        samples(base, (15, "12.345", "12.36")),
        factors((0, "1.0")),
        energy_resolution_kwh=D(0),
        tolerance_kg=D("0.02"),
    )
    assert loose.status == "ok"


def test_a_register_jump_is_reported_with_when_and_how_much():
    result = compare(
        samples((0, "0.00", "0.00"), (15, "10.00", "5.00"), (30, "20.00", "11.00"), (45, "30.00", "16.00")),
        factors((0, "0.5")),
    )
    assert result.status == "mismatch" and result.deviation_kg == D("1.00")
    assert "+1.00" in result.detail and at(30).isoformat() in result.detail


def test_energy_register_going_backwards_stops_the_comparison():
    result = compare(samples((0, "100", "0.00"), (15, "110", "5.00"), (30, "3", "6.00")), factors((0, "0.5")))
    assert result.status == "incomplete" and result.end_ts == at(15) and "backwards" in result.detail


def test_downloads_take_effect_at_their_start_or_when_they_reached_the_meter():
    commands = [
        {  # queued for an interval that had begun: effective when acknowledged
            "id": "a",
            "kind": "set_carbon_factor",
            "status": "acknowledged",
            "params": {"factor": "0.5000", "start": at(0).isoformat(), "interval_s": 900},
            "updated_at": at(2),
        },
        {  # a schedule of two factors starting later: each at its own start
            "id": "b",
            "kind": "set_carbon_factor",
            "status": "acknowledged",
            "params": {"factors": ["0.6", "0.7"], "start": at(30).isoformat(), "interval_s": 900},
            "updated_at": at(20),
        },
        {
            "id": "c",
            "kind": "set_carbon_factor",
            "status": "failed",
            "params": {"factor": "9"},
            "updated_at": at(3),
        },
        {"id": "d", "kind": "time_sync", "status": "acknowledged", "params": {}, "updated_at": at(4)},
    ]
    found = downloads_from_commands(commands)
    assert [(d.effective_from, d.factor_kg_per_kwh, d.command_id) for d in found] == [
        (at(2), D("0.5000"), "a"),
        (at(30), D("0.6"), "b"),
        (at(45), D("0.7"), "b"),
    ]


# --- a real electric-carbon meter --------------------------------------------------------------------


class FakeTime:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.mark.parametrize(
    "ct_ratio, vt_ratio", [(None, None), (100, 100)], ids=["primary", "behind CT 500/5 and VT 10 kV/100 V"]
)
def test_a_real_dlt698_carbon_meter_agrees_within_resolution_and_a_tampered_register_is_reported(
    tmp_path, ct_ratio, vt_ratio
):
    ratio = D(ct_ratio * vt_ratio) if ct_ratio else D(1)  # 倍率: the register shows primary / ratio
    secondary = {"secondary": True, "scale_to_device": str(1 / ratio)} if ct_ratio else {}
    power_kw = 120.0 / 100 if ct_ratio else 120.0  # behind CT/VT: 1.2 kW secondary is 12 MW primary
    time = FakeTime()
    source = StaticSource({"p_kw": power_kw})
    meter = Dlt698Meter("ecm", "220100000009", source, clock=DeviceClock(now_fn=time, _epoch=time.now))
    store = Store.open(f"sqlite:///{tmp_path / 'center.db'}")
    upsert_collector(store, "C1", "secret-0123456789")
    point = {"element_kind": "load", "element_id": "U1", **secondary}
    device = {
        "id": "ECM-U1",
        "kind": "carbon_meter",
        "protocol": "dlt698",
        "bus": "B1",
        "points": [
            {"id": "ECM-U1/e", "quantity": "import_energy_kwh", "resolution": "0.0001", **point},
            {"id": "ECM-U1/c", "quantity": "carbon_kg", "resolution": "0.01", **point},
        ],
    }
    if ct_ratio:
        device.update(ct_ratio=ct_ratio, vt_ratio=vt_ratio, accuracy_class="0.5S")
    register_devices(store, [device], "C1")
    seq = iter(range(1, 1000))

    async def main():
        await meter.start()
        config = config_from_dict(
            {
                "id": "C1",
                "secret": "secret-0123456789",
                "center": {"url": "http://127.0.0.1:9"},
                "devices": [
                    {
                        "id": "ECM-U1",
                        "protocol": "dlt698",
                        "endpoint": f"127.0.0.1:{meter.port}",
                        "address": "220100000009",
                        "points": [
                            {"name": "e", "oad": "00100400", "kind": "counter"},
                            {"name": "c", "oad": "20800200"},
                        ],
                    }
                ],
            }
        )
        poller = pollers.make_poller(config.devices[0], config, lambda *_: None, clock=time)
        try:
            await poller.open()

            async def poll() -> None:
                values = await poller.poll()
                readings = [Reading(point=f"ECM-U1/{v.point}", ts=v.ts, value=str(v.value)) for v in values]
                batch = Batch(
                    collector_id="C1",
                    batch_id=uuid.uuid4().hex,
                    seq=next(seq),
                    created_at=time.now,
                    readings=readings,
                )
                ingest_batch(store, batch, received_at=time.now)

            async def download(factor: str) -> None:
                # what MeteringService queues, through the queue -> sent -> acknowledged lifecycle
                queue_command(
                    store,
                    "C1",
                    "set_carbon_factor",
                    device_id="ECM-U1",
                    params={
                        "factor": factor,
                        "unit": "kgCO2/kWh",
                        "start": time.now.isoformat(),
                        "interval_s": 900,
                    },
                    now=time.now,
                )
                (command,) = take_queued_commands(store, "C1", now=time.now)
                detail = await poller.set_carbon_factor(command.params)
                record_command_result(
                    store,
                    "C1",
                    CommandResult(
                        command_id=command.command_id,
                        status="acknowledged",
                        detail=detail,
                        finished_at=time.now,
                    ),
                )

            await poll()
            await download("0.5870")
            for step, (factor, p_kw) in enumerate(
                [(None, 120.0), ("0.6123", 95.5), (None, 40.25), ("0.4411", 210.0)]
            ):
                if factor is not None:
                    await download(factor)
                source.set("p_kw", p_kw if not ct_ratio else p_kw / 100)
                time.advance(minutes=7, seconds=13 * step)
                await poll()
            honest = check_meters(store, time.now)
            meter.forward_carbon.exact += Decimal("0.05")  # someone adds 50 g to the register
            time.advance(minutes=5)
            await poll()
            tampered = check_meters(store, time.now)
            return honest, tampered
        finally:
            await poller.close()
            await meter.stop()

    honest, tampered = asyncio.run(main())
    (ok,) = honest
    assert ok.status == "ok", ok.detail
    assert abs(ok.deviation_kg) < ok.resolution_kg == D("0.01") * ratio  # the digit, on the primary side
    assert ok.energy_kwh > 40 and len(ok.factors) == 3
    assert len(ok.intervals) == 4 and all(step["status"] == "ok" for step in ok.intervals)
    assert sum(D(step["energy_kwh"]) for step in ok.intervals) == ok.energy_kwh
    for step in ok.intervals:  # per step: what the register added vs the platform's energy x factor
        assert abs(D(step["shown_kg"]) - D(step["computed_kg"])) <= D(step["allowed_kg"])
    (bad,) = tampered
    assert bad.status == "mismatch" and bad.start_ts == ok.end_ts  # chained: the next check starts there
    assert D("0.04") * ratio <= bad.deviation_kg <= D("0.06") * ratio
    assert [step["status"] for step in bad.intervals] == ["mismatch"]
    stored = list_checks(store, device="ECM-U1")
    assert [row["status"] for row in stored] == ["mismatch", "ok"]
    (summary,) = meter_summary(store)
    assert (
        summary["steps"] == 5 and summary["mismatched_steps"] == 1 and summary["latest_status"] == "mismatch"
    )
    assert summary["energy_kwh"] == ok.energy_kwh + bad.energy_kwh
    assert summary["deviation_kg"] == summary["shown_kg"] - summary["computed_kg"] > D("0.04") * ratio
    store.close()
