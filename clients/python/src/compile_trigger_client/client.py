"""`CompileTriggerClient`: the service's HTTP API from Python — retains and forgets buffered and sent in the
background, every other call synchronous, answering dataclasses or raising the service's typed errors."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlencode

from ._notifier import Notifier
from ._transport import Transport
from .models import BankPage, BankState, Budget, NotifyStats, PolicyAnswer, QueueStats, RecentCompiles

# Python names of a policy's fields, and the service's.
POLICY_FIELDS = {
    "enabled": "enabled",
    "size_threshold": "sizeThreshold",
    "staleness_days": "stalenessDays",
    "staleness_min_memories": "stalenessMinMemories",
    "forget_threshold": "forgetThreshold",
    "forget_delay_seconds": "forgetDelaySeconds",
    "bank_tokens": "bankTokens",
}


class CompileTriggerClient:
    """A client of one service.

    `notify_retain` / `notify_forget` never block and never raise: they add to a buffer that a background thread
    sends (retains in batches through `POST /v1/retains`). The other methods are synchronous HTTP calls on kept-alive
    connections; an error answer raises the `errors` class of its `_tag`, no answer raises `ServiceUnavailable`.
    Thread-safe. Use it as a context manager, or call `close()` to deliver what is buffered.

    Options: `timeout` (seconds per HTTP call); `max_buffered_keys` (distinct banks the buffer holds; past it a new
    bank's notification is counted in `stats().overflowed` and logged); `linger` (seconds the sender waits to gather a
    batch after the first notification); `max_attempts`, `backoff`, `max_backoff` (retries of a batch the service
    did not take: the service unreachable, 503, 5xx; the defaults retry for about 11 seconds, through a restart of the
    service; after the last one the batch, and the rest of that round, count in `stats().undelivered`).
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8787",
        token: str | None = None,
        *,
        timeout: float = 10.0,
        max_buffered_keys: int = 100_000,
        linger: float = 0.005,
        max_attempts: int = 8,
        backoff: float = 0.1,
        max_backoff: float = 5.0,
    ) -> None:
        self._transport = Transport(base_url, token, timeout)
        # The sender has its own connection pool, so that a slow batch never holds a caller's call.
        self._notifier = Notifier(
            Transport(base_url, token, timeout, max_idle=1),
            max_buffered_keys=max_buffered_keys,
            linger=linger,
            max_attempts=max_attempts,
            backoff=backoff,
            max_backoff=max_backoff,
        )
        self.base_url = base_url

    # --- background: never blocks, never raises ---------------------------------------------------------------------

    def notify_retain(self, bank_id: str, count: int = 1, scopes: Iterable[str] | None = None) -> None:
        """Counts `count` new memories of `bank_id` (with the `scopes` they touched, sent only when given)."""
        self._notifier.add("retain", bank_id, count, scopes)

    def notify_forget(self, bank_id: str, count: int = 1, scopes: Iterable[str] | None = None) -> None:
        """Counts `count` forgotten memories of `bank_id` (sent per bank through `POST …/forget`)."""
        self._notifier.add("forget", bank_id, count, scopes)

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Waits until everything notified before the call was sent, or given up after its retries (see `stats`).
        False when `timeout` passed first."""
        return self._notifier.flush(timeout)

    def stats(self) -> NotifyStats:
        """What the background sender delivered, gave up, or refused so far."""
        return self._notifier.stats()

    def close(self, timeout: float | None = 10.0) -> bool:
        """Delivers what is buffered (within `timeout`), stops the sender and closes the connections. Later
        notifications are counted as undelivered. False when something was left undelivered by the deadline."""
        delivered = self._notifier.close(timeout)
        self._transport.close()
        return delivered

    def __enter__(self) -> CompileTriggerClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- synchronous calls ------------------------------------------------------------------------------------------

    def retain(self, bank_id: str, count: int = 1) -> BankState:
        """Counts retains now, in one call (`POST /v1/banks/{bankId}/retain`), and answers the bank's state."""
        return BankState.from_json(self._call("POST", f"/v1/banks/{_path(bank_id)}/retain", {"count": count}))

    def forget(self, bank_id: str, count: int = 1) -> BankState:
        """Counts forgets now (`POST /v1/banks/{bankId}/forget`)."""
        return BankState.from_json(self._call("POST", f"/v1/banks/{_path(bank_id)}/forget", {"count": count}))

    def compile_now(self, bank_id: str) -> BankState:
        """Queues a compile of the bank regardless of its thresholds (`POST /v1/banks/{bankId}/compile`)."""
        return BankState.from_json(self._call("POST", f"/v1/banks/{_path(bank_id)}/compile"))

    def bank_state(self, bank_id: str) -> BankState:
        """The bank's state; `BankNotFound` when the service never saw it."""
        return BankState.from_json(self._call("GET", f"/v1/banks/{_path(bank_id)}"))

    def list_banks(self, status: str | None = None, limit: int = 100, cursor: str | None = None) -> BankPage:
        """One page of banks in first-seen order; pass `next_cursor` back for the next page."""
        query = _query(status=status, limit=limit, cursor=cursor)
        return BankPage.from_json(self._call("GET", f"/v1/banks{query}"))

    def set_policy(self, bank_id: str, **fields: Any) -> PolicyAnswer:
        """Sets the bank's policy: `enabled`, `size_threshold`, `staleness_days`, `staleness_min_memories`,
        `forget_threshold`, `forget_delay_seconds`, `bank_tokens` (the service's camelCase names work too)."""
        body = {POLICY_FIELDS.get(name, name): value for name, value in fields.items()}
        return PolicyAnswer.from_json(self._call("PUT", f"/v1/banks/{_path(bank_id)}/policy", body))

    def get_policy(self, bank_id: str) -> PolicyAnswer:
        """The bank's policy; `PolicyNotFound` when it has none."""
        return PolicyAnswer.from_json(self._call("GET", f"/v1/banks/{_path(bank_id)}/policy"))

    def clear_policy(self, bank_id: str) -> None:
        """Removes the bank's policy (a bank without one is fine): the service's defaults apply again."""
        self._call("DELETE", f"/v1/banks/{_path(bank_id)}/policy")

    def queue_stats(self) -> QueueStats:
        return QueueStats.from_json(self._call("GET", "/v1/queue"))

    def recent_compiles(self, limit: int = 100, bank_id: str | None = None, outcome: str | None = None) -> RecentCompiles:
        """The running compiles and the last `limit` finished ones, newest first, filtered by bank and outcome."""
        query = _query(limit=limit, bankId=bank_id, outcome=outcome)
        return RecentCompiles.from_json(self._call("GET", f"/v1/compiles{query}"))

    def budget(self) -> Budget:
        return Budget.from_json(self._call("GET", "/v1/budget"))

    def ready(self) -> bool:
        """Whether `/readyz` answers 200 (degraded included)."""
        try:
            self._call("GET", "/readyz")
        except Exception:
            return False
        return True

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        return self._transport.request(method, path, body)[1]


def _path(bank_id: str) -> str:
    """The bank id in a path: quoted, so that a bad id is answered by the service's 400, never another route."""
    return quote(bank_id, safe="")


def _query(**params: Any) -> str:
    present = {name: value for name, value in params.items() if value is not None}
    return f"?{urlencode(present)}" if present else ""
