"""The service's errors as Python exceptions: one class per `_tag` the HTTP API answers, a base class for the rest."""

from __future__ import annotations

from typing import Any


class CompileTriggerError(Exception):
    """An error answer of the service (or none at all: see `ServiceUnavailable`).

    `tag` is the answer's `_tag` (``""`` when the answer had none), `status` its HTTP status (0 when there was no
    answer), `body` the decoded JSON answer when there was one. Tags this client does not know map to this class.
    """

    def __init__(self, message: str, *, tag: str = "", status: int = 0, body: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.tag = tag
        self.status = status
        self.body = body

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tag={self.tag!r}, status={self.status}, message={self.message!r})"


class ServiceUnavailable(CompileTriggerError):
    """No answer: the connection was refused, reset, or timed out."""


class BankNotFound(CompileTriggerError):
    """404: the service does not know the bank."""


class PolicyNotFound(CompileTriggerError):
    """404: the bank has no policy."""


class Unauthorized(CompileTriggerError):
    """401: `API_TOKEN` is set and the bearer token is missing or wrong."""


class NotReady(CompileTriggerError):
    """503: starting, shutting down, or (`ACK_MODE=durable`) the store fails."""


class StoreUnavailable(CompileTriggerError):
    """503, `ACK_MODE=durable`: the write was counted but not stored in time (a retry may count it twice)."""


class BankLimitReached(CompileTriggerError):
    """507: a new bank while the service holds `COMPILE_MAX_BANKS`; nothing was counted."""


class MalformedRequest(CompileTriggerError):
    """400 or 408: the body is not JSON, has the wrong content type, or the request was too slow."""


class PayloadTooLarge(CompileTriggerError):
    """413: a body over 1 MiB."""


class HttpApiDecodeError(CompileTriggerError):
    """400: a field is wrong (a bad bank id, count, limit, ...). `issues` lists each problem with its path."""

    @property
    def issues(self) -> list[dict[str, Any]]:
        issues = self.body.get("issues") if isinstance(self.body, dict) else None
        return issues if isinstance(issues, list) else []


class RouteNotFound(CompileTriggerError):
    """404: no such route (usually a wrong `base_url`)."""


class InternalServerError(CompileTriggerError):
    """500: a bug in the service (it logs the cause)."""


ERRORS_BY_TAG: dict[str, type[CompileTriggerError]] = {
    cls.__name__: cls
    for cls in (
        BankNotFound,
        PolicyNotFound,
        Unauthorized,
        NotReady,
        StoreUnavailable,
        BankLimitReached,
        MalformedRequest,
        PayloadTooLarge,
        HttpApiDecodeError,
        RouteNotFound,
        InternalServerError,
    )
}


def error_from_answer(status: int, body: Any, text: str) -> CompileTriggerError:
    """The exception for an error answer: by its `_tag`, else the base class with the status and the body's start."""
    tag = body.get("_tag") if isinstance(body, dict) else None
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, str) or message == "":
        message = f"HTTP {status}: {text[:200]}" if text else f"HTTP {status}"
    cls = ERRORS_BY_TAG.get(tag, CompileTriggerError) if isinstance(tag, str) else CompileTriggerError
    return cls(message, tag=tag if isinstance(tag, str) else "", status=status, body=body)
