"""The Cameras page in real headless Chromium: camera list, latest image, playback of stored images.

A real uvicorn center serves a store holding one plant camera's snapshots (rendered by the simulated
camera at successive device times); Chromium decodes them (an independent PNG decoder).  Skips without
Playwright/Chromium, except under ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from test_web_ui import CHROMIUM, DOCS_SCREENSHOTS, _require_browser

from carbonflow.center.api import CenterSettings, create_app
from carbonflow.center.store import ImageStore, Store, create_user, register_devices, upsert_collector
from carbonflow.devices.base import DeviceClock, StaticSource
from carbonflow.devices.camera import CameraView, SiteCamera
from carbonflow.messages.images import sha256_hex

T0 = datetime(2025, 6, 1, 16, 0, tzinfo=UTC)  # 2025-06-02 00:00 in Asia/Shanghai
FRAMES = 12


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import uvicorn

    folder = tmp_path_factory.mktemp("cameras")
    url = f"sqlite:///{folder / 'center.db'}"
    store = Store.open(url)
    upsert_collector(store, "C1", "secret-secret")
    register_devices(
        store,
        [{"id": "CAM-P01", "kind": "camera", "protocol": "camera-http", "bus": None}],
        collector_id="C1",
    )
    create_user(store, "operator", "demo-pass", "operator")
    images = ImageStore(store, folder / "images")
    moment = [T0]
    camera = SiteCamera(
        "CAM-P01",
        [CameraView("G1-1", "p", "e")],
        StaticSource({"p": lambda t: 300 + (t - T0).total_seconds() / 60, "e": 1000.0}),
        title="Donggang power station",
        clock=DeviceClock(now_fn=lambda: moment[0]),
    )
    for k in range(FRAMES):
        moment[0] = T0 + timedelta(minutes=5 * k)
        data = camera.snapshot()
        images.save("CAM-P01", moment[0], data, "image/png", sha256_hex(data))
    app = create_app(CenterSettings(database_url=url, image_dir=str(folder / "images")), store=store)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    while not uv.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(10)
    store.close()


def test_the_operator_watches_the_latest_image_and_plays_back_a_period(server, tmp_path):
    sync_playwright = _require_browser()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1440, "height": 900}, bypass_csp=True)  # see test_web_ui
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(server + "/#cameras")
        page.wait_for_selector("#login-user")
        assert not page.is_visible("#nav") and not page.is_visible("#logout")  # no UI before login
        assert page.request.get(server + "/static/favicon.svg").ok
        page.fill("#login-user", "operator")
        page.fill("#login-password", "demo-pass")
        page.click("#login-submit")
        page.wait_for_function("document.body.dataset.ready === 'cameras'")
        page.click("#lang")  # English labels
        page.wait_for_function("document.body.dataset.ready === 'cameras'")
        assert "CAM-P01" in page.inner_text("#cam-list") and "online" not in page.inner_text("#cam-list")
        assert page.inner_text("#cam-id") == "CAM-P01"

        # the latest image, decoded by the browser
        page.wait_for_function(
            "document.getElementById('cam-image').complete && "
            "document.getElementById('cam-image').naturalWidth > 0"
        )
        assert page.evaluate("document.getElementById('cam-image').naturalWidth") == 640
        last = (T0 + timedelta(minutes=5 * (FRAMES - 1))).isoformat().replace("+00:00", "Z")
        assert page.get_attribute("#cam-image", "data-ts") == last
        assert "00:55" in page.inner_text("#cam-ts")  # local time (Asia/Shanghai) of the latest image
        page.screenshot(path=str(tmp_path / "cameras-latest.png"))

        # playback: the default period is the hour up to the latest image
        page.click("#cam-load")
        page.wait_for_function("window.cf.cam.frames.length > 0")
        frames = page.evaluate("window.cf.cam.frames.length")
        assert frames == FRAMES  # 00:00 .. 00:55 local, every 5 min
        assert page.inner_text("#cam-frame") == f"1 / {frames}"
        first = page.get_attribute("#cam-image", "data-ts")
        assert first == T0.isoformat().replace("+00:00", "Z")

        # the slider scrubs to a frame
        page.eval_on_selector("#cam-slider", "el => { el.value = 5; el.dispatchEvent(new Event('input')); }")
        assert page.inner_text("#cam-frame") == f"6 / {frames}"

        # play at the fastest speed to the end, where playback pauses by itself
        page.select_option("#cam-speed", "25")
        page.click("#cam-play")
        assert page.inner_text("#cam-play") == "Pause"
        page.wait_for_function(f"window.cf.cam.index === {frames - 1} && !window.cf.cam.timer")
        assert page.inner_text("#cam-play") == "Play"
        assert page.get_attribute("#cam-image", "data-ts") == last
        page.wait_for_function("document.getElementById('cam-image').complete")
        assert page.evaluate("document.getElementById('cam-image').naturalWidth") == 640
        page.screenshot(path=str(tmp_path / "cameras.png"))
        if os.environ.get("CARBONFLOW_SCREENSHOTS") == "1":
            DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(tmp_path / "cameras.png", DOCS_SCREENSHOTS / "cameras.png")

        # leaving the page ends the playback: no image fetched for a page that is not shown
        fetched: list[str] = []
        page.on("request", lambda request: "/cameras/" in request.url and fetched.append(request.url))
        page.select_option("#cam-speed", "1")
        page.click("#cam-play")
        page.wait_for_function("window.cf.cam.timer !== null")
        page.click('#nav button[data-page="overview"]')
        page.wait_for_function("document.body.dataset.ready === 'overview'")
        assert page.evaluate("window.cf.cam.timer") is None
        left = len(fetched)
        page.wait_for_timeout(2500)
        assert len(fetched) == left, fetched[left:]
        page.click('#nav button[data-page="cameras"]')
        page.wait_for_function("document.body.dataset.ready === 'cameras'")

        # a period without images says so
        page.fill("#cam-start", "2025-05-01T00:00")
        page.fill("#cam-end", "2025-05-01T06:00")
        page.click("#cam-load")
        page.wait_for_function("document.getElementById('cam-error').textContent.length > 0")
        assert "no images" in page.inner_text("#cam-error")
        assert errors == []
        browser.close()
