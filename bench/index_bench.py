"""HashIndex at scale: insert N random 64-bit hashes, then query every one of them.

Reproduce (from the repository root):
    /work/venv/bin/python bench/index_bench.py [--n 1000000] [--distances 6,10]

"One query per hash" is answered as one batched self-join (`HashIndex.pairs_within`, multi-
index hashing), the way a manifest rebuild uses it; a few single `query` calls (a full
vectorised scan) are timed too. 1% of the hashes get a planted near-duplicate so the join
has something to find; the count found is checked against the planted pairs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harvester.settings import Settings  # noqa: E402
from mirror.dedupe import HashIndex  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    default = Settings().duplicate_distance
    parser.add_argument("--distances", default=f"6,{default}")
    args = parser.parse_args()
    print(
        f"reproduce: /work/venv/bin/python bench/index_bench.py --n {args.n} "
        f"--distances {args.distances}"
    )
    rng = np.random.default_rng(2026)
    planted = args.n // 100
    base = rng.integers(0, 2**64, args.n - planted, dtype=np.uint64, endpoint=False)
    flips = np.zeros(planted, dtype=np.uint64)
    for _ in range(3):
        flips |= np.uint64(1) << rng.integers(0, 64, planted).astype(np.uint64)
    hashes = np.concatenate([base, base[:planted] ^ flips])

    start = time.perf_counter()
    index = HashIndex()
    for chunk in np.array_split(hashes, 100):  # arriving in batches, as a run adds them
        index.extend(chunk)
    build = time.perf_counter() - start
    print(f"insert {len(index):,} hashes: {build:.2f} s")

    start = time.perf_counter()
    for q in hashes[:20]:
        index.query(int(q), default)
    print(f"single query (full scan): {(time.perf_counter() - start) / 20 * 1000:.1f} ms")

    for d in (int(x) for x in args.distances.split(",")):
        start, start_cpu = time.perf_counter(), time.process_time()
        i, j, _dist = index.pairs_within(d)
        took, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        found = int(np.count_nonzero(j - i == args.n - planted))
        print(
            f"every hash queried at distance ≤{d}: {took:.1f} s wall, {cpu:.1f} s CPU "
            f"(substrings m={index._choose_substrings(d)}; {len(i):,} pairs, "
            f"{found:,}/{planted:,} planted found)"
        )


if __name__ == "__main__":
    main()
