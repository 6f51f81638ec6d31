"""The background sender behind `notify_retain` / `notify_forget`: the caller's thread only adds a count to a dict
under a lock; one daemon thread sends what gathered through `POST /v1/retains`, retrying with backoff."""

from __future__ import annotations

import atexit
import logging
import re
import threading
import time
import weakref
from collections.abc import Iterable
from typing import Any

from ._transport import Transport
from .errors import (
    BankLimitReached,
    CompileTriggerError,
    HttpApiDecodeError,
    MalformedRequest,
    PayloadTooLarge,
    Unauthorized,
)
from .models import NotifyStats

_logger = logging.getLogger("compile_trigger_client")

BANK_ID = re.compile(r"[A-Za-z0-9._:-]{1,200}")
MAX_BATCH_ITEMS = 1000
MAX_COUNT = 1_000_000
# Answers that refuse the batch's content: retrying the same batch gets the same answer, so it is split instead.
REFUSALS = (HttpApiDecodeError, MalformedRequest, BankLimitReached, PayloadTooLarge)
WARN_EVERY_SECONDS = 60.0

# (kind, bank id, scopes or None): "retain" / "forget" items of the batch route.
Key = tuple[str, str, "tuple[str, ...] | None"]


class _RateLimitedLog:
    """A warning per kind at most once a minute, saying how many were left unsaid: never a log line per retain."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._quiet: dict[str, int] = {}

    def warn(self, kind: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -WARN_EVERY_SECONDS) < WARN_EVERY_SECONDS:
            self._quiet[kind] = self._quiet.get(kind, 0) + 1
            return
        self._last[kind] = now
        quiet = self._quiet.pop(kind, 0)
        suffix = f" ({quiet} more like it since the last warning)" if quiet else ""
        _logger.warning(message + suffix, *args)


class Notifier:
    """Buffers counts per (kind, bank, scopes) and delivers them in batches of up to 1,000 items."""

    def __init__(
        self,
        transport: Transport,
        *,
        max_buffered_keys: int,
        linger: float,
        max_attempts: int,
        backoff: float,
        max_backoff: float,
    ) -> None:
        if max_buffered_keys < 1 or max_attempts < 1 or linger < 0 or backoff < 0:
            raise ValueError("max_buffered_keys and max_attempts must be at least 1, linger and backoff at least 0")
        self._transport = transport
        self._max_keys = max_buffered_keys
        self._linger = linger
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        # Counts by bank, without scopes (most calls: no key tuple to allocate), and by Key with them.
        self._retains: dict[str, int] = {}
        self._forgets: dict[str, int] = {}
        self._scoped: dict[Key, int] = {}
        self._keys = 0  # entries in the three
        self._wake = threading.Event()  # something is buffered
        self._urgent = threading.Event()  # send now: a flush, a close, a full batch
        self._abandon = threading.Event()  # a close past its deadline: give up retrying
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self._flush_requested = 0
        self._flush_done = 0
        self._log = _RateLimitedLog()
        self._delivered = {"retain": 0, "forget": 0}
        self._undelivered = 0
        self._rejected = 0
        self._overflowed = 0
        self._batches = 0
        self._items = 0
        self._failed_attempts = 0
        _live.add(self)

    # --- the caller's side: no I/O, no exception --------------------------------------------------------------------

    def add(self, kind: str, bank_id: str, count: int, scopes: Iterable[str] | None) -> None:
        if type(count) is not int or count < 1 or type(bank_id) is not str:
            why = f"bank id must be a string, got {bank_id!r}" if type(bank_id) is not str else \
                f"count must be an integer of at least 1, got {count!r}"
            self._refuse_on_caller(why, count)
            return
        if scopes is not None:
            try:
                scopes = tuple(scopes)
            except TypeError:
                self._refuse_on_caller(f"scopes must be a list of strings, got {scopes!r}", count)
                return
        keys = 0
        with self._lock:
            if self._closed:
                self._undelivered += count
                self._log.warn("closed", "compile-trigger client is closed: %s of bank %r not sent", kind, bank_id)
                return
            if scopes is None:
                table: dict[Any, int] = self._retains if kind == "retain" else self._forgets
                key: Any = bank_id
            else:
                table, key = self._scoped, (kind, bank_id, scopes)
            held = table.get(key)
            if held is not None:
                table[key] = held + count
                return
            if self._keys >= self._max_keys:
                self._overflowed += count
                self._log.warn("overflow", "compile-trigger buffer full (%d banks): %s of bank %r not buffered",
                               self._max_keys, kind, bank_id)
                return
            table[key] = count
            self._keys = keys = self._keys + 1
        if keys == 1:  # the first since the sender took the buffer: wake it
            if self._thread is None:
                self._start()
            self._wake.set()
        elif keys == MAX_BATCH_ITEMS:  # a full batch: no need to linger
            self._urgent.set()

    def _refuse_on_caller(self, why: str, count: Any) -> None:
        with self._lock:
            self._rejected += count if type(count) is int and count > 0 else 1
        self._log.warn("bad-call", "compile-trigger notify ignored: %s", why)

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="compile-trigger-notifier", daemon=True)
                self._thread.start()

    def stats(self) -> NotifyStats:
        with self._lock:
            return NotifyStats(
                buffered=sum(self._retains.values()) + sum(self._forgets.values()) + sum(self._scoped.values()),
                delivered_retains=self._delivered["retain"],
                delivered_forgets=self._delivered["forget"],
                undelivered=self._undelivered,
                rejected=self._rejected,
                overflowed=self._overflowed,
                batches=self._batches,
                items=self._items,
                failed_attempts=self._failed_attempts,
            )

    def flush(self, timeout: float | None) -> bool:
        """Waits until what was buffered before the call was sent (or given up: see `stats`); False on timeout."""
        with self._lock:
            self._flush_requested += 1
            target = self._flush_requested
        self._start()
        self._urgent.set()
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._flush_done < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def close(self, timeout: float | None) -> bool:
        """Flushes within `timeout`, then stops the sender; what is left is counted as undelivered."""
        delivered = self.flush(timeout)
        with self._lock:
            self._closed = True
        if not delivered:
            self._abandon.set()
        self._urgent.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=None if delivered else 1.0)
        with self._lock:
            self._undelivered += sum(sum(table.values()) for table in self._take())
        _live.discard(self)
        self._transport.close()
        return delivered

    # --- the sender thread ------------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait()
            if self._linger > 0:
                self._urgent.wait(self._linger)  # gather a batch, unless asked to send now
            self._urgent.clear()
            with self._lock:
                taken = self._take()
                self._wake.clear()
                target = self._flush_requested
                closing = self._closed
            try:
                self._deliver(taken)
            except Exception:  # a bug must not end the sender: what it held is counted, the rest still goes
                _logger.exception("compile-trigger sender failed on a batch")
                self._count("undelivered", sum(sum(table.values()) for table in taken))
            with self._cond:
                self._flush_done = max(self._flush_done, target)
                self._cond.notify_all()
                if closing and self._keys == 0:
                    return

    def _take(self) -> tuple[dict[str, int], dict[str, int], dict[Key, int]]:
        """The buffer's three tables, leaving empty ones (under the lock)."""
        taken = (self._retains, self._forgets, self._scoped)
        self._retains, self._forgets, self._scoped, self._keys = {}, {}, {}, 0
        return taken

    def _deliver(self, taken: tuple[dict[str, int], dict[str, int], dict[Key, int]]) -> None:
        retains, forgets, scoped = taken
        keyed: list[tuple[Key, int]] = [(("retain", bank, None), count) for bank, count in retains.items()]
        keyed += [(("forget", bank, None), count) for bank, count in forgets.items()]
        keyed += scoped.items()
        items: list[tuple[Key, int]] = []
        for key, count in keyed:
            if BANK_ID.fullmatch(key[1]) is None:
                self._count("rejected", count)
                self._log.warn("bank-id", "compile-trigger: bank id %r refused: 1 to 200 characters of "
                               "A-Z a-z 0-9 . _ : - expected", key[1])
                continue
            while count > 0:  # the route takes at most 1,000,000 per item
                items.append((key, min(count, MAX_COUNT)))
                count -= MAX_COUNT
        retains = [item for item in items if item[0][0] == "retain"]
        batches = [retains[start:start + MAX_BATCH_ITEMS] for start in range(0, len(retains), MAX_BATCH_ITEMS)]
        # forgets have no batch route: one call per bank (merged, so one per bank per batch window)
        batches += [[item] for item in items if item[0][0] == "forget"]
        for index, batch in enumerate(batches):
            if not self._send(batch):
                # The service was just retried for the whole backoff: the rest of this round is not tried again one
                # batch at a time (a black-holed address would hold each for every attempt's timeout).
                rest = [item for later in batches[index + 1:] for item in later]
                if rest:
                    self._give_up(rest, "undelivered", "unreachable", "compile-trigger: the service is unreachable; "
                                  "%d more counted as undelivered")
                return

    def _send(self, batch: list[tuple[Key, int]]) -> bool:
        """Sends one batch, retrying with backoff; a batch the service refuses is split to find the bad items. False
        when the service could not be reached (or refused the token) through all the attempts."""
        delay = self._backoff
        for attempt in range(1, self._max_attempts + 1):
            try:
                self._post(batch)
            except REFUSALS as error:
                self._split(batch, error)
                return True
            except Unauthorized as error:
                self._give_up(batch, "undelivered", "unauthorized", "compile-trigger: the service refused the "
                              "API token (%s); %d not delivered", error.message)
                return False
            except CompileTriggerError as error:
                self._count("failed_attempts", 1)
                if attempt == self._max_attempts or self._abandon.wait(delay):
                    self._give_up(batch, "undelivered", "unreachable", "compile-trigger: not delivered after "
                                  "%d attempts (%s); %d counted as undelivered", attempt, error.message)
                    return False
                delay = min(delay * 2, self._max_backoff)
                continue
            with self._lock:
                self._batches += 1
                self._items += len(batch)
                for (kind, _, _), count in batch:
                    self._delivered[kind] += count
            return True
        return False

    def _split(self, batch: list[tuple[Key, int]], error: CompileTriggerError) -> None:
        if len(batch) == 1:
            (kind, bank_id, _), _count = batch[0]
            self._give_up(batch, "rejected", "refused", "compile-trigger: the service refused the %s of bank %r "
                          "(%s); %d counted as rejected", kind, bank_id, error.message)
            return
        half = len(batch) // 2
        self._send(batch[:half])
        self._send(batch[half:])

    def _give_up(self, batch: list[tuple[Key, int]], counter: str, kind: str, message: str, *args: Any) -> None:
        """Counts the batch in `counter`; `message` ends with the count (its last `%d`)."""
        total = sum(count for _, count in batch)
        self._count(counter, total)
        self._log.warn(kind, message, *args, total)

    def _post(self, batch: list[tuple[Key, int]]) -> None:
        (kind, bank_id, _), _count = batch[0]
        if kind == "retain":
            self._transport.request("POST", "/v1/retains", [_item(key, count) for key, count in batch])
        else:
            self._transport.request("POST", f"/v1/banks/{bank_id}/forget", _forget_body(*batch[0]))

    def _count(self, counter: str, amount: int) -> None:
        with self._lock:
            setattr(self, f"_{counter}", getattr(self, f"_{counter}") + amount)


def _item(key: Key, count: int) -> dict[str, Any]:
    """A batch item; `count` and `scopes` only when needed, so that a service without `scopes` takes it."""
    _, bank_id, scopes = key
    item: dict[str, Any] = {"bankId": bank_id}
    if count != 1:
        item["count"] = count
    if scopes is not None:
        item["scopes"] = list(scopes)
    return item


def _forget_body(key: Key, count: int) -> dict[str, Any]:
    body: dict[str, Any] = {"count": count}
    if key[2] is not None:
        body["scopes"] = list(key[2])
    return body


_live: weakref.WeakSet[Notifier] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    """At interpreter exit, what is still buffered gets two seconds to go out (the sender is a daemon thread)."""
    for notifier in list(_live):
        if notifier._thread is not None:  # no thread: nothing was ever buffered (and none may start at exit)
            notifier.close(2.0)
