"""The alarm engine's field state in memory (devices, collectors, cameras' latest images; new meter checks
and reading conflicts read only when a hook said some were stored) gives the very same alarms as reading
that state from the store at every evaluation.

Two centers get the same messages through the real paths — signed batches and a signed live status
through ``ingest.receive`` (its hook is the engine's ``on_status``), site images through
``ImageStore.save`` (its listeners), meter checks announced as the maintenance scheduler does — and the
same intervals and ticks.  One engine reads the store (``state_in_memory = False``, as before), the other
keeps the state from the hooks; every alarm must match, field by field.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import insert, update

from carbonflow.center.alarms import AlarmEngine, parse_rules
from carbonflow.center.alarms.state import FieldState
from carbonflow.center.ingest.receive import receive_batch, receive_status
from carbonflow.center.metering.service import IntervalOutcome
from carbonflow.center.store import ImageStore, Store, upsert_collector
from carbonflow.center.store import alarms as alarm_store
from carbonflow.center.store.schema import Collector, Device, MeterCheck, Point
from carbonflow.messages.c4 import Batch, DeviceStatus, Reading
from carbonflow.messages.signing import canonical_json, sign_document

SECRET = "state-secret"
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)  # signed stamps use the real clock
INTERVAL = timedelta(seconds=60)
RULES = [
    {"id": "loss", "kind": "comm_loss", "after_s": 150},
    {"id": "clock", "kind": "clock_offset", "tolerance": 5},
    {"id": "cam", "kind": "camera_offline", "after_s": 150},
    {"id": "collector", "kind": "collector_loss", "after_s": 200},
    {"id": "meter", "kind": "meter_mismatch"},
    {"id": "jump", "kind": "tamper", "quantities": ["import_energy_kwh"], "ratio": 3, "min_jump": 1.0},
    {"id": "silent", "kind": "stuck_value", "quantities": ["p_mw"], "same_value": False, "intervals": 2},
    {"id": "zero", "kind": "threshold", "quantity": "point.p_mw", "absolute": True, "below": 0.0001},
]


def at(k: float) -> datetime:
    return T0 + k * INTERVAL


class StoreReadingEngine(AlarmEngine):
    state_in_memory = False


class Center:
    """One center's store, image store and engine; ``clock`` and ``wall`` are set by the scenario."""

    def __init__(self, path, engine_class: type[AlarmEngine]) -> None:
        self.store = Store.open(f"sqlite:///{path / 'center.db'}")
        upsert_collector(self.store, "C1", SECRET, name="c1")
        with self.store.write() as connection:
            connection.execute(update(Collector).values(region="AH", last_seen=at(0)))
            connection.execute(
                insert(Device),
                [
                    dict(id=d, collector_id="C1", kind=kind, protocol="dlt645", bus_id=bus, region="AH/HF",
                         status="online", online=True, last_seen=at(0))
                    for d, kind, bus in (("EM-1", "energy_meter", "B1"), ("EM-2", "energy_meter", "B2"),
                                         ("CAM-1", "camera", "B1"), ("ECM-1", "carbon_meter", "B2"))
                ],
            )  # fmt: skip
            connection.execute(
                insert(Point),
                [
                    dict(id="EM-1/p", device_id="EM-1", element_kind="branch", element_id="L1",
                         quantity="p_mw", end="from"),
                    dict(id="EM-1/e", device_id="EM-1", element_kind="load", element_id="U1",
                         quantity="import_energy_kwh", end="-"),
                    dict(id="EM-2/p", device_id="EM-2", element_kind="branch", element_id="L2",
                         quantity="p_mw", end="from"),
                    dict(id="EM-2/e", device_id="EM-2", element_kind="load", element_id="U2",
                         quantity="import_energy_kwh", end="-"),
                ],
            )  # fmt: skip
        self.now, self.wall = [at(0)], [at(0)]
        self.engine = engine_class(
            self.store, rules=parse_rules(RULES), interval_s=60,
            clock=lambda: self.now[0], wall_clock=lambda: self.wall[0],
        )  # fmt: skip
        self.images = ImageStore(self.store, path / "images")
        self.images.listeners.append(self.engine.on_image)

    def batch(self, raw: bytes, received_at: datetime) -> None:
        receive_batch(self.store, raw, received_at=received_at, on_status=self.engine.on_status)

    def status(self, raw: bytes) -> None:
        receive_status(self.store, "C1", raw, self.engine.on_status)

    def image(self, ts: datetime) -> None:
        data = f"image {ts.isoformat()}".encode()
        self.images.save("CAM-1", ts, data, "image/png", hashlib.sha256(data).hexdigest())

    def meter_check(self, k: int, status: str) -> None:
        with self.store.write() as connection:
            connection.execute(
                insert(MeterCheck),
                [dict(device_id="ECM-1", carbon_point="x", energy_point="y", start_ts=at(k - 1),
                      end_ts=at(k), status=status, deviation_kg=Decimal("0.42"), created_at=at(k))],
            )  # fmt: skip
        self.engine.on_meter_checks()  # as the maintenance scheduler's listener does after saving

    def interval(self, k: int) -> None:
        self.now[0] = self.wall[0] = at(k) + timedelta(seconds=20)
        outcome = IntervalOutcome(
            end=at(k), stored=True, completeness=1.0, totals={"residual_t_per_h": 0.0}, intensities={}
        )
        assert self.engine.on_interval(outcome).error is None

    def tick(self, k: float) -> None:
        self.now[0] = self.wall[0] = at(k)
        assert self.engine.tick(at(k)).error is None

    def alarms(self) -> list[tuple]:
        fields = ("rule", "state", "raised_at", "cleared_at", "occurrences", "flapping", "message", "value")
        return sorted(
            (*(a[f] for f in fields), a["subject"]["kind"], a["subject"]["id"], (a["image"] or {}).get("key"))
            for a in alarm_store.list_alarms(self.store, state="all")
        )


def signed_batch(k: int, readings: dict[str, str], statuses: list[DeviceStatus] = (), seq: int = 0) -> bytes:
    batch = Batch(
        collector_id="C1", batch_id=uuid.uuid4().hex, seq=seq or k, created_at=at(k),
        readings=[Reading(point=p, ts=at(k) - timedelta(seconds=5), value=v) for p, v in readings.items()],
        statuses=list(statuses),
    )  # fmt: skip
    return batch.signed(SECRET.encode()).model_dump_json().encode()


def live_status(statuses: list[DeviceStatus]) -> bytes:
    document = {"collector_id": "C1", "devices": [s.model_dump(mode="json") for s in statuses]}
    return canonical_json(sign_document(document, SECRET.encode(), "status"))


def run_scenario(centers: list[Center]) -> None:
    """Statuses, readings, images, conflicts and meter checks over 12 intervals, then silence."""
    register = {k: str(100 + 10 * k) for k in range(13)}
    register[6], register[7] = "5170", "180"  # a jump, then back
    for k in range(1, 13):
        readings = {"EM-1/p": f"{10 + k % 3}.5", "EM-1/e": register[k], "EM-2/e": str(500 + 5 * k)}
        if k not in (7, 8):  # EM-2 brings no new reading for two intervals: "silent" (no new reading)
            readings["EM-2/p"] = "0" if k in (3, 4) else f"-3.{k}"
        statuses = []
        if k == 3:
            statuses.append(DeviceStatus(device="EM-1", online=False, error="connection refused"))
        if k == 5:
            statuses.append(DeviceStatus(device="EM-1", online=True, last_seen=at(k) - timedelta(seconds=5)))
        if k in (7, 8):  # EM-2 reported online after the interval's end, without a new p_mw
            statuses.append(DeviceStatus(device="EM-2", online=True, last_seen=at(k) + timedelta(seconds=10)))
        if k in (4, 9):
            offset = 30.0 if k == 4 else 0.4
            statuses.append(DeviceStatus(device="EM-2", online=True, clock_offset_s=offset))
        if k <= 10:
            raw = signed_batch(k, readings, statuses)
            for center in centers:
                center.batch(raw, at(k) - timedelta(seconds=2))
        if k == 6:  # EM-2/e offered again for interval 6 with another value: a reading conflict
            again = signed_batch(k, {"EM-2/e": "520"}, seq=100 + k)
            for center in centers:
                center.batch(again, at(k) - timedelta(seconds=1))
        if k == 2:  # a live status message (the collector's last seen is set again by the next batch)
            raw = live_status(
                [DeviceStatus(device="ECM-1", online=True, last_seen=at(k) - timedelta(seconds=3))]
            )
            for center in centers:
                center.status(raw)
        for center in centers:
            if k in (1, 2, 9, 10):
                center.image(at(k) - timedelta(seconds=10))
            if k == 4:
                center.meter_check(k, "mismatch")
            if k == 8:
                center.meter_check(k, "ok")
            center.interval(k)
            center.tick(k + 0.5)
    for center in centers:  # the collector and its devices fall silent
        for k in (13, 14, 16):
            center.tick(k)


def test_state_in_memory_gives_the_very_same_alarms_as_reading_the_store(tmp_path):
    (tmp_path / "read").mkdir()
    (tmp_path / "kept").mkdir()
    reading, kept = Center(tmp_path / "read", StoreReadingEngine), Center(tmp_path / "kept", AlarmEngine)
    assert reading.engine.field is None and isinstance(kept.engine.field, FieldState)
    try:
        run_scenario([reading, kept])
        expected = reading.alarms()
        assert {alarm[0] for alarm in expected} == {rule["id"] for rule in RULES}  # every kind raised
        assert any(alarm[1] == "cleared" for alarm in expected)
        assert any("offered 520 again" in alarm[6] for alarm in expected)  # the conflict was seen
        assert kept.alarms() == expected
    finally:
        reading.store.close()
        kept.store.close()


def test_a_restarted_engine_loads_the_state_from_the_store(tmp_path):
    center = Center(tmp_path, AlarmEngine)
    try:
        with center.store.write() as connection:  # written while no engine ran
            connection.execute(update(Device).where(Device.id == "EM-1").values(online=False, error="gone"))
        assert alarm_store.list_alarms(center.store, state="active") == []
        center.engine = AlarmEngine(
            center.store, rules=parse_rules(RULES[:1]), interval_s=60, clock=lambda: at(1)
        )
        center.engine.tick(at(1))
        [alarm] = alarm_store.list_alarms(center.store, state="active")
        assert (alarm["rule"], alarm["subject"]["id"]) == ("loss", "EM-1")
    finally:
        center.store.close()


def test_purged_images_are_read_again(tmp_path):
    center = Center(tmp_path, AlarmEngine)
    try:
        center.image(at(1))
        assert center.engine.field.camera_images() == {"CAM-1": at(1)}
        center.images.purge(1, now=at(1) + timedelta(days=2))  # the camera's latest image is gone
        assert center.engine.field.camera_images() == alarm_store.latest_images(center.store, ["CAM-1"]) == {}
    finally:
        center.store.close()
