"""Webhook helpers: the signature check against the documented example and against the service's real signed calls
(both secrets), the fencing token's form and order, the guard, and the example engine serving the service."""

from __future__ import annotations

import importlib.util
import json
import threading
import time
import unittest
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer
from pathlib import Path

from .support import Receiver, Service, eventually

from compile_trigger_client import CompileTriggerClient, FencingGuard, FencingToken, FencingTokenError, verify_signature
from compile_trigger_client.webhook import result_to_json, sign

# The signed call of docs/service.md ("The request").
DOC_BODY = b'{"bankId":"bank-1","reason":"size","memories":50,"forgets":0,"attempt":1,"fencingToken":{"epoch":3,"sequence":41}}'
DOC_TIMESTAMP = 1764625200
DOC_SIGNATURE = "v1=b704c2e95feaa859c99a6c7cc7fe0e63134055201ca4e30a9b4296f43ba41f21"
DOC_SECRET = "whsec-example-secret"


class SignatureTest(unittest.TestCase):
    headers = {"webhook-timestamp": str(DOC_TIMESTAMP), "webhook-signature": DOC_SIGNATURE}

    def test_the_documented_call_verifies(self) -> None:
        self.assertEqual(sign(DOC_BODY, DOC_TIMESTAMP, DOC_SECRET), DOC_SIGNATURE)
        self.assertTrue(verify_signature(self.headers, DOC_BODY, DOC_SECRET, now=DOC_TIMESTAMP + 10))
        self.assertTrue(verify_signature(self.headers, DOC_BODY.decode(), [b"other", DOC_SECRET], now=DOC_TIMESTAMP))
        mixed_case = {"Webhook-Timestamp": str(DOC_TIMESTAMP), "Webhook-Signature": DOC_SIGNATURE}
        self.assertTrue(verify_signature(mixed_case, DOC_BODY, DOC_SECRET, now=DOC_TIMESTAMP))

    def test_refusals(self) -> None:
        now = DOC_TIMESTAMP
        self.assertFalse(verify_signature(self.headers, DOC_BODY.replace(b"50", b"51"), DOC_SECRET, now=now))
        self.assertFalse(verify_signature(self.headers, DOC_BODY, "wrong-secret", now=now))
        self.assertFalse(verify_signature(self.headers, DOC_BODY, DOC_SECRET, now=now + 301), "a replay past 5 minutes")
        self.assertFalse(verify_signature(self.headers, DOC_BODY, DOC_SECRET, now=now - 301), "from the future")
        self.assertTrue(verify_signature(self.headers, DOC_BODY, DOC_SECRET, 600, now=now + 599))
        for timestamp in ("", "17646252OO", "-1764625200", "1764625200.0"):
            headers = {**self.headers, "webhook-timestamp": timestamp}
            self.assertFalse(verify_signature(headers, DOC_BODY, DOC_SECRET, now=now), timestamp)
        redated = {**self.headers, "webhook-timestamp": str(now + 1)}
        self.assertFalse(verify_signature(redated, DOC_BODY, DOC_SECRET, now=now), "the timestamp is signed")
        self.assertFalse(verify_signature({"webhook-timestamp": str(now)}, DOC_BODY, DOC_SECRET, now=now))
        self.assertFalse(verify_signature(self.headers, DOC_BODY, [], now=now))


class FencingTokenTest(unittest.TestCase):
    def test_parse_and_order(self) -> None:
        self.assertEqual(FencingToken.parse(" 3.41 "), FencingToken(3, 41))
        self.assertEqual(str(FencingToken(7, 12)), "7.12")
        self.assertLess(FencingToken(3, 41), FencingToken(3, 42))
        self.assertLess(FencingToken(3, 42), FencingToken(4, 1))
        self.assertEqual(FencingToken.parse("0.1"), FencingToken(0, 1))
        self.assertEqual(FencingToken.parse("9007199254740991.1").epoch, 2**53 - 1)
        for text in ("", "3", "3.", ".4", "3.4.5", "-1.2", "a.b", "3,4", "٣.٤", "3.0", "9007199254740992.1"):
            with self.assertRaises(FencingTokenError, msg=text):
                FencingToken.parse(text)
        self.assertEqual(FencingToken.from_json({"epoch": 3, "sequence": 41}), FencingToken(3, 41))
        with self.assertRaises(FencingTokenError):
            FencingToken.from_json({"epoch": 3, "sequence": 0})

    def test_guard_refuses_lower_tokens_per_bank_and_accepts_equal_ones(self) -> None:
        guard = FencingGuard()
        self.assertTrue(guard.admit("a", "3.41").accepted)
        self.assertTrue(guard.admit("a", FencingToken(3, 41)).accepted, "the same compile asking twice")
        stale = guard.admit("a", "3.40")
        self.assertEqual((stale.accepted, stale.highest), (False, FencingToken(3, 41)))
        self.assertFalse(guard.admit("a", "2.99").accepted)
        self.assertTrue(guard.admit("b", "1.1").accepted, "banks are independent")
        self.assertTrue(guard.admit("a", "4.1").accepted)
        self.assertEqual(guard.highest("a"), FencingToken(4, 1))
        guard.forget("a")
        self.assertIsNone(guard.highest("a"))
        self.assertTrue(guard.admit("a", "1.1").accepted)

    def test_result_to_json(self) -> None:
        class Result:
            bank_id = "b"
            scopes_compiled = ("x", "y")
            pages_created = 1
            pages_updated = 2
            noise_memories = 0
            tokens_used = 900
            elapsed_ms = 12.6
            error = None

        self.assertEqual(result_to_json(Result()), {"bankId": "b", "scopesCompiled": ["x", "y"], "pagesCreated": 1,
                                                    "pagesUpdated": 2, "noiseMemories": 0, "tokensUsed": 900,
                                                    "elapsedMs": 13})
        self.assertEqual(result_to_json({"error": "model refused"}), {"error": "model refused"})


class SignedCallsTest(unittest.TestCase):
    """The service's real calls, signed with the current and the previous secret."""

    def test_real_calls_verify_with_either_secret_and_carry_the_token(self) -> None:
        receiver = Receiver()
        self.addCleanup(receiver.close)
        service = Service({"COMPILE_WEBHOOK_URL": receiver.url, "COMPILE_SIZE_THRESHOLD": "1",
                           "COMPILE_WEBHOOK_SECRET": "current-secret", "COMPILE_WEBHOOK_SECRET_PREVIOUS": "old-secret",
                           "COMPILE_WEBHOOK_TOKEN": "hook-token"})
        self.addCleanup(service.stop)
        client = CompileTriggerClient(service.base_url)
        self.addCleanup(client.close)
        client.retain("signed-1")
        client.compile_now("signed-1")
        calls = receiver.wait_for(lambda calls: len(calls) >= 2)
        guard = FencingGuard()
        for call in calls:
            headers, raw = call["headers"], call["raw"]
            self.assertTrue(verify_signature(headers, raw, "current-secret"))
            self.assertTrue(verify_signature(headers, raw, "old-secret"))
            self.assertTrue(verify_signature(headers, raw, ["old-secret", "current-secret"]))
            self.assertFalse(verify_signature(headers, raw, "another-secret"))
            self.assertFalse(verify_signature(headers, raw + b" ", "current-secret"), "a tampered body")
            self.assertEqual(headers["authorization"], "Bearer hook-token")
            token = FencingToken.parse(headers["compile-fencing-token"])
            self.assertEqual(token, FencingToken.from_json(call["json"]["fencingToken"]))
            self.assertTrue(guard.admit(call["json"]["bankId"], token).accepted, "each call's token is higher")
        self.assertLess(FencingToken.parse(calls[0]["headers"]["compile-fencing-token"]),
                        FencingToken.parse(calls[1]["headers"]["compile-fencing-token"]))


def load_example_engine():
    path = Path(__file__).resolve().parents[1] / "examples" / "engine.py"
    spec = importlib.util.spec_from_file_location("example_engine", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ExampleEngineTest(unittest.TestCase):
    def test_the_example_engine_compiles_for_the_service_and_refuses_stale_or_unsigned_calls(self) -> None:
        engine = load_example_engine()
        guard = FencingGuard()
        server = ThreadingHTTPServer(("127.0.0.1", 0), engine.make_handler(["engine-secret"], guard))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        url = f"http://127.0.0.1:{server.server_address[1]}/compile"
        service = Service({"COMPILE_WEBHOOK_URL": url, "COMPILE_SIZE_THRESHOLD": "20",
                           "COMPILE_WEBHOOK_SECRET": "engine-secret"})
        self.addCleanup(service.stop)
        client = CompileTriggerClient(service.base_url)
        self.addCleanup(client.close)
        client.notify_retain("example-1", 25)
        client.flush(10)
        history = eventually(lambda: client.recent_compiles(bank_id="example-1"), lambda h: len(h.compiles) > 0)
        record = history.compiles[0]
        self.assertEqual((record.outcome, record.memories, record.error), ("success", 25, None))
        self.assertEqual(client.bank_state("example-1").memories_since_last_compile, 0)
        highest = guard.highest("example-1")
        assert highest is not None

        def post(token: str, secret: str) -> int:
            body = json.dumps({"bankId": "example-1", "reason": "size", "memories": 1, "forgets": 0, "attempt": 1,
                               "fencingToken": {"epoch": 0, "sequence": 1}}).encode()
            timestamp = int(time.time())
            request = urllib.request.Request(url, data=body, method="POST", headers={
                "content-type": "application/json", "compile-fencing-token": token,
                "webhook-timestamp": str(timestamp), "webhook-signature": sign(body, timestamp, secret)})
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    return answer.status
            except urllib.error.HTTPError as error:
                return error.code

        older = FencingToken(highest.epoch, highest.sequence - 1) if highest.sequence > 1 else FencingToken(0, 1)
        self.assertEqual(post(str(older), "engine-secret"), 409)
        self.assertEqual(post(str(highest), "wrong-secret"), 401)
        self.assertEqual(post(str(highest), "engine-secret"), 200, "an equal token is the same compile")


if __name__ == "__main__":
    unittest.main()
