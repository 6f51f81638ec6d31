"""The drop-in `compile_trigger` module against the original module's own semantics, where they still apply with the
service doing the work: thresholds from the config, `pending_banks`, `state`, `drain`, `start` / `stop` — and the
original's known defects that must not come back (retains lost during a compile, `drain` returning early, a restart
after `stop`)."""

from __future__ import annotations

import asyncio
import json
import time
import unittest

from .support import Receiver, Service

from compile_trigger_client import CompileTriggerClient
from compile_trigger_client.compile_trigger import BankCompileState, CompileQueue, CompileTriggerConfig


class SlowReceiver(Receiver):
    """Answers after `delay` seconds (per bank, default 0)."""

    def __init__(self) -> None:
        self.delays: dict[str, float] = {}
        super().__init__(self._answer)

    def _answer(self, call: dict) -> tuple[int, bytes]:
        bank_id = call["json"]["bankId"]
        time.sleep(self.delays.get(bank_id, 0.0))
        return 200, json.dumps({"bankId": bank_id, "pagesUpdated": 1}).encode()


class ShimTest(unittest.TestCase):
    receiver: SlowReceiver
    service: Service

    @classmethod
    def setUpClass(cls) -> None:
        cls.receiver = SlowReceiver()
        cls.service = Service({"COMPILE_WEBHOOK_URL": cls.receiver.url, "COMPILE_CONCURRENCY": "1"})

    @classmethod
    def tearDownClass(cls) -> None:
        cls.service.stop()
        cls.receiver.close()

    def queue(self, config: CompileTriggerConfig | None = CompileTriggerConfig(size_threshold=3)) -> CompileQueue:
        client = CompileTriggerClient(self.service.base_url)
        self.addCleanup(client.close)
        return CompileQueue(object(), config, client=client)

    def calls_for(self, bank_id: str) -> list[dict]:
        return [call for call in self.receiver.calls if call["json"]["bankId"] == bank_id]

    def test_the_config_threshold_queues_a_compile_on_the_nth_retain(self) -> None:
        async def scenario() -> None:
            queue = self.queue()
            await queue.start()
            queue.notify_retain("shim-size")
            queue.notify_retain("shim-size")
            await queue.drain()
            self.assertEqual(queue.state["shim-size"].memories_since_last_compile, 2)
            self.assertEqual(self.calls_for("shim-size"), [])
            queue.notify_retain("shim-size")
            await queue.drain(timeout=10)
            [call] = self.calls_for("shim-size")
            self.assertEqual((call["json"]["reason"], call["json"]["memories"]), ("size", 3))
            state = queue.state["shim-size"]
            self.assertIsInstance(state, BankCompileState)
            self.assertEqual(state.memories_since_last_compile, 0)
            self.assertIsNotNone(state.last_compile_at)
            self.assertEqual(queue.pending_banks, set())
            await queue.stop()

        asyncio.run(scenario())

    def test_without_a_config_the_service_defaults_apply(self) -> None:
        async def scenario() -> None:
            queue = self.queue(None)
            for _ in range(3):
                queue.notify_retain("shim-defaults")
            await queue.drain()
            self.assertEqual(queue.state["shim-defaults"].memories_since_last_compile, 3)
            self.assertEqual(queue.client.bank_state("shim-defaults").policy, None)

        asyncio.run(scenario())

    def test_drain_returns_at_once_when_nothing_is_pending(self) -> None:
        async def scenario() -> float:
            queue = self.queue()
            started = time.monotonic()
            await queue.drain(timeout=0.5)
            queue.notify_retain("shim-idle")
            await queue.drain(timeout=5)
            return time.monotonic() - started

        self.assertLess(asyncio.run(scenario()), 5)

    def test_drain_waits_for_the_compile_to_finish_and_retains_during_it_are_kept(self) -> None:
        self.receiver.delays["shim-slow"] = 1.0

        async def scenario() -> None:
            queue = self.queue()
            for _ in range(3):
                queue.notify_retain("shim-slow")
            await asyncio.sleep(0.5)  # the compile is running
            queue.notify_retain("shim-slow")
            queue.notify_retain("shim-slow")
            await queue.drain(timeout=15)
            [call] = self.calls_for("shim-slow")
            self.assertIn("status", call, "drain returned after the compile's answer")
            self.assertEqual(call["json"]["memories"], 3)
            self.assertEqual(queue.state["shim-slow"].memories_since_last_compile, 2, "retains during it kept")

        asyncio.run(scenario())

    def test_drain_times_out_like_the_original(self) -> None:
        self.receiver.delays["shim-timeout"] = 2.0

        async def scenario() -> None:
            queue = self.queue()
            for _ in range(3):
                queue.notify_retain("shim-timeout")
            with self.assertRaises(asyncio.TimeoutError):
                await queue.drain(timeout=0.5)
            await queue.drain(timeout=15)

        asyncio.run(scenario())

    def test_pending_banks_are_those_waiting_not_those_compiling(self) -> None:
        self.receiver.delays["shim-busy"] = 3.0

        async def scenario() -> None:
            queue = self.queue()
            for _ in range(3):
                queue.notify_retain("shim-busy")
            # Once shim-busy runs, COMPILE_CONCURRENCY=1 keeps the next one waiting (a loaded machine takes a while).
            deadline = time.monotonic() + 10
            while "shim-busy" not in queue.state or queue.state["shim-busy"].status != "running":
                self.assertLess(time.monotonic(), deadline, "shim-busy did not start compiling within 10 s")
                await asyncio.sleep(0.05)
            for _ in range(3):
                queue.notify_retain("shim-waiting")
            self.assertEqual(queue.pending_banks, {"shim-waiting"})
            self.assertEqual(queue.state["shim-busy"].status, "running")
            await queue.drain(timeout=15)
            self.assertEqual(queue.pending_banks, set())

        asyncio.run(scenario())

    def test_stop_then_start_keeps_working(self) -> None:
        async def scenario() -> None:
            queue = self.queue()
            await queue.start()
            await queue.start()  # idempotent, as the original
            queue.notify_retain("shim-restart")
            await queue.stop(timeout=5)
            await queue.stop()  # a stopped queue: nothing to do
            await queue.start()
            queue.notify_retain("shim-restart")
            queue.notify_retain("shim-restart")
            await queue.drain(timeout=10)
            self.assertEqual(len(self.calls_for("shim-restart")), 1)
            await queue.close()

        asyncio.run(scenario())

    def test_notify_retain_never_blocks_the_event_loop(self) -> None:
        async def scenario() -> None:
            queue = CompileQueue(None, CompileTriggerConfig(), base_url="http://127.0.0.1:9")  # nothing listens
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0)

            task = asyncio.create_task(ticker())
            for i in range(2000):
                queue.notify_retain(f"nowhere-{i % 10}")
                if i % 100 == 0:
                    await asyncio.sleep(0)
            task.cancel()
            self.assertGreater(ticks, 0)
            queue.client.close(0.2)

        asyncio.run(scenario())

    def test_should_trigger_is_the_original_rule(self) -> None:
        from datetime import datetime, timedelta, timezone

        config = CompileTriggerConfig(size_threshold=5, staleness_days=1, staleness_min_memories=2)
        self.assertTrue(BankCompileState("b", 5).should_trigger(config))
        self.assertFalse(BankCompileState("b", 4).should_trigger(config))
        old = datetime.now(timezone.utc) - timedelta(days=2)
        self.assertTrue(BankCompileState("b", 2, old).should_trigger(config))
        self.assertFalse(BankCompileState("b", 1, old).should_trigger(config))
        self.assertFalse(BankCompileState("b", 2, None).should_trigger(config))


if __name__ == "__main__":
    unittest.main()
