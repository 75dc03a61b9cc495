"""Site cameras end to end: the simulated camera over real HTTP, the device map and farm, the collector's
snapshots and image outbox, the center's signed ingest (HTTP over uvicorn, MQTT over the real broker),
storage on disk with retention, and the camera API."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from services import mqtt_url  # noqa: F401
from simfield import START, grid_and_map, make_field

from carbonflow.center.api import CenterSettings, create_app
from carbonflow.center.store import ImageStore, Store, create_user, register_devices, upsert_collector
from carbonflow.collector.config import config_from_dict
from carbonflow.collector.device_map_config import config_from_device_map
from carbonflow.collector.image_outbox import ImageOutbox, QueuedImage
from carbonflow.collector.service import Collector
from carbonflow.collector.transport import MqttTransport
from carbonflow.devices.base import DeviceClock, StaticSource
from carbonflow.devices.camera import CameraView, SiteCamera
from carbonflow.messages.images import image_headers, sha256_hex, ts_text
from carbonflow.sim.cameras import add_cameras, cameras_of
from carbonflow.sim.scenarios import Scenario
from carbonflow.sim.serve import DeviceFarm

T0 = datetime(2025, 6, 1, 16, 0, tzinfo=UTC)
SECRET = "camera-secret"


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB rows of a truecolour PNG, every chunk's CRC checked (enough for ours)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, chunks = 8, {}
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc, kind
        chunks[kind] = chunks.get(kind, b"") + body
        position += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 2) and b"IEND" in chunks
    raw = zlib.decompress(chunks[b"IDAT"])
    stride = 1 + 3 * width
    assert len(raw) == height * stride
    rows = [raw[r * stride + 1 : (r + 1) * stride] for r in range(height)]
    assert all(raw[r * stride] == 0 for r in range(height))  # filter "none" on every row
    return width, height, rows


class ManualTime:
    def __init__(self, t: datetime) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t


def camera(name: str = "CAM-1", now: ManualTime | None = None) -> SiteCamera:
    source = StaticSource({"G1/p": 312.46, "G1/e": 123456.789})
    clock = DeviceClock(now_fn=now or ManualTime(T0))
    return SiteCamera(
        name, [CameraView("G1", "G1/p", "G1/e")], source, title="Donggang power station", clock=clock
    )


def test_the_camera_serves_a_png_whose_timestamp_overlay_follows_its_clock():
    now = ManualTime(T0)
    cam = camera(now=now)

    async def run():
        async with cam, httpx.AsyncClient(base_url=f"http://127.0.0.1:{cam.port}") as client:
            first = await client.get("/snapshot.png")
            again = await client.get("/snapshot")
            now.t = T0 + timedelta(seconds=1)
            later = await client.get("/snapshot.png")
            missing = await client.get("/other")
            posted = await client.post("/snapshot.png", content=b"x")
            return first, again, later, missing, posted

    first, again, later, missing, posted = asyncio.run(run())
    assert first.status_code == 200 and first.headers["content-type"] == "image/png"
    width, height, rows = decode_png(first.content)
    assert (width, height) == (640, 360)
    assert first.content == again.content  # a pure function of the scene: same time, same bytes
    _w, _h, later_rows = decode_png(later.content)
    changed = [r for r in range(height) if rows[r] != later_rows[r]]
    assert changed and max(changed) < 40  # only the timestamp overlay (top rows) changed
    assert missing.status_code == 404 and posted.status_code == 405
    assert cam.snapshots_served == 3


def test_an_offline_camera_drops_the_connection_and_a_slow_one_times_out():
    cam = camera()

    async def run():
        async with cam:
            url = f"http://127.0.0.1:{cam.port}/snapshot.png"
            cam.faults.offline = True
            async with httpx.AsyncClient() as client:
                with pytest.raises(httpx.TransportError):
                    await client.get(url)
            cam.faults.offline, cam.faults.delay_s = False, 0.5
            async with httpx.AsyncClient() as client:
                with pytest.raises(httpx.ReadTimeout):
                    await client.get(url, timeout=0.05)
            cam.faults.delay_s = 0.0
            async with httpx.AsyncClient() as client:
                assert (await client.get(url)).status_code == 200

    asyncio.run(run())


def test_every_plant_gets_a_camera_that_the_farm_serves_and_the_scenario_takes_offline():
    net, _ = grid_and_map()
    scenario = Scenario.from_data(
        [{"kind": "camera_offline", "camera": "CAM-P01", "start": "00:10", "end": "00:20"}], START
    )
    field = make_field(count=4, scenario=scenario)
    add_cameras(field.device_map, net)
    cameras = cameras_of(field.device_map)
    assert [c["id"] for c in cameras] == [f"CAM-P{k:02d}" for k in range(1, 11)]
    assert add_cameras(field.device_map, net) and len(cameras_of(field.device_map)) == 10  # idempotent
    p03 = next(c for c in cameras if c["id"] == "CAM-P03")
    assert [v["unit"] for v in p03["views"]] == ["G3-1", "G3-2"] and p03["title"] == "Nanhu power station"
    config = config_from_dict(config_from_device_map(field.device_map))
    assert [c.id for c in config.cameras] == [c["id"] for c in cameras] and len(config.devices) == 177

    async def run():
        field.at(0)
        farm = DeviceFarm(
            field.device_map, field.feed, field.clock.now, scenario, only=["CAM-P01", "CAM-P03"]
        )
        served = await farm.start(base_port=0)
        try:
            urls = {
                d["id"]: f"http://127.0.0.1:{d['endpoint']['port']}/snapshot.png" for d in served["devices"]
            }
            async with httpx.AsyncClient() as client:
                field.at(5)
                image = (await client.get(urls["CAM-P03"])).content
                field.at(12)
                with pytest.raises(httpx.TransportError):
                    await client.get(urls["CAM-P01"])
                field.at(25)
                back = await client.get(urls["CAM-P01"])
            return image, back
        finally:
            await farm.stop()

    image, back = asyncio.run(run())
    assert decode_png(image)[:2] == (640, 360) and back.status_code == 200


def test_the_image_outbox_drops_the_oldest_images_beyond_its_byte_bound(tmp_path):
    outbox = ImageOutbox(tmp_path / "outbox.sqlite", max_bytes=2500)
    try:
        for k in range(5):
            outbox.append("CAM-1", f"2025-06-01T16:00:0{k}.000Z", bytes(1000), "image/png")
        outbox.append("CAM-1", "2025-06-01T16:00:04.000Z", bytes(1000), "image/png")  # same (camera, ts)
        stats = outbox.stats()
        assert (stats.images, stats.bytes, stats.dropped) == (2, 2000, 3)
        assert [i.ts[17:19] for i in outbox.oldest(5)] == ["03", "04"]
        assert outbox.append("CAM-1", "2025-06-01T16:01:00.000Z", bytes(3000), "image/png") == 1
        first = outbox.oldest(1)[0]
        outbox.reject(first.id)
        assert outbox.stats().rejected == 1 and outbox.stats().dropped == 4
    finally:
        outbox.close()


# -- center over real HTTP ----------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def center(tmp_path):
    import uvicorn

    url = f"sqlite:///{tmp_path / 'center.db'}"
    store = Store.open(url)
    upsert_collector(store, "C1", SECRET)
    register_devices(
        store,
        [{"id": "CAM-1", "kind": "camera", "protocol": "camera-http", "endpoint": {"host": "x", "port": 1}}],
        collector_id="C1",
    )
    create_user(store, "viewer", "viewer-pass", "viewer")
    settings = CenterSettings(database_url=url, image_dir=str(tmp_path / "images"))
    app = create_app(settings, store=store)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", app.state.images
    server.should_exit = True
    thread.join(10)
    store.close()


def test_collector_forwards_snapshots_that_the_center_stores_once_and_serves(center, tmp_path):
    base, images = center
    cam = camera()
    outcome = {}

    async def run():
        async with cam:
            config = config_from_dict(
                {
                    "id": "C1",
                    "secret": SECRET,
                    "center": {"url": base, "backoff_min_s": 0.05},
                    "outbox": {"path": str(tmp_path / "outbox.sqlite")},
                    "images": {"period_s": 3600},
                    "cameras": [{"id": "CAM-1", "endpoint": f"127.0.0.1:{cam.port}"}],
                }
            )
            collector = Collector(config, clock=cam.clock.now_fn)  # the collector's clock: the test's
            await collector.start()
            try:
                runner = collector.cameras.runners["CAM-1"]
                await asyncio.sleep(0.01)
                while runner.fetched < 1:  # the first snapshot is taken at start
                    await asyncio.sleep(0.01)
                cam.clock.now_fn.t = T0 + timedelta(seconds=5)
                assert await runner.fetch_once()
                while collector.cameras.outbox.stats().images:
                    await asyncio.sleep(0.02)
                # a replay of a delivered image (same camera and ts) is acknowledged as a duplicate
                stored = images.latest("CAM-1")
                collector.cameras.outbox.append(
                    "CAM-1", ts_text(stored["ts"]), images.read(stored["key"]), "image/png"
                )
                collector.cameras.wake()
                while collector.cameras.outbox.stats().images:
                    await asyncio.sleep(0.02)
                outcome["stats"] = collector.cameras.stats()
                outcome["status"] = collector.status()["images"]
            finally:
                await collector.stop(flush=True)  # the camera's status travels in a readings batch

    asyncio.run(run())
    assert outcome["stats"]["delivered"] == 3 and outcome["stats"]["dropped"] == 0
    summary = images.summary()["CAM-1"]
    assert summary["images"] == 2  # the replay stored nothing new
    assert len(list((tmp_path / "images").rglob("*.png"))) == 2

    with httpx.Client(base_url=base) as client:
        # a forged or unsigned image is refused and nothing is stored
        data = cam.snapshot()
        ts = "2025-06-01T17:00:00.000Z"

        def signed_headers(secret: bytes) -> dict[str, str]:
            return {"Content-Type": "image/png", **image_headers(secret, "C1", "CAM-1", ts, sha256_hex(data))}

        refused = client.post("/api/v1/images", content=data, headers=signed_headers(b"wrong-secret"))
        assert refused.status_code == 401 and "authentication failed" in refused.json()["error"]
        headers = signed_headers(SECRET.encode())
        tampered = client.post("/api/v1/images", content=data + b"x", headers=headers)
        assert tampered.status_code == 422 and "SHA-256" in tampered.json()["error"]
        assert images.summary()["CAM-1"]["images"] == 2
        accepted = client.post("/api/v1/images", content=data, headers=headers)
        replayed = client.post("/api/v1/images", content=data, headers=headers)  # the same request again
        assert replayed.status_code == 401 and "replayed" in replayed.json()["error"]
        resent = client.post("/api/v1/images", content=data, headers=signed_headers(SECRET.encode()))
        assert accepted.json()["duplicate"] is False and resent.json()["duplicate"] is True

        # the API: login required; list, latest, range for playback, bytes by key
        assert client.get("/api/v1/cameras").status_code == 401
        assert client.get(f"/api/v1/images/{accepted.json()['key']}").status_code == 401
        assert (
            client.post("/api/v1/login", json={"name": "viewer", "password": "viewer-pass"}).status_code
            == 200
        )
        listed = client.get("/api/v1/cameras").json()["items"]
        assert [(c["id"], c["status"], c["images"]) for c in listed] == [("CAM-1", "online", 3)]
        assert listed[0]["latest_ts"] == "2025-06-01T17:00:00Z"
        latest = client.get("/api/v1/cameras/CAM-1/latest")
        assert latest.content == data and latest.headers["content-type"] == "image/png"
        playback = client.get("/api/v1/cameras/CAM-1/images").json()  # default: 24 h up to the latest
        assert playback["total"] == 3 and [r["ts"] for r in playback["items"]] == sorted(
            r["ts"] for r in playback["items"]
        )
        window = client.get(
            "/api/v1/cameras/CAM-1/images",
            params={"start": "2025-06-01T16:30:00Z", "end": "2025-06-01T18:00:00+00:00"},
        ).json()
        assert [r["ts"] for r in window["items"]] == ["2025-06-01T17:00:00Z"]
        first = playback["items"][0]
        body = client.get(first["url"])
        assert sha256_hex(body.content) == first["sha256"] and "immutable" in body.headers["cache-control"]
        assert client.get("/api/v1/cameras/CAM-1/images", params={"start": "yesterday"}).status_code == 400
        assert client.get("/api/v1/cameras/NOPE/images").status_code == 404
        assert client.get("/api/v1/cameras/NOPE/latest").status_code == 404
        assert client.get("/api/v1/images/" + "0" * 64 + ".png").status_code == 404
        assert client.get("/api/v1/images/..%2Fcenter.db").status_code == 404


def test_retention_purges_old_rows_and_the_files_no_row_needs(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path / 'center.db'}")
    images = ImageStore(store, tmp_path / "images", retention_days=30)
    now = datetime(2025, 6, 1, tzinfo=UTC)
    cam = camera()
    old_only, shared = cam.snapshot(T0), cam.snapshot(T0 + timedelta(seconds=1))
    try:
        for ts, data in (
            (now - timedelta(days=40), old_only),
            (now - timedelta(days=35), shared),
            (now - timedelta(days=1), shared),  # identical picture, one file
        ):
            images.save("CAM-1", ts, data, "image/png", sha256_hex(data))
        assert len(list((tmp_path / "images").rglob("*.png"))) == 2
        report = images.purge(now=now)
        assert (report.rows_deleted, report.files_deleted) == (2, 1)
        left = list((tmp_path / "images").rglob("*.png"))
        assert [p.name for p in left] == [f"{sha256_hex(shared)}.png"]
        assert images.summary()["CAM-1"]["images"] == 1
        assert images.purge(now=now).rows_deleted == 0
    finally:
        store.close()


@pytest.fixture
def mqtt_image_center(tmp_path, mqtt_url):  # noqa: F811
    """A center receiving a fresh collector's batches and images over the real broker: (id, store)."""
    from collector_services import forget_session

    from carbonflow.center.ingest.mqtt import MqttIngest

    collector_id = f"cam-{uuid.uuid4().hex[:8]}"
    store = Store.open(f"sqlite:///{tmp_path / 'center.db'}")
    upsert_collector(store, collector_id, SECRET)
    images = ImageStore(store, tmp_path / "images")
    ingest = MqttIngest(
        mqtt_url, store, client_id=f"center-{collector_id}", images=images, dispatch_commands=False
    )
    ingest.start()
    try:
        yield collector_id, store
    finally:
        ingest.stop()
        ingest.forget_session()
        store.close()
        forget_session(f"carbonflow-collector-{collector_id}")


def test_images_over_mqtt_are_acknowledged_after_the_commit_and_bad_ones_refused(
    tmp_path,
    mqtt_url,  # noqa: F811
    mqtt_image_center,
):
    collector_id, _ = mqtt_image_center
    config = config_from_dict(
        {"id": collector_id, "secret": SECRET, "center": {"url": mqtt_url, "ack_timeout_s": 10}},
        base_dir=tmp_path,
    )

    sender = MqttTransport(config)  # images share the collector's one MQTT session
    data = camera().snapshot()
    queued = QueuedImage(1, "CAM-9", "2025-06-01T16:00:00.000Z", "image/png", data, 0)

    async def run():
        await sender.start()
        try:
            first = await sender.send_image(queued)
            again = await sender.send_image(queued)
            junk = await sender.send_image(
                QueuedImage(2, "CAM-9", "2025-06-01T16:00:01.000Z", "image/png", b"GIF89a", 0)
            )
            return first, again, junk
        finally:
            await sender.stop()

    first, again, junk = asyncio.run(run())
    assert (first.outcome, again.outcome) == ("acked", "acked")
    assert junk.outcome == "rejected" and "PNG" in junk.error
    stored = list(Path(tmp_path / "images").rglob("*.png"))
    assert [p.name for p in stored] == [f"{sha256_hex(data)}.png"]


def test_a_collector_sends_readings_status_and_images_over_one_mqtt_connection(
    tmp_path,
    mqtt_url,  # noqa: F811
    mqtt_image_center,
    monkeypatch,
):
    import aiomqtt

    opened: list[str | None] = []

    class CountedClient(aiomqtt.Client):
        def __init__(self, *args, **kwargs) -> None:
            opened.append(kwargs.get("identifier"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(aiomqtt, "Client", CountedClient)
    collector_id, store = mqtt_image_center
    register_devices(
        store,
        [{"id": "CAM-1", "kind": "camera", "protocol": "camera-http", "endpoint": {"host": "x", "port": 1}}],
        collector_id=collector_id,
    )
    cam = camera()

    async def run():
        async with cam:
            config = config_from_dict(
                {
                    "id": collector_id,
                    "secret": SECRET,
                    "center": {"url": mqtt_url, "ack_timeout_s": 10},
                    "outbox": {"path": str(tmp_path / "outbox.sqlite"), "batch_max_age_s": 0.1},
                    "images": {"period_s": 3600},
                    "cameras": [{"id": "CAM-1", "endpoint": f"127.0.0.1:{cam.port}"}],
                },
                base_dir=tmp_path,
            )
            collector = Collector(config, clock=cam.clock.now_fn)
            await collector.start()
            try:
                for _ in range(600):  # the camera's status travels in a batch, its snapshot as an image
                    if collector.delivered and collector.cameras.stats()["delivered"]:
                        break
                    await asyncio.sleep(0.05)
                sent_images = collector.cameras.stats()["delivered"]
                return collector.delivered, sent_images, collector.transport.connected
            finally:
                await collector.stop()

    delivered, images_delivered, connected = asyncio.run(run())
    assert delivered >= 1 and images_delivered == 1 and connected
    assert opened == [f"carbonflow-collector-{collector_id}"]  # one connection for everything
