"""Notifications never block and never raise, whatever the service does: unreachable, down then back, or more
distinct banks than the buffer holds. The caller's time per `notify_retain` is measured and printed, not asserted."""

from __future__ import annotations

import time
import unittest

from .support import Service, free_port

from compile_trigger_client import CompileTriggerClient


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class DeadServiceTest(unittest.TestCase):
    def test_notify_never_blocks_or_raises_while_nothing_listens(self) -> None:
        client = CompileTriggerClient(f"http://127.0.0.1:{free_port()}", max_attempts=3, backoff=0.01, timeout=1.0)
        timings: list[float] = []
        clock = time.perf_counter
        for i in range(20_000):
            started = clock()
            client.notify_retain(f"dead-{i % 100}")
            timings.append(clock() - started)
        print(f"\n  notify_retain with no service: p50 {percentile(timings, 0.5) * 1e6:.2f} µs, "
              f"p99 {percentile(timings, 0.99) * 1e6:.2f} µs, max {max(timings) * 1e6:.0f} µs (20,000 calls)")
        self.assertTrue(client.flush(10), "the retries end within the flush's time")
        stats = client.stats()
        self.assertEqual(stats.undelivered, 20_000)
        self.assertGreaterEqual(stats.failed_attempts, 3)
        self.assertEqual(stats.delivered_retains, 0)
        client.close(1)

    def test_after_one_batch_exhausts_its_retries_the_rest_of_the_round_is_given_up_at_once(self) -> None:
        client = CompileTriggerClient(f"http://127.0.0.1:{free_port()}", max_attempts=3, backoff=0.05)
        # One round as the sender takes it from the buffer: four batches of retains and a forget.
        client._notifier._deliver(({f"round-{i}": 1 for i in range(3500)}, {"round-0": 1}, {}))
        stats = client.stats()
        self.assertEqual(stats.undelivered, 3501)
        self.assertEqual(stats.failed_attempts, 3, "only the first batch was retried")
        client.close(1)

    def test_close_gives_up_at_its_deadline_and_counts_what_is_left(self) -> None:
        client = CompileTriggerClient(f"http://127.0.0.1:{free_port()}", max_attempts=1000, backoff=0.05)
        client.notify_retain("stuck", 5)
        started = time.monotonic()
        self.assertFalse(client.close(0.5))
        self.assertLess(time.monotonic() - started, 5.0)
        self.assertEqual(client.stats().undelivered, 5)

    def test_retains_buffered_while_the_service_is_down_arrive_once_it_is_up(self) -> None:
        port = free_port()
        client = CompileTriggerClient(f"http://127.0.0.1:{port}", max_attempts=100, backoff=0.05, max_backoff=0.2)
        self.addCleanup(client.close, 1)
        for _ in range(30):
            client.notify_retain("late", 2)
        time.sleep(0.3)  # a few failed attempts
        service = Service({"COMPILE_SIZE_THRESHOLD": "1000"}, port=port)
        self.addCleanup(service.stop)
        self.assertTrue(client.flush(20))
        self.assertEqual(client.bank_state("late").memories_since_last_compile, 60)
        stats = client.stats()
        self.assertEqual((stats.delivered_retains, stats.undelivered), (60, 0))
        self.assertGreater(stats.failed_attempts, 0)

    def test_a_full_buffer_keeps_merging_known_banks_and_counts_new_ones(self) -> None:
        client = CompileTriggerClient(f"http://127.0.0.1:{free_port()}", max_buffered_keys=10, linger=60,
                                      max_attempts=1)
        for i in range(20):
            client.notify_retain(f"full-{i}")
        for _ in range(5):
            client.notify_retain("full-0")  # a bank already buffered still merges
        stats = client.stats()
        self.assertEqual((stats.buffered, stats.overflowed), (15, 10))
        client.close(2)
        self.assertEqual(client.stats().undelivered, 15)


if __name__ == "__main__":
    unittest.main()
