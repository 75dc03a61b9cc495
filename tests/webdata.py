"""A center store filled from the simulator, for the API and browser tests (and a demo-like server).

``populate(url)`` upserts the 104-node reference grid's topology, registers its devices under one
collector, stores ``hours`` of 15-minute intervals (engine output + origin shares) from the simulator,
and creates the user ``operator`` / ``demo-pass``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from carbonflow.center.store import (
    Store,
    create_user,
    ingest_batch,
    interval_from_document,
    record_status,
    register_devices,
    save_interval,
    upsert_collector,
    upsert_topology,
)
from carbonflow.center.topology import topology_rows
from carbonflow.engine.document import origin_document
from carbonflow.engine.origin import origin_shares
from carbonflow.messages.c4 import Batch, DeviceStatus, Reading
from carbonflow.sim.device_map import build_device_map, grid_document
from carbonflow.sim.reference_grid import reference_grid
from carbonflow.sim.simulation import Simulation
from carbonflow.sim.timeseries import SimConfig

USER, PASSWORD = "operator", "demo-pass"
COLLECTOR = "C1"
START = datetime(2025, 6, 1, 16, 0, tzinfo=UTC)  # 2025-06-02 00:00 in Asia/Shanghai


def save_simulated(store: Store, net, start: datetime, hours: int) -> None:
    """``hours`` of 15-minute intervals of the simulator from ``start``, metered and stored."""
    simulation = Simulation(net, SimConfig(start=start, interval_s=900, count=hours * 4))
    for truth in simulation.intervals():
        result = truth.result()
        record = interval_from_document(
            truth.ts,
            int(truth.interval_s),
            truth.result_document(),
            origin=origin_document(result, origin_shares(result)),
        )
        save_interval(store, record)


def populate(url: str, *, hours: int = 6, start: datetime = START) -> tuple[Store, datetime]:
    net = reference_grid()
    store = Store.open(url)
    upsert_topology(store, topology_rows(grid_document(net)))
    upsert_collector(store, COLLECTOR, "secret")
    devices = build_device_map(net)["devices"]
    register_devices(store, devices, collector_id=COLLECTOR)
    save_simulated(store, net, start, hours)
    last = start + timedelta(hours=hours)
    statuses = [
        DeviceStatus(device=d["id"], online=k % 10 != 3, last_seen=last, clock_offset_s=0.02 * (k % 7))
        for k, d in enumerate(devices)
    ]
    record_status(store, COLLECTOR, statuses, received_at=last)
    first = devices[0]
    readings = [
        Reading(point=p["id"], ts=last - timedelta(minutes=m), value=f"{100 + m}.25", quality="good")
        for p in first["points"][:3]
        for m in (0, 15, 30)
    ]
    batch = Batch(collector_id=COLLECTOR, batch_id="batch-0001", seq=1, created_at=last, readings=readings)
    ingest_batch(store, batch, received_at=last)
    create_user(store, USER, PASSWORD, "operator")
    return store, last


@contextmanager
def served(app) -> Iterator[str]:
    """The app on a real uvicorn server (a thread, a free port): yields its base URL."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def served_center(folder, hours: int = 1, clock=None) -> Iterator[tuple[str, Store]]:
    """A center with ``hours`` of simulated data (its SQLite store in ``folder``) on a real server:
    yields (base URL, store) — the browser tests' usual center.  ``clock``: the center's "now" (a
    callable, as the demo's simulated clock; default the wall clock)."""
    from carbonflow.center.api import CenterSettings, create_app

    url = f"sqlite:///{folder / 'center.db'}"
    store, _last = populate(url, hours=hours)
    app = create_app(CenterSettings(database_url=url, maintenance_period_s=0), store=store)
    if clock is not None:
        app.state.clock = clock
    try:
        with served(app) as base:
            yield base, store
    finally:
        store.close()


def logged_in(browser, base: str, page_name: str, lang: str = "en", console: bool = False):
    """A new browser context in ``lang`` logged in on ``page_name``: (context, page, errors) — errors
    collects page errors (and, with ``console``, console errors but the 401 of the look before login).
    bypass_csp: Playwright's wait_for_function evaluates strings, which the center's CSP forbids."""
    context = browser.new_context(
        viewport={"width": 1440, "height": 900}, bypass_csp=True, accept_downloads=True
    )
    context.add_init_script(f"localStorage.setItem('cf-lang', '{lang}')")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    if console:
        page.on("console", lambda m: m.type == "error" and "401" not in m.text and errors.append(m.text))
    page.goto(f"{base}/#{page_name}")
    page.fill("#login-user", USER)
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_function(f"document.body.dataset.ready === '{page_name}'")
    return context, page, errors


# ink on a chart's canvas: pixels that are not white background (an empty chart has only its axes)
_INK = """(id) => { const canvas = document.querySelector(`#${id} canvas`);
  if (!canvas) return { ink: 0, colours: 0, share: 0, dom: document.getElementById(id)?.outerHTML };
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  const colours = new Set(); let ink = 0;
  for (let k = 0; k < data.length; k += 4) {
    const [r, g, b, a] = [data[k], data[k + 1], data[k + 2], data[k + 3]];
    if (a > 0 && !(r > 245 && g > 245 && b > 245)) { ink += 1; colours.add(`${r},${g},${b}`); }
  }
  return { ink, colours: colours.size, share: ink / (canvas.width * canvas.height) }; }"""
# the same chart without its data (axes, legend and title kept), drawn in a scratch twin of the same size
_EMPTY_TWIN = """(id) => { const source = window.cf.charts[id]; const dom = source.getDom();
  const twin = document.createElement('div'); twin.id = `${id}-empty-twin`;
  twin.style.cssText = `width:${dom.clientWidth}px;height:${dom.clientHeight}px;`
    + 'position:absolute;left:-9999px';
  document.body.append(twin);
  const option = source.getOption();
  option.series = option.series.map((s) => ({ ...s, data: [], links: [], edges: [] }));
  echarts.init(twin, null, { renderer: 'canvas' }).setOption(option); return twin.id; }"""


def chart_ink(page, chart_id: str) -> dict:
    """How much of a chart's canvas is drawn: {ink (pixels), colours, share of the canvas}."""
    return page.evaluate(_INK, chart_id)


def empty_twin_ink(page, chart_id: str) -> dict:
    """``chart_ink`` of the same chart with no data: what an empty chart looks like (the baseline)."""
    twin = page.evaluate(_EMPTY_TWIN, chart_id)
    page.wait_for_timeout(300)  # the twin's first frame
    result = page.evaluate(_INK, twin)
    page.evaluate(f"document.getElementById('{twin}').remove()")
    return result
