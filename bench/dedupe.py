"""Near-duplicate pair search: ours against imagededup and a naive loop, measured side by side in one run.

    .venv/bin/python bench/dedupe.py                         # the full run: ~4-11 min on 2 cores, nearly
                                                             # all of it imagededup's BK-tree (its tqdm bar
                                                             # on stderr shows progress)
    .venv/bin/python bench/dedupe.py --imagededup-methods brute_force_cython   # ~35 s, no BK-tree
    .venv/bin/python bench/dedupe.py --imagededup-n 2000     # a shorter BK-tree comparison

1. 100k random 64-bit hashes with 1000 planted near-duplicate pairs (1..threshold bit flips), at
   thresholds 10 and 4: our time ("auto", and each method), pairs found, recall of the planted pairs.
2. imagededup 0.3 (`imagededup.methods.hashing.Hashing.find_duplicates(encoding_map=hex strings,
   max_distance_threshold=...)`) on 5k such hashes (100 planted pairs) at threshold 10: its BK-tree
   search and its default search on Linux ("brute_force_cython"), both with their default cpu_count()
   worker processes (2 on the dev box). Pair sets must equal ours; the speed ratio is printed.
   imagededup is a benchmark-only dependency (`.venv/bin/pip install imagededup`, never a project
   dependency); without it that part is skipped with a message.
3. A naive pure-Python O(n^2) loop ((a ^ b).bit_count() over every pair) on 10k such hashes (200 planted
   pairs), threshold 10.

Times are wall-clock seconds of one run (best of 3 for ours where it is cheap).
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.dedupe import near_duplicate_pairs  # noqa: E402


def say(message: str) -> None:
    print(message, flush=True)


def planted_hashes(n: int, planted: int, threshold: int, seed: int) -> tuple[np.ndarray, set[tuple[int, int]]]:
    """n random 64-bit hashes; `planted` disjoint pairs where one is the other with 1..threshold bits flipped."""
    rng = random.Random(seed)
    hashes = [rng.getrandbits(64) for _ in range(n)]
    slots = rng.sample(range(n), 2 * planted)
    pairs = set()
    for k in range(planted):
        base, copy = slots[2 * k], slots[2 * k + 1]
        value = hashes[base]
        for bit in rng.sample(range(64), rng.randint(1, threshold)):
            value ^= 1 << bit
        hashes[copy] = value
        pairs.add((min(base, copy), max(base, copy)))
    return np.array(hashes, dtype=np.uint64), pairs


def timed(function, repeat: int = 1):
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def as_set(pairs: np.ndarray) -> set[tuple[int, int]]:
    return {(int(i), int(j)) for i, j in pairs}


def ours_at_scale(n: int, planted: int) -> None:
    say(f"== 1. ours on {n:,} random 64-bit hashes + {planted} planted near-duplicate pairs")
    for threshold in (10, 4):
        hashes, truth = planted_hashes(n, planted, threshold, seed=threshold)
        repeat = 3 if threshold < 8 else 1
        t_auto, pairs = timed(lambda h=hashes, t=threshold: near_duplicate_pairs(h, t), repeat=repeat)
        found = as_set(pairs)
        recall = len(truth & found) / len(truth)
        say(
            f"threshold {threshold:2d}: auto {t_auto:7.3f} s, {len(pairs):,} pairs "
            f"({len(found - truth)} besides the planted ones), planted recall {recall:.1%}"
        )
        assert recall == 1.0, "a planted pair was missed"
        for method in ("mih", "blocked"):
            t, other = timed(lambda h=hashes, t=threshold, m=method: near_duplicate_pairs(h, t, m))
            assert np.array_equal(other, pairs), f"{method} disagrees with auto"
            say(f"              {method:7s} {t:7.3f} s (same pairs)")


def imagededup_pairs(hashes: np.ndarray, threshold: int, search_method: str) -> set[tuple[int, int]]:
    from imagededup.methods.hashing import Hashing  # imported (with torch) before the clock starts

    encoding_map = {str(i): f"{int(h):016x}" for i, h in enumerate(hashes)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "num_enc_workers has no effect since encodings are already provided"
        result = Hashing(verbose=True).find_duplicates(
            encoding_map=encoding_map, max_distance_threshold=threshold, search_method=search_method
        )
    return {(min(int(a), int(b)), max(int(a), int(b))) for a, dups in result.items() for b in dups}


def against_imagededup(hashes: np.ndarray, threshold: int, methods: list[str]) -> None:
    n = len(hashes)
    say(f"\n== 2. imagededup against ours: {n:,} hashes, threshold {threshold}")
    try:
        import imagededup
        import imagededup.methods.hashing  # noqa: F401  (pulls in torch: seconds, kept out of the timing)
    except ImportError as error:
        say(f"SKIPPED: imagededup is not importable ({error}); benchmark only: .venv/bin/pip install imagededup")
        return
    for name in ("imagededup", "imagededup.handlers.search.retrieval", "imagededup.methods.hashing"):
        logging.getLogger(name).setLevel(logging.WARNING)  # its INFO lines would bury the figures
    t_ours, pairs = timed(lambda: near_duplicate_pairs(hashes, threshold), repeat=3)
    ours = as_set(pairs)
    say(f"ours (auto): {t_ours:.4f} s, {len(ours)} pairs")
    for method in methods:
        say(f"imagededup {imagededup.__version__} search_method={method!r}: running (progress bar on stderr)...")
        t, theirs = timed(lambda m=method: imagededup_pairs(hashes, threshold, m))
        assert theirs == ours, f"imagededup {method} found {len(theirs)} pairs, ours {len(ours)}: sets differ"
        say(
            f"imagededup {method:18s}: {t:8.2f} s, {len(theirs)} pairs (identical to ours); "
            f"ours is {t / t_ours:,.0f}x faster"
        )


def naive_loop(hashes: np.ndarray, threshold: int) -> set[tuple[int, int]]:
    values = [int(h) for h in hashes]
    found = set()
    for i, a in enumerate(values):
        for j in range(i + 1, len(values)):
            if (a ^ values[j]).bit_count() <= threshold:
                found.add((i, j))
    return found


def against_naive(hashes: np.ndarray, threshold: int) -> None:
    n = len(hashes)
    say(f"\n== 3. naive pure-Python O(n^2) loop against ours: {n:,} hashes, threshold {threshold}")
    t_ours, pairs = timed(lambda: near_duplicate_pairs(hashes, threshold), repeat=3)
    say(f"ours (auto): {t_ours:.4f} s, {len(pairs)} pairs")
    say(f"naive loop over {n * (n - 1) // 2:,} pairs: running...")
    t, theirs = timed(lambda: naive_loop(hashes, threshold))
    assert theirs == as_set(pairs), "naive loop and ours differ"
    say(f"naive loop: {t:.2f} s, {len(theirs)} pairs (identical to ours); ours is {t / t_ours:,.0f}x faster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="hashes for part 1")
    parser.add_argument("--planted", type=int, default=1000, help="planted pairs for part 1")
    parser.add_argument("--imagededup-n", type=int, default=5000, help="hashes for part 2 (0: skip)")
    parser.add_argument(
        "--imagededup-methods",
        default="brute_force_cython,bktree",
        help="imagededup search methods to time, comma separated",
    )
    parser.add_argument("--naive-n", type=int, default=10_000, help="hashes for part 3 (0: skip)")
    args = parser.parse_args()

    start = time.perf_counter()
    ours_at_scale(args.n, args.planted)
    if args.imagededup_n:  # 1 planted pair per 50 hashes, so that the compared pair sets are not empty
        hashes, _ = planted_hashes(args.imagededup_n, args.imagededup_n // 50, 10, seed=1)
        against_imagededup(hashes, 10, args.imagededup_methods.split(","))
    if args.naive_n:
        hashes, _ = planted_hashes(args.naive_n, args.naive_n // 50, 10, seed=2)
        against_naive(hashes, 10)
    say(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
