"""A tampered register on the simulator (scenario event ``tamper``), read by the collector's DL/T 645
poller and validator, judged by the shipped ``register-jump`` rule: the alarm raises when the register
jumps and clears when the tampering ends and the register shows its true value again (the collector
sends that drop as an ``invalid`` counter reset; the center's tamper check sees the jump taken back)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

from collector_services import config
from services import database_url, postgres_database, postgres_url, sqlite_url, store  # noqa: F401
from simfield import START, make_field

from carbonflow.center.alarms import AlarmEngine, default_rules
from carbonflow.center.metering.measurements import StoredReading
from carbonflow.center.metering.service import IntervalOutcome
from carbonflow.center.store import alarms as alarm_store
from carbonflow.center.store import register_devices, upsert_collector
from carbonflow.collector.device_map_config import config_from_device_map
from carbonflow.collector.pollers import make_poller
from carbonflow.collector.validate import Validator
from carbonflow.sim.scenarios import Scenario
from carbonflow.sim.serve import DeviceFarm

METER, TAMPER_START_MIN, TAMPER_END_MIN = "EM-U05", 3, 6
EVENTS = [
    {"kind": "tamper", "device": METER, "point": "import_energy_kwh", "offset": 20000,
     "start": f"{TAMPER_START_MIN}m", "end": f"{TAMPER_END_MIN}m"},
]  # fmt: skip


def collected_readings(tmp_path) -> list[StoredReading]:
    """The meter's register every half minute for ten minutes, as the collector sends it."""
    field = make_field(count=12, scenario=Scenario.from_data(EVENTS, START))

    async def scenario() -> list[StoredReading]:
        field.at(0)
        farm = DeviceFarm(
            field.device_map, field.feed, field.clock.now, field.simulation.scenario, only=[METER]
        )
        async with farm:
            host, port = farm.endpoint_of(METER)
            [device] = config_from_device_map(field.device_map, devices=[METER])["devices"]
            loaded = config([device | {"endpoint": f"{host}:{port}"}], tmp_path)
            poller = make_poller(loaded.devices[0], loaded, lambda *_: None, clock=field.clock.now)
            validator, sent = Validator(), []
            try:
                for half_minutes in range(1, 21):
                    field.at(half_minutes / 2)
                    for raw in await poller.poll():
                        point = f"{METER}/{raw.point}"
                        reading = validator.check(point, loaded.devices[0].point(raw.point), raw).reading
                        if reading is not None and reading.value is not None:
                            sent.append(
                                StoredReading(point, reading.ts, Decimal(reading.value), reading.quality)
                            )
            finally:
                await poller.close()
        return sent

    readings = asyncio.run(asyncio.wait_for(scenario(), 120))
    return readings, field.entry(METER)


def test_a_register_jump_clears_when_the_tampered_register_shows_its_true_value_again(store, tmp_path):  # noqa: F811
    readings, entry = collected_readings(tmp_path)
    register = [r for r in readings if r.point_id == f"{METER}/1"]
    upsert_collector(store, "C1", "secret")
    register_devices(store, [entry], collector_id="C1")
    rules = [rule for rule in default_rules() if rule.id == "register-jump"]
    engine = AlarmEngine(store, rules=rules, interval_s=60)
    raised, cleared = [], []
    for minute in range(1, 11):
        end = START + timedelta(minutes=minute)
        window = [r for r in readings if end - timedelta(minutes=1) < r.ts <= end]
        evaluation = engine.on_interval(IntervalOutcome(end, stored=True, source_readings=window))
        assert evaluation.error is None, evaluation.error
        raised += [minute] * len(evaluation.raised)
        cleared += [minute] * len(evaluation.cleared)
    [alarm] = alarm_store.list_alarms(store, state="all")
    assert alarm["rule"] == "register-jump" and alarm["subject"]["id"] == METER
    assert len(raised) == 1 and TAMPER_START_MIN <= raised[0] <= TAMPER_START_MIN + 2, (raised, register)
    assert len(cleared) == 1 and TAMPER_END_MIN <= cleared[0] <= TAMPER_END_MIN + 2, (cleared, register)
    assert any(r.quality == "invalid" for r in register)  # the drop back: a counter "reset"
