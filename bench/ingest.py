"""Benchmark: sustained ingest into the center's store, per backend and transport, in one run.

    .venv/bin/python bench/ingest.py                      # SQLite + PostgreSQL × direct, HTTP, MQTT
    .venv/bin/python bench/ingest.py --seconds 5 --backends sqlite --transports direct,http

What is measured: a collector-like sender builds signed C4 batches of ``--batch`` readings (one per
point, all stamped with the batch's creation time) and sends them as fast as the center acknowledges:
``direct`` = ``ingest_batch`` in-process (the store's own ceiling, the baseline), ``http`` = POST
``/api/v1/ingest`` to the app served by ``CenterServer`` (uvicorn, as ``carbonflow center serve`` serves
it) in a separate process (``--senders`` concurrent senders), ``mqtt`` = QoS 1 publish to Mosquitto with
the ``MqttIngest`` subscriber in a separate process (``--window`` batches in flight; its start-up
objects frozen out of the cyclic GC as ``CenterServer`` does).  Throughput = readings acknowledged /
wall time.  Latency of a reading = acknowledgement time (the batch is committed, hence queryable) − the
moment the sender handed its batch to the transport (``ingest_batch`` call, HTTP POST, MQTT publish),
i.e. collector send → queryable, p50/p99 over batches (all batches have the same size, so these are the
per-reading percentiles).  Waiting for a free HTTP sender or MQTT window slot is not part of it: the
sender is the collector's outbox loop.

``--prebuild N``: every sender builds its N batches (signed, serialised) before the clock starts and the
case ends when they are sent or ``--seconds`` are up.  Without it (the default, as in the figures before
2026-12-07) the senders build each batch while sending — on this 2-core machine the load generator's own
pydantic models, HMAC and JSON then take CPU from the center it measures; a real collector is another
machine.  ``docs/performance.md`` names which of the two a figure is.

Services: PostgreSQL at ``--pg`` (a fresh database is created and dropped), Mosquitto at ``--mqtt``.
Targets: issue 6 ≥ 10,000 readings/s into PostgreSQL, p99 < 2 s; issue 17 §2 (COPY ingest)
≥ 50,000 readings/s over HTTP and over MQTT, p99 send → queryable < 1 s.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import count
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import paho.mqtt.client as mqtt
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from carbonflow.center.store import Store, count_readings, ingest_batch, register_devices, upsert_collector
from carbonflow.messages.c4 import Batch, Reading

SECRET = "bench-secret"
COLLECTOR = "BENCH"


def seed(url: str, n_points: int) -> None:
    store = Store.open(url)
    upsert_collector(store, COLLECTOR, SECRET)
    points = [
        {"id": f"M1/{k}", "element_kind": "load", "element_id": f"U{k}", "quantity": "p_mw"}
        for k in range(n_points)
    ]
    register_devices(store, [{"id": "M1", "protocol": "dlt645", "points": points}], COLLECTOR)
    store.close()


def make_batch(n: int, seq: int) -> Batch:
    now = datetime.now(UTC)
    readings = [Reading(point=f"M1/{k}", ts=now, value=f"{1000 + k}.{seq % 100:02d}") for k in range(n)]
    batch = Batch(
        collector_id=COLLECTOR, batch_id=uuid.uuid4().hex, seq=seq, created_at=now, readings=readings
    )
    return batch.signed(SECRET.encode())


def batches(args, seq_of) -> Iterator[Batch]:
    """The batches one sender sends, ``seq_of(k)`` the k-th one's seq: pre-built (``--prebuild``, then
    at most that many) or built one by one as they are asked for."""
    if args.prebuild:
        return iter([make_batch(args.batch, seq_of(k)) for k in range(1, args.prebuild + 1)])
    return (make_batch(args.batch, seq_of(k)) for k in count(1))


def bodies(args, seq_of) -> Iterator[tuple[str, str]]:
    """``(batch_id, JSON body)`` of the batches one sender sends, pre-built like ``batches``."""
    if args.prebuild:
        return iter([(b.batch_id, b.model_dump_json()) for b in batches(args, seq_of)])
    return ((b.batch_id, b.model_dump_json()) for b in batches(args, seq_of))


def summarise(name: str, readings: int, elapsed: float, latencies: list[float]) -> dict:
    latencies = sorted(latencies)
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
    return {
        "case": name,
        "readings": readings,
        "seconds": round(elapsed, 2),
        "readings_per_s": round(readings / elapsed),
        "p50_s": round(statistics.median(latencies), 3),
        "p99_s": round(p99, 3),
        "batches": len(latencies),
    }


# --- transports -----------------------------------------------------------------------------------------


def run_direct(url: str, args) -> tuple[int, float, list[float]]:
    store = Store.open(url, migrate=False)
    total, latencies = 0, []
    source = batches(args, lambda k: k)
    start = time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        batch = next(source, None)
        if batch is None:
            break
        sent = time.time()
        total += ingest_batch(store, batch).accepted
        latencies.append(time.time() - sent)
    elapsed = time.perf_counter() - start
    store.close()
    return total, elapsed, latencies


def _serve_http(url: str, port: int) -> None:
    import logging

    import uvicorn

    from carbonflow.center.api import CenterSettings, create_app
    from carbonflow.center.api.serving import CenterServer

    logging.disable(logging.WARNING)
    app = create_app(CenterSettings(database_url=url))  # served as `carbonflow center serve` serves it
    CenterServer(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error")).run()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_http(url: str, args) -> tuple[int, float, list[float]]:
    port = _free_port()
    server = multiprocessing.get_context("spawn").Process(target=_serve_http, args=(url, port), daemon=True)
    server.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            if httpx.get(f"{base}/healthz").status_code == 200:
                break
        except httpx.HTTPError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)
    totals, latencies, lock = [0], [], threading.Lock()
    sources = [bodies(args, lambda k, first=first: first + k * args.senders) for first in range(args.senders)]
    start = time.perf_counter()

    def sender(offset: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            while time.perf_counter() - start < args.seconds:
                item = next(sources[offset], None)
                if item is None:
                    break
                body = item[1]
                sent = time.time()
                response = client.post("/api/v1/ingest", content=body)
                response.raise_for_status()
                with lock:
                    totals[0] += response.json()["accepted"]
                    latencies.append(time.time() - sent)

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(args.senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    server.terminate()
    server.join()
    return totals[0], elapsed, latencies


def _serve_mqtt(url: str, broker: str, prefix: str, ready) -> None:
    from carbonflow.center.api.serving import freeze_startup_objects
    from carbonflow.center.ingest import MqttIngest

    store = Store.open(url, migrate=False)
    center = MqttIngest(
        broker, store, client_id=f"{prefix}-center", topic_prefix=prefix, dispatch_commands=False
    )
    center.start()
    freeze_startup_objects()  # as CenterServer does once the app (and its MQTT subscriber) started
    ready.set()
    while True:
        time.sleep(1)


def run_mqtt(url: str, args) -> tuple[int, float, list[float]]:
    from carbonflow.center.ingest.mqtt import parse_broker_url

    prefix = f"cfbench-{uuid.uuid4().hex[:8]}"
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    server = context.Process(target=_serve_mqtt, args=(url, args.mqtt, prefix, ready), daemon=True)
    server.start()
    if not ready.wait(30):
        raise RuntimeError("MQTT center did not start")
    address = parse_broker_url(args.mqtt)
    sent_at: dict[str, float] = {}
    latencies, totals = [], [0]
    in_flight = threading.Semaphore(args.window)
    done = threading.Event()

    def on_ack(_client, _userdata, message) -> None:
        ack = json.loads(message.payload)
        latencies.append(time.time() - sent_at.pop(ack["batch_id"]))
        totals[0] += ack["accepted"]
        in_flight.release()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{prefix}-collector")
    client.on_message = on_ack
    subscribed = threading.Event()
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect(address.host, address.port)
    client.subscribe(f"{prefix}/{COLLECTOR}/acks", qos=1)
    client.loop_start()
    subscribed.wait(10)
    source = bodies(args, lambda k: k)
    start = time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        item = next(source, None)
        if item is None:
            break
        in_flight.acquire()
        batch_id, body = item
        sent_at[batch_id] = time.time()
        client.publish(f"{prefix}/{COLLECTOR}/readings", body, qos=1)
    for _ in range(args.window):  # wait for the last acks
        in_flight.acquire(timeout=60)
    elapsed = time.perf_counter() - start
    done.set()
    client.disconnect()
    client.loop_stop()
    server.terminate()
    server.join()
    from carbonflow.center.ingest import MqttIngest

    MqttIngest(args.mqtt, None, client_id=f"{prefix}-center").forget_session()  # type: ignore[arg-type]
    return totals[0], elapsed, latencies


# --- backends -------------------------------------------------------------------------------------------


class Backend:
    def __init__(self, kind: str, args) -> None:
        self.kind, self.args = kind, args
        self.tmp = tempfile.TemporaryDirectory() if kind == "sqlite" else None
        self.name = f"cf_bench_{uuid.uuid4().hex[:8]}"

    def fresh_url(self, tag: str) -> str:
        if self.kind == "sqlite":
            return f"sqlite:///{self.tmp.name}/{tag}.db"
        admin = create_engine(self.args.pg, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{self.name}_{tag}"'))
        admin.dispose()
        return make_url(self.args.pg).set(database=f"{self.name}_{tag}").render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        if self.kind == "postgresql":
            admin = create_engine(self.args.pg, isolation_level="AUTOCOMMIT")
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
            admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--mqtt", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--transports", default="direct,http,mqtt")
    parser.add_argument("--seconds", type=float, default=15.0, help="sending time per case")
    parser.add_argument("--batch", type=int, default=2000, help="readings per batch")
    parser.add_argument("--senders", type=int, default=2, help="concurrent HTTP senders")
    parser.add_argument("--window", type=int, default=4, help="MQTT batches in flight")
    parser.add_argument(
        "--prebuild", type=int, default=0, help="batches per sender built before the clock (0: while sending)"
    )
    args = parser.parse_args()
    runners = {"direct": run_direct, "http": run_http, "mqtt": run_mqtt}
    results = []
    for kind in args.backends.split(","):
        backend = Backend(kind, args)
        for transport in args.transports.split(","):
            url = backend.fresh_url(transport)
            try:
                seed(url, args.batch)
                total, elapsed, latencies = runners[transport](url, args)
                store = Store.open(url, migrate=False)
                stored = count_readings(store)
                store.close()
                assert stored == total, f"{kind}/{transport}: acked {total} but {stored} stored"
                results.append(summarise(f"{kind}/{transport}", total, elapsed, latencies))
                print(json.dumps(results[-1]), flush=True)
            finally:
                backend.drop(url)
    print()
    print(f"{'case':<22}{'readings/s':>12}{'p50 s':>9}{'p99 s':>9}{'readings':>11}")
    for row in results:
        print(
            f"{row['case']:<22}{row['readings_per_s']:>12,}{row['p50_s']:>9.3f}{row['p99_s']:>9.3f}{row['readings']:>11,}"
        )


if __name__ == "__main__":
    main()
