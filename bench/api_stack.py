"""CPU of the center's HTTP stack per request (uvicorn + FastAPI + the app's middlewares and guard).

A center process (``create_app`` over a SQLite store, uvicorn with uvloop and httptools, as
``bench/cascade.py`` serves) whose cascade node is a stand-in that only parses the body — so what is
measured is the stack around the route, not the cascade's own work.  One client sends keep-alive
requests over a plain socket: ``POST /api/v1/cascade/messages`` (a peer's message, ~3 KB of JSON), and
``GET /api/v1/cascade`` with a bearer token (a user route: the guard looks the user up).  The server's
CPU (user + system, all its threads, from /proc) is read before and after each batch.

``--asgi`` calls the app in the child process instead (no socket, no uvicorn), timing each batch by
the child's own ``process_time`` — exact where /proc's CPU ticks (10 ms) make short batches noisy.

``--compare DIR`` runs a second server with the carbonflow package found in DIR (e.g. the tree before
a change) and alternates batches between the two; the figures are given side by side with the ratio.

    .venv/bin/python bench/api_stack.py [--requests 3000] [--batch 250] [--asgi] [--compare DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOKEN = "api-stack-bench-token"
TICKS = os.sysconf("SC_CLK_TCK")


def serve(code: str, port: int, db: str) -> None:
    """Child process: one center app on ``port``; prints ``ready`` once it listens."""
    sys.path.insert(0, code)
    import uvicorn
    import uvloop

    from carbonflow.center.api.app import create_app
    from carbonflow.center.api.settings import CenterSettings
    from carbonflow.center.store import Store

    class Node:  # the route's collaborator, doing only what any receive does first: parse the body
        id = "bench"

        def receive(self, body: bytes) -> dict:
            return {"status": "stored", "message_id": json.loads(body)["message_id"]}

        def status(self) -> dict:
            return {"center": self.id}

    class Service:
        node = Node()

    store = Store.open(f"sqlite:///{db}")
    settings = CenterSettings(database_url="sqlite://", api_tokens={TOKEN: "bench"})
    app = create_app(settings, store=store)
    app.state.cascade = Service()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        http="httptools",
        loop="uvloop",
    )
    server = uvicorn.Server(config)

    async def direct() -> None:  # --asgi: the app called in this process, its CPU timed exactly
        await asyncio.sleep(0)
        print("ready", flush=True)
        for line in sys.stdin:
            kind, count, start = line.split()
            began = time.process_time()
            for n in range(int(start), int(start) + int(count)):
                await call_app(app, kind, n)
            print((time.process_time() - began) / int(count), flush=True)

    if port == 0:
        uvloop.run(direct())
        return

    async def main() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.02)
        print("ready", flush=True)
        await task

    uvloop.run(main())


def message_body(n: int) -> bytes:
    """A body shaped like a C5 envelope carrying one region's boundary values (~3 KB, nested 4 deep)."""
    rows = [
        {"bus": f"ah-wh-fc/bus-{i}", "p_mw": f"{i * 1.25:.3f}", "ci": [f"{i * 0.4:.4f}", "0"]}
        for i in range(30)
    ]
    envelope = {
        "message_id": f"{n:032x}",
        "sender": "ah-wh-fc",
        "recipient": "ah-wh",
        "ts": "2026-12-05T00:35:00+00:00",
        "payload": {"kind": "region_data", "rows": rows},
        "signature": "x" * 88,
    }
    return json.dumps(envelope).encode()


async def call_app(app, kind: str, n: int) -> None:
    """One request straight into the ASGI app (no socket, no uvicorn), as uvicorn would hand it over."""
    head, _, body = request_bytes(kind, n).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ")
    headers = [(k.lower().encode(), v.strip().encode()) for k, _, v in (h.partition(":") for h in lines[1:])]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    given = False
    status = 0

    async def receive() -> dict:
        nonlocal given
        if given:
            await asyncio.sleep(3600)  # as a client that stays connected
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    if status != 200:
        raise SystemExit(f"{kind} answered {status}")


def request_bytes(kind: str, n: int) -> bytes:
    if kind == "post":
        body = message_body(n)
        head = (
            f"POST /api/v1/cascade/messages HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body
    return (
        f"GET /api/v1/cascade HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {TOKEN}\r\n\r\n".encode()
    )


def exchange(sock: socket.socket, data: bytes, buffer: bytearray) -> int:
    sock.sendall(data)
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            head = bytes(buffer[:end]).decode("latin-1").lower()
            length = int(head.split("content-length:")[1].split("\r\n")[0])
            if len(buffer) >= end + 4 + length:
                status = int(head.split(" ")[1])
                del buffer[: end + 4 + length]
                return status
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buffer.extend(chunk)


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Server:
    def __init__(self, label: str, code: str, port: int, workdir: str) -> None:
        self.label, self.port = label, port
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", code, str(port), f"{workdir}/{label}.db"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"{label} server did not start")
        self.cpu: dict[str, list[float]] = {"post": [], "get": []}
        if port == 0:
            return
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()

    def batch(self, kind: str, count: int, start: int) -> None:
        if self.port == 0:  # --asgi: the child times itself
            self.proc.stdin.write(f"{kind} {count} {start}\n")
            self.proc.stdin.flush()
            self.cpu[kind].append(float(self.proc.stdout.readline()))
            return
        requests = [request_bytes(kind, start + i) for i in range(count)]
        before = cpu_s(self.proc.pid)
        for data in requests:
            status = exchange(self.sock, data, self.buffer)
            if status != 200:
                raise SystemExit(f"{self.label}: {kind} answered {status}")
        self.cpu[kind].append((cpu_s(self.proc.pid) - before) / count)

    def stop(self) -> None:
        if self.port:
            self.sock.close()
        self.proc.terminate()
        self.proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000, help="per kind and server")
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--compare", type=Path, help="a tree with another carbonflow package")
    parser.add_argument("--asgi", action="store_true", help="call the app in-process (no uvicorn, exact CPU)")
    args = parser.parse_args()
    here = str(Path(__file__).resolve().parents[1])
    print("load before:", " ".join(f"{load:.2f}" for load in os.getloadavg()))
    with tempfile.TemporaryDirectory() as workdir:
        ports = (0, 0) if args.asgi else (18731, 18732)
        servers = [Server("this", here, ports[0], workdir)]
        if args.compare:
            servers.append(Server("old", str(args.compare.resolve()), ports[1], workdir))
        for server in servers:  # warm-up: imports, first queries, caches
            server.batch("post", 100, 0)
            server.batch("get", 100, 0)
            server.cpu = {"post": [], "get": []}
        done = 0
        while done < args.requests:
            for kind in ("post", "get"):
                for server in servers:
                    server.batch(kind, args.batch, 1000 + done)
            done += args.batch
        for kind in ("post", "get"):
            figures = {s.label: statistics.median(s.cpu[kind]) * 1000 for s in servers}
            low = {s.label: statistics.quantiles(s.cpu[kind], n=4)[0] * 1000 for s in servers}
            line = ", ".join(f"{label} {ms:.3f} ms (p25 {low[label]:.3f})" for label, ms in figures.items())
            if "old" in figures:
                line += f" (ratio {figures['this'] / figures['old']:.2f})"
            print(f"server CPU per request, {kind}: {line}")
        for server in servers:
            server.stop()
    print("load after:", " ".join(f"{load:.2f}" for load in os.getloadavg()))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        main()
