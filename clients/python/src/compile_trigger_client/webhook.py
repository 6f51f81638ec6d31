"""The receiving side of the service's compile webhook: the signature check (`webhook-timestamp`,
`webhook-signature`: `v1=<hex HMAC-SHA256 of "<timestamp>.<raw body>">`, one per secret), the fencing token
(`compile-fencing-token: <epoch>.<sequence>`) with a guard refusing stale compiles, and the answer's JSON."""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
FENCING_TOKEN_HEADER = "compile-fencing-token"
DEFAULT_TOLERANCE_SECONDS = 300

MAX_SAFE_INTEGER = 2**53 - 1
_TOKEN_FORM = re.compile(r"(\d+)\.(\d+)", re.ASCII)
_DIGITS = re.compile(r"\d+", re.ASCII)


def _header(headers: Any, name: str) -> str:
    """A header by its lower-case name, from `http.server`'s message, a WSGI-style dict, or any mapping."""
    value = headers.get(name)
    if value is None and isinstance(headers, Mapping):
        value = next((v for k, v in headers.items() if isinstance(k, str) and k.lower() == name), None)
    return value if isinstance(value, str) else ""


def sign(body: bytes | str, timestamp: int, secret: bytes | str) -> str:
    """One `v1=` entry: what the service sends for `secret`."""
    key = secret.encode() if isinstance(secret, str) else secret
    raw = body.encode() if isinstance(body, str) else body
    return "v1=" + hmac.new(key, str(timestamp).encode() + b"." + raw, hashlib.sha256).hexdigest()


def verify_signature(
    headers: Any,
    body: bytes | str,
    secrets: str | bytes | Iterable[str | bytes],
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    *,
    now: float | None = None,
) -> bool:
    """True when the call is signed by one of `secrets` and its timestamp is within `tolerance` seconds of `now`.

    `body` must be the raw body as received (before any JSON parsing). Accepts any `v1=` entry with any secret, so
    it holds during a rotation (`COMPILE_WEBHOOK_SECRET` and `COMPILE_WEBHOOK_SECRET_PREVIOUS`) whichever secret the
    receiver holds. Compares in constant time. A missing or non-numeric timestamp, or one outside the window (a
    replay), is False. A receiver that must refuse every replay also remembers the signatures seen in the window.
    """
    timestamp = _header(headers, TIMESTAMP_HEADER).strip()
    if _DIGITS.fullmatch(timestamp) is None:
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance:
        return False
    keys = [secrets] if isinstance(secrets, (str, bytes)) else list(secrets)
    expected = [sign(body, int(timestamp), key).encode() for key in keys]
    matched = False
    for entry in _header(headers, SIGNATURE_HEADER).split(","):
        given = entry.strip().encode()
        for candidate in expected:
            # no early exit: every entry is compared with every secret
            matched |= hmac.compare_digest(given, candidate)
    return matched


class FencingTokenError(ValueError):
    """A text that is not a token's header form."""


@dataclass(frozen=True, order=True)
class FencingToken:
    """`epoch`, then `sequence`: ordered as the service orders them (`3.41` < `3.42` < `4.1`)."""

    epoch: int
    sequence: int

    def __str__(self) -> str:
        return f"{self.epoch}.{self.sequence}"

    @classmethod
    def parse(cls, text: str) -> FencingToken:
        """From the header form: two decimal integers joined by a dot, `epoch` ≥ 0, `sequence` ≥ 1, each at most
        2^53 − 1 (surrounding blanks ignored); anything else raises `FencingTokenError` saying what is wrong."""
        match = _TOKEN_FORM.fullmatch(text.strip()) if isinstance(text, str) else None
        if match is None:
            raise FencingTokenError(f'fencing token {text!r} is not "<epoch>.<sequence>" (two decimal integers, e.g. "7.12")')
        epoch, sequence = int(match.group(1)), int(match.group(2))
        if epoch > MAX_SAFE_INTEGER or sequence > MAX_SAFE_INTEGER:
            raise FencingTokenError(f"fencing token {text!r} has a part larger than {MAX_SAFE_INTEGER}")
        if sequence < 1:
            raise FencingTokenError(f"fencing token {text!r} has sequence 0 (sequences start at 1)")
        return cls(epoch, sequence)

    @classmethod
    def from_json(cls, json: Any) -> FencingToken:
        """From the body's `fencingToken` object, `{"epoch": …, "sequence": …}`."""
        if not isinstance(json, dict):
            raise FencingTokenError(f"fencingToken must be an object with epoch and sequence, got {json!r}")
        epoch, sequence = json.get("epoch"), json.get("sequence")
        if type(epoch) is not int or type(sequence) is not int or epoch < 0 or sequence < 1:
            raise FencingTokenError(f"fencingToken must have an integer epoch ≥ 0 and sequence ≥ 1, got {json!r}")
        return cls(epoch, sequence)


@dataclass(frozen=True)
class Admission:
    """What the guard answered: `accepted`, or stale with the highest token seen for the bank."""

    accepted: bool
    highest: FencingToken | None = None


class FencingGuard:
    """The highest fencing token seen per bank, in memory (the semantics of the library's `FencingToken.makeGuard`).

    `admit(bank_id, token)` accepts a token not lower than the highest seen (it becomes the highest; an equal token is
    the same compile asking twice) and refuses a lower one: answer that call 409. It forgets everything when the
    process restarts, so the check that lasts is the conditional page write, in the transaction writing the pages.
    Thread-safe.
    """

    def __init__(self) -> None:
        self._seen: dict[str, FencingToken] = {}
        self._lock = threading.Lock()

    def admit(self, bank_id: str, token: FencingToken | str) -> Admission:
        if isinstance(token, str):
            token = FencingToken.parse(token)
        with self._lock:
            highest = self._seen.get(bank_id)
            if highest is not None and token < highest:
                return Admission(False, highest)
            self._seen[bank_id] = token
            return Admission(True)

    def highest(self, bank_id: str) -> FencingToken | None:
        with self._lock:
            return self._seen.get(bank_id)

    def forget(self, bank_id: str) -> None:
        """Drops a bank you deleted: the guard holds one entry per bank it has seen, until then."""
        with self._lock:
            self._seen.pop(bank_id, None)


# The answer's fields: Python names of the original module's CompileResult, and the service's.
RESULT_FIELDS = {
    "bank_id": "bankId",
    "scopes_compiled": "scopesCompiled",
    "pages_created": "pagesCreated",
    "pages_updated": "pagesUpdated",
    "noise_memories": "noiseMemories",
    "tokens_used": "tokensUsed",
    "elapsed_ms": "elapsedMs",
    "error": "error",
}


def result_to_json(result: Any) -> dict[str, Any]:
    """The webhook answer for a compile result: a dict or an object with the original module's `CompileResult`
    attributes (`bank_id`, `scopes_compiled`, `pages_created`, `pages_updated`, `noise_memories`, `tokens_used`,
    `elapsed_ms`, `error`). Absent and `None` fields are left out (the service reads them as 0, `[]`, no error)."""
    answer: dict[str, Any] = {}
    for python_name, json_name in RESULT_FIELDS.items():
        if isinstance(result, Mapping):
            value = result.get(python_name, result.get(json_name))
        else:
            value = getattr(result, python_name, None)
        if value is None:
            continue
        if python_name == "scopes_compiled":
            value = list(value)
        elif python_name == "elapsed_ms":
            value = max(0, round(value))
        answer[json_name] = value
    return answer
