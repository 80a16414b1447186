"""Download throughput: our aiohttp downloader against a plain sequential `requests` loop.

A local image host (its own process) answers each request after a fixed latency. Both clients fetch
the same kind of images from it in the same run; the figures printed are images/s for each, their
ratio, and ours as a fraction of the ideal (requests in flight / latency). Ours runs with the settings that
ship (YOTSUBA_DOWNLOAD_CONCURRENCY 16, ..._PER_HOST 8); the images are spread over two hosts (127.0.0.1 and
127.0.0.2, the same server), as a job's are over i.redd.it and i.imgur.com, so both limits bind.

    .venv/bin/python bench/download.py                       # 1000 images of ~100 KB, 50 ms, shipped limits
    .venv/bin/python bench/download.py --images 300 --baseline-images 100
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows.settings import Settings  # noqa: E402
from tasks import catalog  # noqa: E402
from tasks.catalog import Candidate  # noqa: E402
from tasks.download import DownloadConfig, download_job  # noqa: E402
from tasks.store import ImageStore  # noqa: E402


def start_host(images: int, size: int, latency: float, addresses: list[str]) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "fakes.imagehost", "--images", str(images), "--size", str(size),
         "--latency", str(latency), "--addresses", ",".join(addresses)],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1],
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def sequential_requests(urls: list[str], out_dir: Path) -> float:
    """The reference project's approach: one requests.get after another, each written to a file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for url in urls:
        response = requests.get(url, timeout=30)
        response.raise_for_status()
        (out_dir / hashlib.sha256(url.encode()).hexdigest()).write_bytes(response.content)
    return time.perf_counter() - started


def bare_aiohttp(urls: list[str], config: DownloadConfig) -> float:
    """The floor of any aiohttp client: the same limits, bodies read and dropped, nothing else."""
    import asyncio

    import aiohttp

    async def run() -> None:
        queue = list(reversed(urls))
        connector = aiohttp.TCPConnector(limit=config.concurrency, limit_per_host=config.per_host)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def worker() -> None:
                while queue:
                    async with session.get(queue.pop()) as response:
                        await response.read()

            await asyncio.gather(*(worker() for _ in range(config.concurrency)))

    started = time.perf_counter()
    asyncio.run(run())
    return time.perf_counter() - started


def ours(urls: list[str], data_dir: Path, config: DownloadConfig) -> tuple[float, dict]:
    conn = catalog.connect(data_dir / "catalog.sqlite")
    with catalog.transaction(conn):
        catalog.insert_candidates(conn, [
            Candidate(job="bench", label="x", source_kind="subreddit_posts", source_key="k", subreddit="s",
                      post_id=str(i), url=url) for i, url in enumerate(urls)])
    started = time.perf_counter()
    summary = download_job(conn, ImageStore(data_dir), "bench", config)
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed, summary.to_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--baseline-images", type=int, default=200,
                        help="the sequential loop is slow: its rate is measured on this many images")
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--hosts", type=int, default=2, help="loopback addresses the images are spread over")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of (bare aiohttp, ours) back to back; medians are printed, ranges beside them")
    args = parser.parse_args()

    shipped = Settings(_env_file=None).download_config()
    config = dataclasses.replace(shipped, allow_private_hosts=True)
    addresses = [f"127.0.0.{n + 1}" for n in range(args.hosts)]
    process, base = start_host(args.images, args.size, args.latency, addresses)
    port = base.rsplit(":", 1)[1]
    try:
        urls = [f"http://{addresses[i % len(addresses)]}:{port}/img/{i}.jpg" for i in range(args.images)]
        bare_times, ours_times = [], []
        with tempfile.TemporaryDirectory() as tmp:
            for round_ in range(args.rounds):  # back to back, so a busy moment of the machine hits both
                bare_times.append(bare_aiohttp(urls, config))
                seconds, summary = ours(urls, Path(tmp) / f"data{round_}", config)
                ours_times.append(seconds)
                assert summary["candidates"]["downloaded"] == args.images, f"not all downloaded: {summary}"
            base_seconds = sequential_requests(urls[: args.baseline_images], Path(tmp) / "sequential")
    finally:
        process.terminate()
        process.wait()

    ours_rates = sorted(args.images / t for t in ours_times)
    bare_rates = sorted(args.images / t for t in bare_times)
    ratios = sorted(b / o for o, b in zip(ours_times, bare_times, strict=True))
    ours_rate, bare_rate = statistics.median(ours_rates), statistics.median(bare_rates)
    base_rate = args.baseline_images / base_seconds
    in_flight = min(config.concurrency, config.per_host * len(addresses))
    ideal = in_flight / args.latency
    kilobytes = summary["bytes"] / args.images / 1000
    print(f"images: {args.images} of ~{kilobytes:.0f} KB over {len(addresses)} hosts, latency "
          f"{args.latency * 1000:.0f} ms, concurrency {config.concurrency}, per host {config.per_host} (the shipped "
          f"settings): at most {in_flight} in flight; medians of {args.rounds} rounds [range]")
    print(f"ours (aiohttp, validate + sha256 + store + catalog): {ours_rate:6.1f} images/s "
          f"[{ours_rates[0]:.0f}-{ours_rates[-1]:.0f}]")
    print(f"bare aiohttp, same limits, bodies dropped:      {bare_rate:6.1f} images/s "
          f"[{bare_rates[0]:.0f}-{bare_rates[-1]:.0f}]")
    print(f"sequential requests loop ({args.baseline_images} images):      {base_rate:6.1f} images/s")
    print(f"ratio ours / sequential:                       {ours_rate / base_rate:6.1f}x   (target >= 10x)")
    print(f"ratio ours / bare aiohttp, per round:          {statistics.median(ratios):6.2f}    "
          f"[{ratios[0]:.2f}-{ratios[-1]:.2f}] (the cost of our work)")
    print(f"fraction of ideal ({ideal:.0f} images/s): ours {ours_rate / ideal:.2f}, bare {bare_rate / ideal:.2f} "
          "(below 1: the machine, the fake host's process included)")


if __name__ == "__main__":
    main()
