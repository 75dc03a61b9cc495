"""``carbonflow demo --tls``: certificates made in the demo directory, the center on HTTPS, the
collector delivering over HTTPS trusting the demo's CA — in the cascade, every center of the
cascade on HTTPS, exchanging over it; with ``--mqtt mqtts://``, through the shipped TLS-only broker
(deploy/mosquitto) with the demo's certificates.  Two metered intervals each, fast."""

from __future__ import annotations

import asyncio
import stat
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cascade_world import free_port
from test_mqtt_tls import running_broker

from carbonflow.delivery.certs import ensure_certs
from carbonflow.delivery.tls import client_context
from carbonflow.demo import COLLECTOR_ID, DemoOptions, run_demo

INTERVALS = 2


def run_until_metered(options: DemoOptions, lines: list[str], probe):
    """Run the demo; once the first interval is metered, call ``probe(url)`` while it still runs."""
    seen: dict = {}

    async def run():
        task = asyncio.create_task(run_demo(options, say=lines.append))
        while not any(" generation " in line for line in lines) and not task.done():
            await asyncio.sleep(0.1)
        if not task.done():
            seen["probe"] = await probe(f"https://127.0.0.1:{options.port}")
        return await task

    return asyncio.run(run()), seen.get("probe")


# the cascade only: the single center on HTTPS runs in the mqtts test below (a demo run is CI's dearest)
@pytest.mark.parametrize("cascade", [True], ids=["cascade"])
def test_demo_tls_serves_https_and_the_collector_delivers_over_it(tmp_path, cascade):
    directory = tmp_path / "demo"
    options = DemoOptions(
        directory=directory, port=free_port(), speed=20.0, hours=1.0, max_intervals=INTERVALS, password="pw",
        tls=True, cascade=cascade,
    )  # fmt: skip
    ca = directory / "tls" / "ca.pem"

    async def probe(url: str):
        async with httpx.AsyncClient(base_url=url, verify=client_context(ca), timeout=30) as client:
            login = await client.post("/api/v1/login", json={"name": "admin", "password": "pw"})
            headers = {"Authorization": f"Bearer {login.json()['token']}"}
            collectors = await client.get("/api/v1/collectors", headers=headers)
            overview = await client.get("/api/v1/overview", headers=headers)
            wall = datetime.now(UTC)
        with pytest.raises(httpx.ConnectError):  # without the demo's CA the center is not trusted
            async with httpx.AsyncClient(base_url=url) as untrusting:
                await untrusting.get("/healthz")
        return login, collectors, (overview.json(), wall)

    lines: list[str] = []
    report, (login, collectors, (overview, wall)) = run_until_metered(options, lines, probe)
    # the overview's "now" is the demo's simulated clock, 20x faster than the wall clock (at least two
    # simulated intervals = 6 real seconds have passed since it began): the age of the latest interval
    # is measured on it — by the wall clock that interval would lie in the future
    now = datetime.fromisoformat(overview["now_ts"])
    assert now - wall > timedelta(seconds=options.interval_s) and overview["age_s"] >= 0, overview
    assert report.url.startswith("https://127.0.0.1:"), report.url
    assert any(f"center: https://127.0.0.1:{options.port}" in line for line in lines), lines
    assert report.intervals_metered == INTERVALS, lines  # readings came in over HTTPS
    assert "Secure" in login.headers["set-cookie"]
    assert collectors.status_code == 200, collectors.text
    assert stat.S_IMODE((directory / "tls" / "ca.key").stat().st_mode) == 0o600
    assert (directory / "tls" / "collectors" / "demo-collector.pem").exists()
    if cascade:
        assert report.cascade_checks and all(check.ok for check in report.cascade_checks), lines
        assert any(line.lstrip().startswith("county") and "https://" in line for line in lines), lines


def test_demo_tls_over_mqtts_through_the_shipped_broker(tmp_path):
    directory = tmp_path / "demo"
    # the broker needs its certificates before the demo starts; the demo keeps them (they name its host)
    issued = ensure_certs(directory / "tls", ["127.0.0.1", "localhost"], [COLLECTOR_ID])
    ca_before = issued.ca_file.read_bytes()
    with running_broker(directory / "tls") as port:
        options = DemoOptions(
            directory=directory, port=free_port(), speed=20.0, hours=1.0, max_intervals=INTERVALS,
            password="pw", tls=True, mqtt_url=f"mqtts://127.0.0.1:{port}",
        )  # fmt: skip
        lines: list[str] = []
        report = asyncio.run(run_demo(options, say=lines.append))
        broker_log = (directory / "tls" / "mosquitto.log").read_text()
    assert issued.ca_file.read_bytes() == ca_before  # kept, not reissued
    assert report.url.startswith("https://127.0.0.1:"), report.url  # the single center on HTTPS too
    assert report.intervals_metered == INTERVALS, lines  # readings came through the broker over TLS
    assert "u'demo-collector'" in broker_log and "u'carbonflow-center'" in broker_log  # CN as user name
    assert "Denied PUBLISH" not in broker_log  # the ACL lets both do all they need
