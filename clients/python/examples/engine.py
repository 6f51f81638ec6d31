"""A minimal compile endpoint on `http.server`: verifies the service's signature, refuses a stale fencing token with
409, rebuilds the bank's pages, and answers a `CompileResult`.

    COMPILE_WEBHOOK_SECRET=whsec-example python3 examples/engine.py 9000
    # the service: COMPILE_WEBHOOK_URL=http://127.0.0.1:9000/compile COMPILE_WEBHOOK_SECRET=whsec-example npm start
"""

from __future__ import annotations

import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from compile_trigger_client.webhook import (
    FENCING_TOKEN_HEADER,
    FencingGuard,
    FencingToken,
    FencingTokenError,
    result_to_json,
    verify_signature,
)


def rebuild(job: dict[str, Any]) -> dict[str, Any]:
    """Your compile: here, a stand-in that touches one page per 10 memories. Return the original module's
    `CompileResult` fields (or its object): `result_to_json` turns them into the service's answer."""
    started = time.monotonic()
    pages = max(1, job["memories"] // 10)
    return {
        "bank_id": job["bankId"],
        "scopes_compiled": ["general"],
        "pages_updated": pages,
        "tokens_used": 0,
        "elapsed_ms": (time.monotonic() - started) * 1000,
    }


def make_handler(secrets: list[str], guard: FencingGuard, compile_bank: Any = rebuild) -> type[BaseHTTPRequestHandler]:
    class CompileHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            raw = self.rfile.read(int(self.headers.get("content-length", "0")))
            if secrets and not verify_signature(self.headers, raw, secrets):
                return self.answer(401, {"error": "bad signature"})
            try:
                token = FencingToken.parse(self.headers.get(FENCING_TOKEN_HEADER, ""))
                job = json.loads(raw)
            except (FencingTokenError, ValueError) as error:
                return self.answer(400, {"error": str(error)})
            admission = guard.admit(job["bankId"], token)
            if not admission.accepted:  # an older compile of the bank: the service reads 409 as "stale"
                return self.answer(409, {"error": f"stale: {token} < {admission.highest}"})
            # Real engines also write the pages under the token: UPDATE ... WHERE (epoch, sequence) <= (token).
            self.answer(200, result_to_json(compile_bank(job)))

        def answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    return CompileHandler


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    secrets = [s for s in (os.environ.get("COMPILE_WEBHOOK_SECRET"), os.environ.get("COMPILE_WEBHOOK_SECRET_PREVIOUS")) if s]
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(secrets, FencingGuard()))
    print(f"compile endpoint on http://127.0.0.1:{port}/compile ({'signed' if secrets else 'unsigned'} calls)")
    server.serve_forever()


if __name__ == "__main__":
    main()
