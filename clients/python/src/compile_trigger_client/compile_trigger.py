"""A drop-in for the original `compile_trigger` module (`CompileTriggerConfig`, `BankCompileState`, `CompileQueue`)
backed by the service: a framework that used it changes one import. The service counts, decides and compiles (its
engine is the webhook it calls); this module forwards retains and reads the service's state back.

    from compile_trigger_client.compile_trigger import CompileQueue, CompileTriggerConfig

`CompileQueue(engine, config)` takes the original's arguments; `engine` is not called (the service calls its
webhook), `max_queue_size` is the service's `COMPILE_MAX_QUEUE_SIZE`. The service's URL and API token come from
`base_url=` / `token=` or `client=`, else the environment (`COMPILE_TRIGGER_URL`, `COMPILE_TRIGGER_TOKEN`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .client import CompileTriggerClient
from .errors import BankNotFound, CompileTriggerError

_logger = logging.getLogger("compile_trigger_client.compile_trigger")

DEFAULT_URL = "http://127.0.0.1:8787"
# How often `drain` asks the service whether the banks are done: the API has no call that waits.
DRAIN_POLL_SECONDS = 0.05
# `pending_banks` and `state` first send what is buffered, for at most this long, so that they read this process's
# own retains.
READ_FLUSH_SECONDS = 2.0


@dataclass
class CompileTriggerConfig:
    """The original's thresholds. Given to `CompileQueue`, they become each notified bank's policy at the service."""

    size_threshold: int = 50
    staleness_days: float = 7.0
    staleness_min_memories: int = 10

    def as_policy(self) -> dict[str, Any]:
        return {
            "size_threshold": self.size_threshold,
            "staleness_days": self.staleness_days,
            "staleness_min_memories": self.staleness_min_memories,
        }


@dataclass
class BankCompileState:
    """A bank's counters as the original had them, read from the service (`forgets_since_last_compile` and `status`
    are the service's additions)."""

    bank_id: str
    memories_since_last_compile: int = 0
    last_compile_at: datetime | None = None
    forgets_since_last_compile: int = 0
    status: str = "idle"

    def should_trigger(self, config: CompileTriggerConfig) -> bool:
        """The original's rule, unchanged (the service applies its own, which also covers never-compiled banks)."""
        n = self.memories_since_last_compile
        if n >= config.size_threshold:
            return True
        if self.last_compile_at is not None and n >= config.staleness_min_memories:
            age_days = (datetime.now(timezone.utc) - self.last_compile_at).total_seconds() / 86400.0
            if age_days >= config.staleness_days:
                return True
        return False


class CompileQueue:
    """The original's interface over the service. `notify_retain` never blocks or raises; `start` / `stop` no longer
    gate compiles (the service runs them); `drain` waits until the banks this queue notified are compiled."""

    def __init__(
        self,
        engine: Any = None,
        config: CompileTriggerConfig | None = None,
        *,
        max_queue_size: int = 100,
        client: CompileTriggerClient | None = None,
        base_url: str | None = None,
        token: str | None = None,
    ) -> None:
        if engine is not None:
            _logger.info("CompileQueue: the engine is not called here; the service calls its compile webhook")
        self._config = config
        self._client = client or CompileTriggerClient(
            base_url or os.environ.get("COMPILE_TRIGGER_URL") or DEFAULT_URL,
            token if token is not None else os.environ.get("COMPILE_TRIGGER_TOKEN"),
        )
        self._seen: set[str] = set()
        self._policies: queue.Queue[str] = queue.Queue()
        self._policy_thread: threading.Thread | None = None
        self._started = False

    @property
    def client(self) -> CompileTriggerClient:
        return self._client

    def notify_retain(self, bank_id: str) -> None:
        """Counts one retain of `bank_id` at the service (buffered, sent in the background)."""
        if bank_id not in self._seen:
            self._seen.add(bank_id)
            if self._config is not None:
                self._queue_policy(bank_id)
        self._client.notify_retain(bank_id)

    def _queue_policy(self, bank_id: str) -> None:
        self._policies.put(bank_id)
        if self._policy_thread is None:
            self._policy_thread = threading.Thread(target=self._apply_policies, name="compile-trigger-policies",
                                                   daemon=True)
            self._policy_thread.start()

    def _apply_policies(self) -> None:
        """Sets the config as each new bank's policy (the service re-checks the bank at once)."""
        assert self._config is not None
        fields = self._config.as_policy()
        while True:
            bank_id = self._policies.get()
            try:
                self._client.set_policy(bank_id, **fields)
            except Exception as error:
                _logger.warning("CompileQueue: policy of bank %r not set: %s", bank_id, error)
            finally:
                self._policies.task_done()

    async def start(self) -> None:
        self._started = True

    async def stop(self, *, timeout: float = 5.0) -> None:
        """Delivers what is buffered (within `timeout`). A later `start` works as the first did."""
        if not self._started:
            return
        self._started = False
        if not await asyncio.get_running_loop().run_in_executor(None, self._client.flush, timeout):
            _logger.warning("CompileQueue: retains not all delivered within %.1fs", timeout)

    async def close(self, *, timeout: float = 5.0) -> None:
        """Delivers what is buffered and closes the client (not in the original: its queue held no connection)."""
        self._started = False
        await asyncio.get_running_loop().run_in_executor(None, self._client.close, timeout)

    async def drain(self, *, timeout: float = 5.0) -> None:
        """Waits until every bank this queue notified is neither pending nor compiling at the service (their
        compiles have finished); raises `TimeoutError` after `timeout`, like the original's `asyncio.wait_for`."""
        deadline = time.monotonic() + timeout
        await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(None, self._sent, timeout), timeout)
        while self._busy_banks():
            if time.monotonic() >= deadline:
                raise asyncio.TimeoutError(f"CompileQueue.drain: banks still pending after {timeout:.1f}s")
            await asyncio.sleep(DRAIN_POLL_SECONDS)

    def _sent(self, timeout: float) -> None:
        """Waits for the policies, then the retains, this queue handed over so far."""
        self._policies.join()
        self._client.flush(timeout)

    def _busy_banks(self) -> set[str]:
        return self._banks_with_status("pending") | self._banks_with_status("running")

    def _banks_with_status(self, status: str) -> set[str]:
        if not self._seen:
            return set()
        found: set[str] = set()
        cursor: str | None = None
        while True:
            page = self._client.list_banks(status=status, limit=1000, cursor=cursor)
            found.update(bank.bank_id for bank in page.banks if bank.bank_id in self._seen)
            cursor = page.next_cursor
            if cursor is None:
                return found

    @property
    def pending_banks(self) -> set[str]:
        """The banks this queue notified that wait for a compile at the service (one HTTP call per 1,000 pending
        banks, after sending what is buffered)."""
        self._client.flush(READ_FLUSH_SECONDS)
        try:
            return self._banks_with_status("pending")
        except CompileTriggerError as error:
            _logger.warning("CompileQueue.pending_banks: %s", error)
            return set()

    @property
    def state(self) -> dict[str, BankCompileState]:
        """The state of every bank this queue notified, from the service (one HTTP call per bank)."""
        self._client.flush(READ_FLUSH_SECONDS)
        states: dict[str, BankCompileState] = {}
        for bank_id in list(self._seen):
            try:
                bank = self._client.bank_state(bank_id)
            except BankNotFound:
                continue
            states[bank_id] = BankCompileState(
                bank_id=bank_id,
                memories_since_last_compile=bank.memories_since_last_compile,
                last_compile_at=bank.last_compile_at,
                forgets_since_last_compile=bank.forgets_since_last_compile,
                status=bank.status,
            )
        return states


__all__ = ["BankCompileState", "CompileQueue", "CompileTriggerConfig"]
