"""`AsyncCompileTriggerClient`: the same calls for asyncio code. Notifications stay synchronous (they only buffer);
HTTP calls run in the default executor, so the event loop never waits on a socket."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from .client import CompileTriggerClient
from .models import BankPage, BankState, Budget, NotifyStats, PolicyAnswer, QueueStats, RecentCompiles

T = TypeVar("T")


class AsyncCompileTriggerClient:
    """Takes the same arguments as `CompileTriggerClient` (or wraps one given as `client=`)."""

    def __init__(self, *args: Any, client: CompileTriggerClient | None = None, **kwargs: Any) -> None:
        self.sync = client if client is not None else CompileTriggerClient(*args, **kwargs)

    async def _run(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(None, functools.partial(call, *args, **kwargs))

    def notify_retain(self, bank_id: str, count: int = 1, scopes: Iterable[str] | None = None) -> None:
        self.sync.notify_retain(bank_id, count, scopes)

    def notify_forget(self, bank_id: str, count: int = 1, scopes: Iterable[str] | None = None) -> None:
        self.sync.notify_forget(bank_id, count, scopes)

    def stats(self) -> NotifyStats:
        return self.sync.stats()

    async def flush(self, timeout: float | None = 10.0) -> bool:
        return await self._run(self.sync.flush, timeout)

    async def close(self, timeout: float | None = 10.0) -> bool:
        return await self._run(self.sync.close, timeout)

    async def __aenter__(self) -> AsyncCompileTriggerClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def retain(self, bank_id: str, count: int = 1) -> BankState:
        return await self._run(self.sync.retain, bank_id, count)

    async def forget(self, bank_id: str, count: int = 1) -> BankState:
        return await self._run(self.sync.forget, bank_id, count)

    async def compile_now(self, bank_id: str) -> BankState:
        return await self._run(self.sync.compile_now, bank_id)

    async def bank_state(self, bank_id: str) -> BankState:
        return await self._run(self.sync.bank_state, bank_id)

    async def list_banks(self, status: str | None = None, limit: int = 100, cursor: str | None = None) -> BankPage:
        return await self._run(self.sync.list_banks, status, limit, cursor)

    async def set_policy(self, bank_id: str, **fields: Any) -> PolicyAnswer:
        return await self._run(self.sync.set_policy, bank_id, **fields)

    async def get_policy(self, bank_id: str) -> PolicyAnswer:
        return await self._run(self.sync.get_policy, bank_id)

    async def clear_policy(self, bank_id: str) -> None:
        await self._run(self.sync.clear_policy, bank_id)

    async def queue_stats(self) -> QueueStats:
        return await self._run(self.sync.queue_stats)

    async def recent_compiles(self, limit: int = 100, bank_id: str | None = None, outcome: str | None = None) -> RecentCompiles:
        return await self._run(self.sync.recent_compiles, limit, bank_id, outcome)

    async def budget(self) -> Budget:
        return await self._run(self.sync.budget)

    async def ready(self) -> bool:
        return await self._run(self.sync.ready)
