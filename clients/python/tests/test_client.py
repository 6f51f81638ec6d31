"""The client against the real service: batching, flush and close, scopes sent only when given, the synchronous calls
and their typed errors, the asyncio flavour."""

from __future__ import annotations

import asyncio
import unittest

from .support import Service

from compile_trigger_client import (
    AsyncCompileTriggerClient,
    BankNotFound,
    CompileTriggerClient,
    CompileTriggerError,
    HttpApiDecodeError,
    PolicyNotFound,
    RouteNotFound,
    Unauthorized,
)
from compile_trigger_client.errors import error_from_answer


class ClientTest(unittest.TestCase):
    service: Service

    @classmethod
    def setUpClass(cls) -> None:
        # Compiles only when a test asks (the dry-run engine), so counters stay as sent.
        cls.service = Service({"COMPILE_SIZE_THRESHOLD": "1000000", "COMPILE_DEFAULT_ENABLED": "false"})

    @classmethod
    def tearDownClass(cls) -> None:
        cls.service.stop()

    def client(self, **options: object) -> CompileTriggerClient:
        client = CompileTriggerClient(self.service.base_url, **options)  # type: ignore[arg-type]
        self.addCleanup(client.close)
        return client

    def test_notifications_are_merged_per_bank_and_sent_in_batches(self) -> None:
        client = self.client(linger=0.05)
        for i in range(5000):
            client.notify_retain(f"batch-{i % 50}")
        client.notify_retain("batch-big", count=2_500_000)  # over the route's 1,000,000 per item: split
        self.assertTrue(client.flush(10))
        stats = client.stats()
        self.assertEqual(stats.delivered_retains, 5000 + 2_500_000)
        self.assertLessEqual(stats.batches, 4, "5,000 notifications of 51 banks take a few batches, not 5,000 calls")
        self.assertEqual(client.bank_state("batch-7").memories_since_last_compile, 100)
        self.assertEqual(client.bank_state("batch-big").memories_since_last_compile, 2_500_000)

    def test_more_than_a_thousand_banks_take_several_batches(self) -> None:
        client = self.client()
        for i in range(2500):
            client.notify_retain(f"many-{i}")
        self.assertTrue(client.flush(10))
        self.assertEqual(client.stats().delivered_retains, 2500)
        self.assertGreaterEqual(client.stats().batches, 3)
        self.assertEqual(client.bank_state("many-2499").memories_since_last_compile, 1)

    def test_forgets_are_counted(self) -> None:
        client = self.client()
        client.notify_retain("forgetful", 5)
        client.notify_forget("forgetful", 2)
        client.notify_forget("forgetful")
        self.assertTrue(client.flush(10))
        state = client.bank_state("forgetful")
        self.assertEqual((state.memories_since_last_compile, state.forgets_since_last_compile), (5, 3))
        self.assertEqual(client.stats().delivered_forgets, 3)

    def test_close_delivers_what_is_buffered_and_later_notifications_are_counted_undelivered(self) -> None:
        client = CompileTriggerClient(self.service.base_url, linger=10.0)  # only the close sends it
        for _ in range(7):
            client.notify_retain("closing")
        self.assertTrue(client.close(10))
        other = self.client()
        self.assertEqual(other.bank_state("closing").memories_since_last_compile, 7)
        client.notify_retain("closing")
        self.assertEqual(client.stats().undelivered, 1)

    def test_bad_notifications_are_counted_never_raised_and_never_sink_a_batch(self) -> None:
        client = self.client(linger=0.05)
        client.notify_retain("fine-1")
        client.notify_retain("not a bank id!")
        client.notify_retain("fine-2", count=0)
        client.notify_retain("fine-2", count="3")  # type: ignore[arg-type]
        client.notify_retain("fine-2", scopes=5)  # type: ignore[arg-type]
        client.notify_retain(["not", "hashable"])  # type: ignore[arg-type]
        client.notify_retain(None)  # type: ignore[arg-type]
        client.notify_retain("fine-3", 2)
        self.assertTrue(client.flush(10))
        stats = client.stats()
        self.assertEqual(stats.delivered_retains, 3)
        self.assertEqual(stats.rejected, 1 + 1 + 1 + 1 + 1 + 1)
        self.assertEqual(client.bank_state("fine-3").memories_since_last_compile, 2)

    def test_scopes_are_sent_only_when_given(self) -> None:
        client = self.client(linger=0.05)
        client.notify_retain("unscoped", 2)
        client.notify_retain("scoped", 1, scopes=["projects"])
        self.assertTrue(client.flush(10))
        stats = client.stats()
        self.assertEqual(client.bank_state("unscoped").memories_since_last_compile, 2)
        scoped = client.bank_state("scoped")
        self.assertEqual(scoped.memories_since_last_compile, 1)
        self.assertEqual([entry["scope"] for entry in scoped.dirty_scopes["scopes"]], ["projects"])
        self.assertIsNotNone(scoped.next_compile)
        self.assertEqual((stats.delivered_retains, stats.rejected), (3, 0))

    def test_synchronous_calls_answer_dataclasses(self) -> None:
        client = self.client()
        state = client.retain("sync-1", 3)
        self.assertEqual((state.bank_id, state.memories_since_last_compile, state.status), ("sync-1", 3, "idle"))
        self.assertIsNotNone(state.first_retain_at)
        self.assertEqual(client.forget("sync-1").forgets_since_last_compile, 1)
        answer = client.set_policy("sync-1", enabled=True, size_threshold=2, staleness_days=1.5)
        self.assertEqual(answer.policy, {"enabled": True, "sizeThreshold": 2, "stalenessDays": 1.5})
        self.assertEqual(answer.effective["sizeThreshold"], 2)
        self.assertEqual(client.get_policy("sync-1").policy["sizeThreshold"], 2)
        client.clear_policy("sync-1")
        client.clear_policy("sync-1")  # a bank without one is fine
        with self.assertRaises(PolicyNotFound):
            client.get_policy("sync-1")
        queued = client.compile_now("sync-1")
        self.assertIn(queued.status, ("pending", "running", "idle"))
        stats = client.queue_stats()
        self.assertEqual(stats.mode, "single")
        self.assertGreaterEqual(stats.banks, 1)
        self.assertIn("sizeThreshold", stats.defaults)
        budget = client.budget()
        self.assertIsNone(budget.tokens)
        self.assertEqual(budget.period_seconds, 3600)
        history = client.recent_compiles(limit=5, bank_id="sync-1")
        self.assertTrue(all(record.bank_id == "sync-1" for record in history.compiles))
        page = client.list_banks(limit=1)
        self.assertEqual(len(page.banks), 1)
        self.assertIsNotNone(page.next_cursor)

    def test_error_answers_map_to_their_tag(self) -> None:
        client = self.client()
        with self.assertRaises(BankNotFound) as missing:
            client.bank_state("never-seen")
        self.assertEqual((missing.exception.tag, missing.exception.status), ("BankNotFound", 404))
        self.assertIn("never-seen", missing.exception.message)
        with self.assertRaises(HttpApiDecodeError) as bad:
            client.retain("bad id!", 1)
        self.assertEqual(bad.exception.issues[0]["path"], ["bankId"])
        with self.assertRaises(HttpApiDecodeError) as bad_count:
            client.retain("ok", 0)
        self.assertIn("count", bad_count.exception.message)
        with self.assertRaises(HttpApiDecodeError):
            client.recent_compiles(outcome="maybe")
        wrong_route = CompileTriggerClient(self.service.base_url + "/nowhere")
        self.addCleanup(wrong_route.close)
        with self.assertRaises(RouteNotFound):
            wrong_route.queue_stats()

    def test_unknown_tags_map_to_the_base_class(self) -> None:
        error = error_from_answer(418, {"_tag": "Teapot", "message": "short and stout"}, "")
        self.assertIs(type(error), CompileTriggerError)
        self.assertEqual((error.tag, error.message, error.status), ("Teapot", "short and stout", 418))
        plain = error_from_answer(502, None, "<html>bad gateway</html>")
        self.assertIs(type(plain), CompileTriggerError)
        self.assertIn("502", plain.message)

    def test_keep_alive_survives_the_server_closing_idle_connections(self) -> None:
        client = self.client()
        client.retain("idle-1")
        # HTTP_KEEP_ALIVE_TIMEOUT is 5 s: a connection idle past it is not reused (or, if closed under it, retried).
        import time

        time.sleep(5.5)
        self.assertEqual(client.retain("idle-1").memories_since_last_compile, 2)

    def test_what_is_buffered_at_interpreter_exit_is_delivered(self) -> None:
        import subprocess
        import sys
        from pathlib import Path

        program = (f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[1] / 'src')!r})\n"
                   "from compile_trigger_client import CompileTriggerClient\n"
                   f"client = CompileTriggerClient({self.service.base_url!r}, linger=30)\n"
                   "client.notify_retain('at-exit', 4)\n")
        subprocess.run([sys.executable, "-c", program], check=True, timeout=30)
        self.assertEqual(self.client().bank_state("at-exit").memories_since_last_compile, 4)

    def test_asyncio_flavour(self) -> None:
        async def scenario() -> tuple[int, int]:
            async with AsyncCompileTriggerClient(self.service.base_url) as client:
                client.notify_retain("async-1", 4)
                self.assertTrue(await client.flush(10))
                state = await client.bank_state("async-1")
                stats = await client.queue_stats()
                with self.assertRaises(BankNotFound):
                    await client.bank_state("async-missing")
                return state.memories_since_last_compile, stats.banks

        memories, banks = asyncio.run(scenario())
        self.assertEqual(memories, 4)
        self.assertGreaterEqual(banks, 1)


class TokenTest(unittest.TestCase):
    def test_api_token(self) -> None:
        service = Service({"API_TOKEN": "s3cret"})
        self.addCleanup(service.stop)
        anonymous = CompileTriggerClient(service.base_url)
        self.addCleanup(anonymous.close)
        with self.assertRaises(Unauthorized) as refused:
            anonymous.queue_stats()
        self.assertEqual(refused.exception.status, 401)
        anonymous.notify_retain("tokened")
        anonymous.flush(10)
        self.assertEqual(anonymous.stats().undelivered, 1, "a refused token is not retried")
        client = CompileTriggerClient(service.base_url, token="s3cret")
        self.addCleanup(client.close)
        client.notify_retain("tokened", 2)
        self.assertTrue(client.flush(10))
        self.assertEqual(client.bank_state("tokened").memories_since_last_compile, 2)


if __name__ == "__main__":
    unittest.main()
