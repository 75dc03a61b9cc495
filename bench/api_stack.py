"""CPU of the center's HTTP stack per request (uvicorn + FastAPI + the app's middlewares and guard).

A center process (``create_app`` over a SQLite store, uvicorn with uvloop and httptools, as
``bench/cascade.py`` serves) whose cascade node is a stand-in that only parses the body — so what is
measured is the stack around the route, not the cascade's own work.  One client sends keep-alive
requests over a plain socket: ``POST /api/v1/cascade/messages`` (a peer's message, ~3 KB of JSON), and
``GET /api/v1/cascade`` with a bearer token (a user route: the guard looks the user up).  The server's
CPU (user + system, all its threads, from /proc) is read before and after each batch.

``--compare DIR`` runs a second server with the carbonflow package found in DIR (e.g. the tree before
a change) and alternates batches between the two; the figures are given side by side with the ratio.

    .venv/bin/python bench/api_stack.py [--requests 3000] [--batch 250] [--compare DIR]
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
            stdout=subprocess.PIPE,
            text=True,
        )
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"{label} server did not start")
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()
        self.cpu: dict[str, list[float]] = {"post": [], "get": []}

    def batch(self, kind: str, count: int, start: int) -> None:
        requests = [request_bytes(kind, start + i) for i in range(count)]
        before = cpu_s(self.proc.pid)
        for data in requests:
            status = exchange(self.sock, data, self.buffer)
            if status != 200:
                raise SystemExit(f"{self.label}: {kind} answered {status}")
        self.cpu[kind].append((cpu_s(self.proc.pid) - before) / count)

    def stop(self) -> None:
        self.sock.close()
        self.proc.terminate()
        self.proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000, help="per kind and server")
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--compare", type=Path, help="a tree with another carbonflow package")
    args = parser.parse_args()
    here = str(Path(__file__).resolve().parents[1])
    print("load before:", " ".join(os.getloadavg().__repr__().strip("()").split(", ")))
    with tempfile.TemporaryDirectory() as workdir:
        servers = [Server("this", here, 18731, workdir)]
        if args.compare:
            servers.append(Server("old", str(args.compare.resolve()), 18732, workdir))
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
            line = ", ".join(f"{label} {ms:.3f} ms" for label, ms in figures.items())
            if "old" in figures:
                line += f" (ratio {figures['this'] / figures['old']:.2f})"
            print(f"server CPU per request, {kind}: {line}")
        for server in servers:
            server.stop()
    print("load after:", " ".join(os.getloadavg().__repr__().strip("()").split(", ")))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        main()
