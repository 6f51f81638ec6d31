"""HTTP to the service over kept-alive `http.client` connections: a small pool shared by the calling threads, JSON in
and out, error answers turned into the typed exceptions of `errors`."""

from __future__ import annotations

import http.client
import json
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from .errors import CompileTriggerError, ServiceUnavailable, error_from_answer

# The service closes a connection idle for HTTP_KEEP_ALIVE_TIMEOUT (5 s by default): one idle longer than this is
# not reused, so that a request never races the server's close.
IDLE_REUSE_SECONDS = 4.0

# Failures of a reused connection that mean the server had closed it before reading the request.
STALE_CONNECTION_ERRORS = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class Transport:
    """Requests to one service. Thread-safe: each request takes a connection from the pool, or opens one."""

    def __init__(self, base_url: str, token: str | None, timeout: float, max_idle: int = 8) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http:// or https:// URL, got {base_url!r}")
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._timeout = timeout
        self._max_idle = max_idle
        self._idle: list[tuple[http.client.HTTPConnection, float]] = []
        self._lock = threading.Lock()
        self._headers = {"accept": "application/json"}
        if token is not None:
            self._headers["authorization"] = f"Bearer {token}"

    def _connect(self) -> tuple[http.client.HTTPConnection, bool]:
        """A connection, and whether it was used before."""
        now = time.monotonic()
        with self._lock:
            while self._idle:
                connection, since = self._idle.pop()
                if now - since < IDLE_REUSE_SECONDS:
                    return connection, True
                connection.close()
        cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=self._timeout), False

    def _release(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self._max_idle:
                self._idle.append((connection, time.monotonic()))
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection, _ in idle:
            connection.close()

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """`(status, decoded JSON or None)` of a 2xx answer; an error answer raises its `CompileTriggerError`."""
        payload = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = dict(self._headers)
        if payload is not None:
            headers["content-type"] = "application/json"
        for _ in range(2):
            connection, reused = self._connect()
            try:
                connection.request(method, self._prefix + path, body=payload, headers=headers)
                response = connection.getresponse()
                text = response.read()
            except STALE_CONNECTION_ERRORS as error:
                connection.close()
                if reused:
                    continue  # the server closed it while idle: the request was not read; once more on a new one
                raise ServiceUnavailable(f"{method} {path}: {error!r}") from error
            except (OSError, http.client.HTTPException) as error:
                connection.close()
                raise ServiceUnavailable(f"{method} {path}: {error!r}") from error
            if response.will_close:
                connection.close()
            else:
                self._release(connection)
            return self._answer(response.status, text)
        raise AssertionError("unreachable")

    @staticmethod
    def _answer(status: int, raw: bytes) -> tuple[int, Any]:
        text = raw.decode("utf-8", errors="replace")
        try:
            decoded = json.loads(text) if text.strip() else None
        except ValueError:
            decoded = None
        if 200 <= status < 300:
            return status, decoded
        raise error_from_answer(status, decoded, text)


__all__ = ["Transport", "CompileTriggerError"]
