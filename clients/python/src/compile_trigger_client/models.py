"""What the service answers, as dataclasses: field names in snake_case, times as aware `datetime`s, unknown fields
ignored (the service may add fields)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


def parse_time(value: Any) -> datetime | None:
    """An ISO time of the service (`2026-01-02T03:04:05.678Z`) as an aware `datetime`; `None` stays `None`."""
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)


@dataclass(frozen=True)
class BankState:
    """A bank's state (`GET /v1/banks/{bankId}`, and the answer of retain, forget and compile)."""

    bank_id: str
    memories_since_last_compile: int
    forgets_since_last_compile: int
    last_compile_at: datetime | None
    first_retain_at: datetime | None
    status: str
    consecutive_failures: int
    last_error: str | None
    policy: dict[str, Any] | None
    #: When the oldest memory no compile has consumed arrived, and when its `maxWaitSeconds` runs out (None: none).
    oldest_memory_at: datetime | None = None
    deadline_at: datetime | None = None
    #: The scopes writes named since a compile consumed them, as the service sends them (None: none named).
    dirty_scopes: dict[str, Any] | None = None
    #: When the bank will compile next and why (`GET /v1/banks/{bankId}` only), as the service sends it.
    next_compile: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, json: dict[str, Any]) -> BankState:
        return cls(
            bank_id=json["bankId"],
            memories_since_last_compile=json["memoriesSinceLastCompile"],
            forgets_since_last_compile=json.get("forgetsSinceLastCompile", 0),
            last_compile_at=parse_time(json.get("lastCompileAt")),
            first_retain_at=parse_time(json.get("firstRetainAt")),
            status=json["status"],
            consecutive_failures=json.get("consecutiveFailures", 0),
            last_error=json.get("lastError"),
            policy=json.get("policy"),
            oldest_memory_at=parse_time(json.get("oldestMemoryAt")),
            deadline_at=parse_time(json.get("deadlineAt")),
            dirty_scopes=json.get("dirtyScopes"),
            next_compile=json.get("nextCompile"),
        )


@dataclass(frozen=True)
class PolicyAnswer:
    """A bank's policy (the fields it sets, camelCase as sent) and the settings it yields over the defaults."""

    policy: dict[str, Any]
    effective: dict[str, Any]

    @classmethod
    def from_json(cls, json: dict[str, Any]) -> PolicyAnswer:
        return cls(policy=json["policy"], effective=json["effective"])


@dataclass(frozen=True)
class QueueStats:
    """`GET /v1/queue`: the queue's figures; `store` and `defaults` as the service sends them."""

    pending: int
    running: int
    size: int
    capacity: int | None
    banks: int
    store: dict[str, Any] | None
    mode: str
    defaults: dict[str, Any]

    @classmethod
    def from_json(cls, json: dict[str, Any]) -> QueueStats:
        return cls(
            pending=json["pending"],
            running=json["running"],
            size=json["size"],
            capacity=json.get("capacity"),
            banks=json["banks"],
            store=json.get("store"),
            mode=json.get("mode", "single"),
            defaults=json.get("defaults", {}),
        )


@dataclass(frozen=True)
class RunningCompile:
    bank_id: str
    reason: str
    started_at: datetime | None
    memories: int
    forgets: int
    attempt: int

    @classmethod
    def from_json(cls, json: dict[str, Any]) -> RunningCompile:
        return cls(
            bank_id=json["bankId"],
            reason=json["reason"],
            started_at=parse_time(json.get("startedAt")),
            memories=json.get("memories", 0),
            forgets=json.get("forgets", 0),
            attempt=json.get("attempt", 1),
        )


@dataclass(frozen=True)
class CompileRecord:
    """A finished engine run; `outcome` is `success`, `reported_error` or `failure`."""

    bank_id: str
    reason: str
    started_at: datetime | None
    ended_at: datetime | None
    outcome: str
    memories: int
    forgets: int
    tokens_used: int
    error: str | None

    @classmethod
    def from_json(cls, json: dict[str, Any]) -> CompileRecord:
        return cls(
            bank_id=json["bankId"],
            reason=json["reason"],
            started_at=parse_time(json.get("startedAt")),
            ended_at=parse_time(json.get("endedAt")),
            outcome=json["outcome"],
            memories=json.get("memories", 0),
            forgets=json.get("forgets", 0),
            tokens_used=json.get("tokensUsed", 0),
            error=json.get("error"),
        )


@dataclass(frozen=True)
class RecentCompiles:
    """`GET /v1/compiles`: the compiles running now, and the last finished ones, newest first."""

    running: list[RunningCompile]
    compiles: list[CompileRecord]

    @classmethod
    def from_json(cls, json: dict[str, Any]) -> RecentCompiles:
        return cls(
            running=[RunningCompile.from_json(item) for item in json.get("running", [])],
            compiles=[CompileRecord.from_json(item) for item in json.get("compiles", [])],
        )


@dataclass(frozen=True)
class Budget:
    """`GET /v1/budget`. `tokens` / `compiles` are the buckets as sent (`None`: unlimited); `deferred` as sent."""

    period_seconds: float
    tokens: dict[str, Any] | None
    compiles: dict[str, Any] | None
    bank_tokens: float | None
    waiting: int
    deferred_count: int
    deferred: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_json(cls, json: dict[str, Any]) -> Budget:
        return cls(
            period_seconds=json["periodSeconds"],
            tokens=json.get("tokens"),
            compiles=json.get("compiles"),
            bank_tokens=json.get("bankTokens"),
            waiting=json.get("waiting", 0),
            deferred_count=json.get("deferredCount", 0),
            deferred=list(json.get("deferred", [])),
        )


@dataclass(frozen=True)
class BankPage:
    banks: list[BankState]
    next_cursor: str | None

    @classmethod
    def from_json(cls, json: dict[str, Any]) -> BankPage:
        return cls(banks=[BankState.from_json(b) for b in json["banks"]], next_cursor=json.get("nextCursor"))


@dataclass(frozen=True)
class NotifyStats:
    """What the background sender did since the client was made (counts of memories, not of calls).

    `undelivered`: retains and forgets given up after the retries (the service unreachable or refusing);
    `rejected`: ones the service refused as invalid (a bad bank id or scope, a bank past its limit) or a bad `count`;
    `overflowed`: ones not buffered because the buffer held `max_buffered_keys` distinct banks already;
    `batches` / `items`: calls that succeeded and the (bank, count) items they carried (notifications of one bank
    gathered in one batch are one item).
    """

    buffered: int
    delivered_retains: int
    delivered_forgets: int
    undelivered: int
    rejected: int
    overflowed: int
    batches: int
    items: int
    failed_attempts: int
