"""Memory of the local tier: does a 64 MB tier cost about 64 MB?

    python -m bench.memory

Writes 200,000 distinct 2 KB entries through the real write path (`Chain.set` with a
`codec` entry, as the proxy stores a response) into a local tier capped at 64 MB, and
compares the process's resident memory before and after. Eviction keeps only what fits,
so the growth should stay near the cap; the target is < 100 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import sys

from app.background import Background
from app.codec import new_entry
from app.config import LocalTierSettings
from app.metrics import Metrics
from app.tiers.chain import Chain
from app.tiers.guarded import GuardedTier
from app.tiers.local import LocalTier

MB = 1024 * 1024
TARGET_GROWTH_MB = 100.0


def status_mb(field: str) -> float:
    """A /proc/self/status memory field (VmRSS, VmHWM) in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # the kernel reports kB
    raise RuntimeError(f"{field} not in /proc/self/status")


def body_of(number: int, size: int) -> bytes:
    """A distinct, JSON-shaped body of exactly `size` bytes."""
    head = b'{"id":"chatcmpl-%012d","object":"chat.completion","choices":[{"message":{"content":"' % number
    tail = b'"}}]}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


async def fill(chain: Chain, entries: int, size: int) -> None:
    for number in range(entries):
        key = hashlib.sha256(b"bench-memory-%d" % number).hexdigest()  # the shape of a real key
        await chain.set(key, new_entry(body_of(number, size), "application/json", 3600.0))


async def measure(entries: int, size: int, cap_mb: int) -> bool:
    tier = LocalTier("local", max_entries=10_000_000, max_bytes=cap_mb * MB)
    metrics = Metrics()
    chain = Chain([GuardedTier(tier, LocalTierSettings(type="local"), metrics)], Background())
    # Warm the write path once so imports and metric children are not counted as growth.
    await fill(chain, 10, size)
    await tier.clear(None)
    gc.collect()
    before = status_mb("VmRSS")
    await fill(chain, entries, size)
    gc.collect()
    after, peak = status_mb("VmRSS"), status_mb("VmHWM")
    stats = await tier.stats()
    growth = after - before
    held = stats.entries or 0
    print(f"wrote {entries:,} entries of {size:,} B into a {cap_mb} MB local tier")
    print(f"entries held: {held:,} ({(stats.bytes or 0) / MB:.1f} MB charged against the cap)")
    print(f"RSS before: {before:.1f} MB, after: {after:.1f} MB, growth: {growth:.1f} MB (peak RSS {peak:.1f} MB)")
    if held:
        print(f"real cost per held entry: {growth * MB / held:,.0f} B for a {size:,} B body")
    passed = growth < TARGET_GROWTH_MB
    print(f"{'PASS' if passed else 'FAIL'}: growth {growth:.1f} MB, target < {TARGET_GROWTH_MB:.0f} MB")
    return passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=2048, help="body bytes per entry")
    parser.add_argument("--cap-mb", type=int, default=64, help="the local tier's max_bytes, in MB")
    args = parser.parse_args(argv)
    return 0 if asyncio.run(measure(args.entries, args.size, args.cap_mb)) else 1


if __name__ == "__main__":
    sys.exit(main())
