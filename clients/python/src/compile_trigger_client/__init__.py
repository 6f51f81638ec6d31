"""Python client of the effect-compile-trigger service (standard library only).

- `CompileTriggerClient` / `AsyncCompileTriggerClient`: non-blocking `notify_retain` / `notify_forget` and the
  service's HTTP API, with typed errors (`compile_trigger_client.errors`).
- `compile_trigger_client.compile_trigger`: a drop-in for the original `compile_trigger` module.
- `compile_trigger_client.webhook`: `verify_signature` and `FencingGuard` for the compile endpoint.
"""

import logging

from . import errors
from .aio import AsyncCompileTriggerClient
from .client import CompileTriggerClient
from .errors import (
    BankLimitReached,
    BankNotFound,
    CompileTriggerError,
    HttpApiDecodeError,
    MalformedRequest,
    NotReady,
    PayloadTooLarge,
    PolicyNotFound,
    RouteNotFound,
    ServiceUnavailable,
    StoreUnavailable,
    Unauthorized,
)
from .models import (
    BankPage,
    BankState,
    Budget,
    CompileRecord,
    NotifyStats,
    PolicyAnswer,
    QueueStats,
    RecentCompiles,
    RunningCompile,
)
from .webhook import Admission, FencingGuard, FencingToken, FencingTokenError, result_to_json, verify_signature

__version__ = "0.1.0"

# A library's loggers stay quiet until the application configures logging ("compile_trigger_client" warns when
# notifications are refused or not delivered).
logging.getLogger("compile_trigger_client").addHandler(logging.NullHandler())

__all__ = [
    "Admission",
    "AsyncCompileTriggerClient",
    "BankLimitReached",
    "BankNotFound",
    "BankPage",
    "BankState",
    "Budget",
    "CompileRecord",
    "CompileTriggerClient",
    "CompileTriggerError",
    "FencingGuard",
    "FencingToken",
    "FencingTokenError",
    "HttpApiDecodeError",
    "MalformedRequest",
    "NotReady",
    "NotifyStats",
    "PayloadTooLarge",
    "PolicyAnswer",
    "PolicyNotFound",
    "QueueStats",
    "RecentCompiles",
    "RouteNotFound",
    "RunningCompile",
    "ServiceUnavailable",
    "StoreUnavailable",
    "Unauthorized",
    "errors",
    "result_to_json",
    "verify_signature",
]
