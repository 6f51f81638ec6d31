"""Retains through the Python client: the caller's cost of `notify_retain` (it only buffers) and what reaches the
service through the background sender over kept-alive connections.

Usage: python3 bench_client.py [NOTIFIES] [BANKS] [--url URL] [--reference DIR]
  Without --url it starts the service from dist/ (`node dist/bin.js`) with compiles off (COMPILE_DEFAULT_ENABLED=false).
  --reference DIR also runs DIR/bench_notify.py (the original module's benchmark) with the same NOTIFIES and BANKS,
  in this run, and prints the two side by side.
Prints human lines, then one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from array import array
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "src"))
sys.path.insert(0, str(HERE))

from compile_trigger_client import CompileTriggerClient  # noqa: E402


def percentile(ordered: list[int], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def caller_latencies(client: CompileTriggerClient, ids: list[str], n: int) -> dict[str, float]:
    """Each call timed alone (`perf_counter_ns` around it): p50, p99, p99.9, max in µs."""
    clock = time.perf_counter_ns
    samples = array("q", bytes(8 * n))
    banks = len(ids)
    notify = client.notify_retain
    for i in range(n):
        started = clock()
        notify(ids[i % banks])
        samples[i] = clock() - started
    ordered = sorted(samples)
    return {f"{name}_us": round(percentile(ordered, q) / 1000, 3)
            for name, q in (("p50", 0.5), ("p99", 0.99), ("p999", 0.999))} | {"max_us": round(ordered[-1] / 1000, 1)}


def throughput(client: CompileTriggerClient, ids: list[str], n: int) -> dict[str, float]:
    """Untimed calls: the caller's rate, then the time until the service has counted them all (`flush`)."""
    before = client.stats()
    banks = len(ids)
    notify = client.notify_retain
    started = time.perf_counter()
    for i in range(n):
        notify(ids[i % banks])
    called = time.perf_counter()
    if not client.flush(120):
        raise SystemExit("the service did not take the retains within 120 s")
    flushed = time.perf_counter()
    after = client.stats()
    delivered = after.delivered_retains - before.delivered_retains
    if delivered != n or after.undelivered != before.undelivered:
        raise SystemExit(f"delivered {delivered} of {n} retains; stats: {after}")
    return {
        "caller_notifies_per_s": round(n / (called - started)),
        "caller_ns_per_op": round((called - started) / n * 1e9, 1),
        "delivered_retains_per_s": round(n / (flushed - started)),
        "batches": after.batches - before.batches,
        "items_per_s": round((after.items - before.items) / (flushed - started)),
        "flush_after_last_call_ms": round((flushed - called) * 1000, 1),
    }


def start_service() -> tuple[subprocess.Popen[bytes], str]:
    from tests.support import Service

    # Counting only: compiles (the dry-run engine's log lines) would measure the engine, not the retains.
    service = Service({"COMPILE_DEFAULT_ENABLED": "false"})
    return service, service.base_url  # type: ignore[return-value]


def reference(directory: str, n: int, banks: int) -> dict[str, object]:
    out = subprocess.run([sys.executable, os.path.join(directory, "bench_notify.py"), str(n), str(banks)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notifies", nargs="?", type=int, default=1_000_000)
    parser.add_argument("banks", nargs="?", type=int, default=1000)
    parser.add_argument("--url")
    parser.add_argument("--reference")
    args = parser.parse_args()
    service = None
    url = args.url
    if url is None:
        service, url = start_service()
    try:
        ids = [f"bench-{i}" for i in range(args.banks)]
        with CompileTriggerClient(url) as client:
            throughput(client, ids, min(args.notifies, 50_000))  # warm-up: connections, dict sizes
            latencies = caller_latencies(client, ids, args.notifies)
            if not client.flush(120):
                raise SystemExit("the service did not take the timed retains within 120 s")
            rates = throughput(client, ids, args.notifies)
    finally:
        if service is not None:
            service.stop()  # type: ignore[attr-defined]
    result: dict[str, object] = {"impl": "python-client", "python": sys.version.split()[0], "notifies": args.notifies,
                                 "banks": args.banks, **latencies, **rates}
    print(f"notify_retain on the caller's thread: p50 {latencies['p50_us']} µs, p99 {latencies['p99_us']} µs, "
          f"p99.9 {latencies['p999_us']} µs, max {latencies['max_us']} µs")
    print(f"caller: {rates['caller_notifies_per_s']:,} notifies/s ({rates['caller_ns_per_op']} ns each); "
          f"delivered to the service: {rates['delivered_retains_per_s']:,} retains/s "
          f"({rates['items_per_s']:,} bank items/s, {rates['batches']} batches)")
    if args.reference:
        ref = reference(args.reference, args.notifies, args.banks)
        result["reference"] = ref
        print(f"reference module's notify_retain (in memory, no service): {ref['ns_per_op']} ns each, "
              f"{ref['ops_per_s']:,}/s; the client's is {rates['caller_ns_per_op'] / ref['ns_per_op']:.2f}× its time")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
