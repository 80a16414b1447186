"""Scraping through both backends in one run, against the same fake world: Reddit's API (real PRAW against the
fake Reddit) and Arctic Shift (our client against the fake archive).

The world: a character subreddit of image posts (subreddit_posts), a show subreddit whose titles name the
character one post in three (title_mentions), and discussion threads with comment links (comment_links). Both
backends read it from an empty catalog, each kind alone and all three together, then once more (a no-op
nightly). Printed per backend: posts read (threads count as posts),
candidates, requests, requests per 1000 posts, candidates/s, and the rerun's requests; then Arctic Shift's
candidates/s as a ratio of Reddit's. The rate limits are lifted (both fakes are on this machine): this measures
the client and the parsing, not the politeness (at the default 1 request/s, Arctic Shift takes about one second
per 100 posts).

    .venv/bin/python bench/scrape.py                  # 1000 posts per subreddit, 10 threads of 60 comments
    .venv/bin/python bench/scrape.py --posts 400 --threads 4
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fakes.arctic import FakeArcticShift  # noqa: E402
from fakes.reddit import FakeReddit  # noqa: E402
from flows.scrape import scrape_job  # noqa: E402
from flows.settings import Settings  # noqa: E402
from tasks.jobs import parse_job  # noqa: E402

SOURCES = {
    "subreddit_posts": "{kind: subreddit_posts, subreddit: Nakano_Miku}",
    "title_mentions": "{kind: title_mentions, subreddit: 5ToubunNoHanayome}",
    "comment_links": '{kind: comment_links, subreddit: anime, query: "Gotoubun Episode Discussion"}',
}


def job_for(kinds: list[str]):
    sources = ", ".join(SOURCES[k] for k in kinds)
    return parse_job(f"name: bench\nlabels: [{{name: miku, aliases: [Nakano Miku], sources: [{sources}]}}]",
                     "bench.yaml")


def build_world(fake: FakeReddit, posts: int, threads: int, comments: int) -> None:
    for i in range(posts):
        fake.add_post("Nakano_Miku", f"fan art #{i}", url=f"https://i.redd.it/own{i}.jpeg", score=i % 97)
        title = f"Nakano Miku sketch {i}" if i % 3 == 0 else f"Weekly thread {i}"
        fake.add_post("5ToubunNoHanayome", title, url=f"https://i.redd.it/show{i}.png")
    for t in range(threads):
        thread = fake.add_post("anime", f"Gotoubun Episode Discussion - Episode {t}", is_self=True)
        for c in range(comments):
            parent = fake.add_comment(thread, f"[Miku]({'https://i.redd.it/'}c{t}_{c}.jpeg) and more")
            if c % 4 == 0:
                fake.add_comment(parent, f"[Nakano Miku](https://i.imgur.com/r{t}{c}.png)")


def measure(name: str, settings: Settings, counter, kinds: list[str]) -> dict:
    job = job_for(kinds)
    before = counter()
    started = time.perf_counter()
    summary = scrape_job(settings, job)
    seconds = time.perf_counter() - started
    requests = counter() - before
    rerun_before = counter()
    again = scrape_job(settings, job)
    assert not summary.errors and not again.errors, (summary.errors, again.errors)
    return {"backend": name, "kinds": kinds[0] if len(kinds) == 1 else "all three",
            "posts": sum(s.posts_read for s in summary.sources),
            "candidates": summary.new_candidates, "requests": requests, "seconds": seconds,
            "rerun_requests": counter() - rerun_before, "rerun_new": again.new_candidates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=1000, help="posts per subreddit (Reddit lists 1000 at most)")
    parser.add_argument("--threads", type=int, default=10)
    parser.add_argument("--comments", type=int, default=60, help="top-level comments per thread")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp, FakeReddit() as fake, FakeArcticShift(fake) as archive:
        build_world(fake, args.posts, args.threads, args.comments)
        common = {"imgur_client_id": fake.imgur_client_id, "imgur_api_url": fake.url}
        rows = []
        for kinds in [[kind] for kind in SOURCES] + [list(SOURCES)]:
            where = Path(tmp) / "-".join(kinds)
            reddit = Settings(_env_file=None, data_dir=where / "reddit", reddit_client_id=fake.client_id,
                              reddit_client_secret=fake.client_secret, reddit_base_url=fake.url,
                              reddit_requests_per_minute=1e6, **common)
            arctic = Settings(_env_file=None, data_dir=where / "arctic", arctic_shift_base_url=archive.url,
                              arctic_shift_requests_per_second=1e6, **common)
            rows.append(measure("reddit (PRAW)", reddit,
                                lambda: sum(r.path != "/api/v1/access_token" for r in fake.requests), kinds))
            rows.append(measure("arctic_shift", arctic, lambda: len(archive.requests), kinds))
    print(f"{'sources':<16} {'backend':<14} {'posts':>6} {'candidates':>10} {'requests':>8} {'req/1000 posts':>14} "
          f"{'candidates/s':>12} {'rerun requests':>14}")
    for row in rows:
        print(f"{row['kinds']:<16} {row['backend']:<14} {row['posts']:>6} {row['candidates']:>10} "
              f"{row['requests']:>8} {1000 * row['requests'] / row['posts']:>14.1f} "
              f"{row['candidates'] / row['seconds']:>12.0f} {row['rerun_requests']:>14}")
    for reddit_row, arctic_row in zip(rows[::2], rows[1::2], strict=True):
        ratio = (arctic_row["candidates"] / arctic_row["seconds"]) / (reddit_row["candidates"] / reddit_row["seconds"])
        print(f"{reddit_row['kinds']}: arctic_shift candidates/s = {ratio:.2f}x reddit's; same candidates: "
              f"{arctic_row['candidates'] == reddit_row['candidates']}")


if __name__ == "__main__":
    main()
