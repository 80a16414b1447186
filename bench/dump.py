"""Dump backfill throughput: the streaming filter pass against json.loads on every line, on one core.

Generates a month of dumps in a temporary folder (fakes.dumps.generate_month: ~1 KB comment lines and ~2 KB
post lines from many subreddits, compressed ~9x with a 2 GiB window, with planted matches for a Go-Toubun job),
then measures, in the same run and pinned to one CPU:

  zstd only   decompression and nothing else: the ceiling
  filter      tasks.dump.scan with the job's line filters: posts of its subreddits, then comments of the
              threads found in the posts (what backfill does before it harvests)
  baseline    stream_reader + TextIOWrapper + json.loads on every line, then the same checks on the records
  backfill    the whole `yotsuba backfill` work into a fresh catalog (harvest and catalog writes; no network)

Figures: MB/s of decompressed NDJSON, lines/s, matches, and the ratio to the baseline; best of --repeat. MB/s is
given per second of CPU time of this process (pinned to one core, that is the core's throughput whatever else
the machine runs) and per second of wall time (the same on an idle machine).

    .venv/bin/python bench/dump.py                     # 300 MB of NDJSON, about 30 s with the generation
    .venv/bin/python bench/dump.py --mb 2000 --keep /tmp/yotsuba-dumps   # keeps (and reuses) the files
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fakes.dumps import GOTOUBUN_JOB, generate_month  # noqa: E402
from tasks import catalog  # noqa: E402
from tasks.dump import MAX_WINDOW_SIZE, Backfiller, FileProgress, LineFilter, query_matches, scan  # noqa: E402
from tasks.imgur import ImgurClient  # noqa: E402
from tasks.jobs import CommentLinks, parse_job  # noqa: E402
from tasks.scrape import Harvester  # noqa: E402

JOB = parse_job(GOTOUBUN_JOB)
POST_SUBS = {s.subreddit.lower() for _, s in JOB.iter_sources()}
THREAD_SUBS = {s.subreddit.lower() for _, s in JOB.iter_sources() if isinstance(s, CommentLinks)}
QUERIES = {s.query for _, s in JOB.iter_sources() if isinstance(s, CommentLinks)}


def zstd_only(rs: Path, rc: Path) -> tuple[int, int, int]:
    total = 0
    for path in (rs, rc):
        with path.open("rb") as fh:
            reader = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW_SIZE).stream_reader(fh)
            while chunk := reader.read(1 << 20):
                total += len(chunk)
    return total, 0, 0


def filter_pass(rs: Path, rc: Path) -> tuple[int, int, int]:
    """Posts of the job's subreddits, the threads among them, then the comments of those threads."""
    threads: set[str] = set()
    posts, comments = FileProgress(rs), FileProgress(rc)
    for _, record in scan(rs, LineFilter(POST_SUBS), posts):
        if record["subreddit"].lower() in THREAD_SUBS and any(query_matches(q, record) for q in QUERIES):
            threads.add(record["id"])
    for _ in scan(rc, LineFilter(THREAD_SUBS, threads), comments):
        pass
    return posts.bytes + comments.bytes, posts.lines + comments.lines, posts.matches + comments.matches


def baseline(rs: Path, rc: Path) -> tuple[int, int, int]:
    """The plain way: every line decoded and parsed with the standard library, then checked."""
    size = lines = matches = 0
    threads: set[str] = set()
    for path, comments in ((rs, False), (rc, True)):
        with path.open("rb") as fh:
            reader = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW_SIZE).stream_reader(fh)
            for line in io.TextIOWrapper(reader, encoding="utf-8"):
                size += len(line.encode()) if not line.isascii() else len(line)
                lines += 1
                record = json.loads(line)
                sub = str(record.get("subreddit") or "").lower()
                if comments:
                    matches += sub in THREAD_SUBS and str(record.get("link_id"))[3:] in threads
                elif sub in POST_SUBS:
                    matches += 1
                    if sub in THREAD_SUBS and any(query_matches(q, record) for q in QUERIES):
                        threads.add(record["id"])
    return size, lines, matches


def backfill(rs: Path, rc: Path) -> tuple[int, int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        conn = catalog.connect(Path(tmp) / "catalog.sqlite")
        try:
            summary = Backfiller(conn, JOB, Harvester(JOB, ImgurClient(None))).run([rs, rc])
        finally:
            conn.close()
    return summary.bytes, sum(f.lines for f in summary.files), sum(f.matches for f in summary.files)


def measure(fn, rs: Path, rc: Path, repeat: int) -> tuple[float, float, int, int, int]:
    """Best CPU seconds and best wall seconds of `repeat` runs, and what the pass counted."""
    cpu = wall = float("inf")
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        size, lines, matches = fn(rs, rc)
        cpu = min(cpu, time.process_time() - started_cpu)
        wall = min(wall, time.perf_counter() - started)
    return cpu, wall, size, lines, matches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=300, help="decompressed MB of NDJSON (1/4 posts, 3/4 comments)")
    parser.add_argument("--match-fraction", type=float, default=0.01, help="lines in the job's subreddits")
    parser.add_argument("--repeat", type=int, default=2, help="best of this many runs per measurement")
    parser.add_argument("--keep", type=Path, help="generate into (or reuse from) this folder")
    parser.add_argument("--cpu", type=int, default=None, help="the CPU to pin to (default: the first allowed)")
    args = parser.parse_args()

    allowed = sorted(os.sched_getaffinity(0))
    cpu = args.cpu if args.cpu is not None else allowed[0]
    os.sched_setaffinity(0, {cpu})  # one core: the figure the issue asks for
    folder = args.keep or Path(tempfile.mkdtemp(prefix="yotsuba-dumps-"))
    rs, rc = folder / "RS_2019-03.zst", folder / "RC_2019-03.zst"
    if not (rs.exists() and rc.exists()):
        started = time.perf_counter()
        month = generate_month(folder, submissions_bytes=int(args.mb * 1e6 / 4),
                               comments_bytes=int(args.mb * 3e6 / 4), match_fraction=args.match_fraction)
        print(f"generated {(month.submissions.bytes + month.comments.bytes) / 1e6:.0f} MB of NDJSON "
              f"({month.submissions.lines + month.comments.lines:,} lines, "
              f"{(rs.stat().st_size + rc.stat().st_size) / 1e6:.0f} MB compressed) in "
              f"{time.perf_counter() - started:.1f} s; planted {month.planted}")
    print(f"{folder}: {rs.name} {rs.stat().st_size / 1e6:.1f} MB, {rc.name} {rc.stat().st_size / 1e6:.1f} MB "
          f"compressed; pinned to CPU {cpu}; best of {args.repeat}\n")

    results = {name: measure(fn, rs, rc, args.repeat) for name, fn in
               (("zstd only", zstd_only), ("filter", filter_pass), ("baseline", baseline), ("backfill", backfill))}
    base_rate = results["baseline"][2] / results["baseline"][0]
    print(f"{'pass':<10} {'cpu s':>7} {'MB/s cpu':>9} {'wall s':>7} {'MB/s wall':>10} {'lines/s cpu':>12} "
          f"{'matches':>8} {'x baseline':>11}")
    for name, (cpu, wall, size, lines, matches) in results.items():
        print(f"{name:<10} {cpu:>7.2f} {size / cpu / 1e6:>9.0f} {wall:>7.2f} {size / wall / 1e6:>10.0f} "
              f"{lines / cpu if lines else 0:>12,.0f} {matches:>8,} {size / cpu / base_rate:>10.1f}x")
    cpu, wall, size = results["filter"][:3]
    rate = size / cpu / 1e6
    print(f"\nfilter pass: {rate:.0f} MB/s of NDJSON per core-second ({size / wall / 1e6:.0f} MB/s wall); "
          f"{'meets' if rate >= 100 else 'MISSES'} the 100 MB/s target; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if not args.keep:
        for path in (rs, rc):
            path.unlink()
        folder.rmdir()


if __name__ == "__main__":
    main()
