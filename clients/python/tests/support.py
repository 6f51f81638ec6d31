"""Real processes for the tests: the service as built (`node dist/bin.js` from the repository root, as the
TypeScript end-to-end tests run it) on a free loopback port, and a compile webhook receiver on `http.server`."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[3]

# The service's variables: cleared from the inherited environment so that each test sets exactly its own.
SERVICE_VARIABLES_PREFIXES = ("COMPILE_", "HTTP_", "API_TOKEN", "ACK_MODE", "DATABASE_URL", "DATA_DIR", "CLUSTER_",
                              "OTEL_", "LOG_", "HOST", "PORT")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Service:
    """`node dist/bin.js` with `env`, ready when started; `stop()` sends SIGTERM (SIGKILL after 10 s)."""

    def __init__(self, env: dict[str, str] | None = None, port: int | None = None) -> None:
        if not (ROOT / "dist" / "bin.js").exists():
            raise RuntimeError(f"{ROOT / 'dist' / 'bin.js'} is missing: run `npm run build` first")
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.data_dir = tempfile.mkdtemp(prefix="ect-py-")
        clean = {k: v for k, v in os.environ.items() if not k.startswith(SERVICE_VARIABLES_PREFIXES)}
        full = {**clean, "HOST": "127.0.0.1", "PORT": str(self.port), "DATA_DIR": self.data_dir, **(env or {})}
        self.log = tempfile.TemporaryFile()
        node = os.environ.get("COMPILE_TRIGGER_NODE", "node")
        self.process = subprocess.Popen([node, "dist/bin.js"], cwd=ROOT, env=full, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        self._wait_ready(60.0)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited with {self.process.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/readyz", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the service was not ready within {timeout} s:\n{self.output()}")
            time.sleep(0.05)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)


class Receiver:
    """A compile endpoint recording each call (headers and raw body); `answer(call)` gives `(status, body)`."""

    def __init__(self, answer: Callable[[dict[str, Any]], tuple[int, bytes]] | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.answer = answer or (lambda call: (200, json.dumps({"bankId": call["json"]["bankId"]}).encode()))
        self._arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                raw = self.rfile.read(int(self.headers.get("content-length", "0")))
                call = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "raw": raw,
                        "json": json.loads(raw), "at": time.time()}
                status, body = receiver.answer(call)
                call["status"] = status
                with receiver._arrived:
                    receiver.calls.append(call)
                    receiver._arrived.notify_all()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/compile"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 15.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self._arrived:
            while not predicate(self.calls):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no such webhook calls within {timeout} s; calls: {len(self.calls)}")
                self._arrived.wait(remaining)
            return list(self.calls)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def eventually(read: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 15.0) -> Any:
    """Polls `read` until `done` holds; the last value read."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s; last value: {value!r}")
        time.sleep(0.025)
