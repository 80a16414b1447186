"""Scraping without Reddit keys: the real client (requests) against the fake Arctic Shift on 127.0.0.1, serving
the same world as the fake Reddit."""

from __future__ import annotations

import datetime
import sqlite3
import time

import pytest

from fakes.arctic import FakeArcticShift
from fakes.reddit import FakeReddit
from flows.scrape import backend_notice, scrape_flow, scrape_job
from flows.settings import Settings
from tasks import catalog
from tasks.jobs import parse_job
from tasks.links import Skip

pytestmark = pytest.mark.integration

MIKU_POSTS = """
name: gotoubun
{options}
labels:
  - name: miku
    aliases: [Nakano Miku]
    sources:
      - {{kind: subreddit_posts, subreddit: Nakano_Miku}}
"""


def posts_job(options: str = ""):
    return parse_job(MIKU_POSTS.format(options=options), "job.yaml")


def rows(settings: Settings) -> list[sqlite3.Row]:
    conn = catalog.connect(settings.catalog_path)
    try:
        return conn.execute("SELECT * FROM candidates ORDER BY id").fetchall()
    finally:
        conn.close()


def add_posts(fake: FakeReddit, count: int, start: int = 0, sub: str = "Nakano_Miku") -> None:
    for i in range(start, start + count):
        fake.add_post(sub, f"Miku fan art #{i}", url=f"https://i.redd.it/{sub.lower()}{i}.jpeg")


def searches(fake: FakeArcticShift) -> list:
    return fake.requests_to(r"^/api/posts/search$")


def test_without_keys_auto_reads_arctic_shift_and_says_so(fake_reddit: FakeReddit, fake_arctic: FakeArcticShift,
                                                         arctic_settings: Settings):
    add_posts(fake_reddit, 5)
    job = posts_job()

    notice = backend_notice(arctic_settings, job)
    summary = scrape_job(arctic_settings, job)

    assert notice.startswith("no Reddit API keys") and fake_arctic.url in notice
    assert summary.backend == "arctic_shift" and summary.sources[0].backend == "arctic_shift"
    assert summary.new_candidates == 5 and not fake_reddit.requests  # Reddit itself was never asked
    first = searches(fake_arctic)[0]
    assert first.query["subreddit"] == ["Nakano_Miku"] and first.query["sort"] == ["desc"]
    assert first.client.startswith("python:yotsuba-net")  # a descriptive User-Agent


def test_paging_across_1500_posts_since_a_date_at_one_request_per_100(fake_reddit: FakeReddit,
                                                                      fake_arctic: FakeArcticShift,
                                                                      arctic_settings: Settings):
    add_posts(fake_reddit, 1500)
    since = datetime.datetime.fromtimestamp(1_600_000_000, datetime.UTC).date()

    summary = scrape_job(arctic_settings, posts_job(f"options: {{since: {since}}}"))

    assert summary.new_candidates == 1500 and len({r["url"] for r in rows(arctic_settings)}) == 1500
    pages = searches(fake_arctic)
    assert len(pages) == 16  # 15 full pages and the short one that ends it: 10.7 per 1000 posts
    befores = [int(p.query["before"][0]) for p in pages[1:]]
    assert befores == sorted(befores, reverse=True) and len(set(befores)) == 15
    assert {p.query["limit"][0] for p in pages} == {"100"}


def test_without_since_the_first_pass_is_the_newest_max_posts(fake_reddit: FakeReddit, fake_arctic: FakeArcticShift,
                                                              arctic_settings: Settings):
    add_posts(fake_reddit, 250)
    job = posts_job("options: {max_posts_per_source: 120}")

    first = scrape_job(arctic_settings, job)
    again = scrape_job(arctic_settings, job)

    assert first.new_candidates == 120 and again.new_candidates == 0
    assert min(r["url"] for r in rows(arctic_settings)) == "https://i.redd.it/nakano_miku130.jpeg"


def test_a_nightly_rerun_asks_after_the_watermark_and_reads_one_page(fake_reddit: FakeReddit,
                                                                     fake_arctic: FakeArcticShift,
                                                                     arctic_settings: Settings):
    add_posts(fake_reddit, 250)
    job = posts_job()
    assert scrape_job(arctic_settings, job).new_candidates == 250
    newest = max(p["created_utc"] for p in fake_reddit.posts.values())
    fake_arctic.requests.clear()

    noop = scrape_job(arctic_settings, job)

    assert noop.new_candidates == 0 and noop.sources[0].posts_read == 0
    assert len(searches(fake_arctic)) == 1  # one page per source, empty
    assert int(searches(fake_arctic)[0].query["after"][0]) == int(newest)

    add_posts(fake_reddit, 3, start=250)
    fresh = scrape_job(arctic_settings, job)
    assert fresh.new_candidates == 3 and len(rows(arctic_settings)) == 253


def test_an_interrupted_pass_is_finished_by_the_next_run(fake_reddit: FakeReddit, fake_arctic: FakeArcticShift,
                                                         arctic_settings: Settings):
    add_posts(fake_reddit, 450)
    job = posts_job()
    assert scrape_job(arctic_settings, job).new_candidates == 450
    add_posts(fake_reddit, 350, start=450)  # a busy day
    # The third page fails past every retry: the pass stops with 200 of the 350 new posts.
    calls = {"n": 0}
    original = fake_arctic.search

    def failing_third_page(things, query, fields):
        calls["n"] += 1
        if calls["n"] >= 3 and calls["n"] < 3 + 5:
            raise RuntimeError("archive broke")
        return original(things, query, fields)

    fake_arctic.search = failing_third_page  # type: ignore[method-assign]
    broken = scrape_job(arctic_settings, job)
    fake_arctic.search = original  # type: ignore[method-assign]

    assert broken.sources[0].error and "ArcticShift" in broken.sources[0].error
    assert broken.new_candidates == 200
    conn = catalog.connect(arctic_settings.catalog_path)
    state = catalog.source_state(conn, "gotoubun", broken.sources[0].source_key)
    conn.close()
    assert state.pass_cursor is not None and state.pass_top > state.watermark  # the mark did not move

    add_posts(fake_reddit, 2, start=800)  # and more arrive before the next night
    healed = scrape_job(arctic_settings, job)

    assert not healed.sources[0].error and healed.new_candidates == 152
    assert len(rows(arctic_settings)) == 802 == len({r["url"] for r in rows(arctic_settings)})
    quiet = scrape_job(arctic_settings, job)
    assert quiet.new_candidates == 0


@pytest.mark.parametrize("backend", ["reddit", "arctic_shift"])
def test_a_capped_pass_does_not_skip_posts_for_good(fake_reddit: FakeReddit, settings: Settings,
                                                    arctic_settings: Settings, backend: str):
    """30 posts, a cap of 10 candidates per source: 10, 10, 10, then nothing left (before: 10, 0, 0)."""
    add_posts(fake_reddit, 30)
    job = posts_job("options: {max_candidates_per_source: 10}")
    cfg = settings if backend == "reddit" else arctic_settings

    runs = [scrape_job(cfg, job) for _ in range(4)]

    assert [r.new_candidates for r in runs] == [10, 10, 10, 0]
    assert [r.sources[0].cap_reached for r in runs] == [True, True, True, False]
    assert len({r["url"] for r in rows(cfg)}) == 30


def test_title_mentions_query_the_names_in_websearch_syntax(fake_reddit: FakeReddit, fake_arctic: FakeArcticShift,
                                                            arctic_settings: Settings):
    show = "5ToubunNoHanayome"
    fake_reddit.add_post(show, "Nakano Miku in her summer outfit", url="https://i.redd.it/alias.jpeg")
    fake_reddit.add_post(show, "Miku and Nino at the beach", url="https://i.redd.it/both.jpeg")
    fake_reddit.add_post(show, "Mikuru cosplay", url="https://i.redd.it/mikuru.jpeg")
    fake_reddit.add_post(show, "Nakano family dinner", url="https://i.redd.it/family.jpeg")
    job = parse_job("name: g\nlabels: [{name: miku, aliases: [Nakano Miku], "
                    "sources: [{kind: title_mentions, subreddit: 5ToubunNoHanayome}]}]", "job.yaml")

    summary = scrape_job(arctic_settings, job)

    assert searches(fake_arctic)[0].query["title"] == ['"Nakano Miku" OR miku']
    assert {r["url"] for r in rows(arctic_settings)} == {"https://i.redd.it/alias.jpeg", "https://i.redd.it/both.jpeg"}
    assert summary.sources[0].posts_read == 2


def test_comment_links_read_collapsed_comments_by_id(fake_reddit: FakeReddit, arctic_settings: Settings):
    thread = fake_reddit.add_post("anime", "Go-Toubun Episode Discussion - Episode 5", is_self=True, flair="Episode")
    for k in range(6):
        top = fake_reddit.add_comment(thread, f"[Miku {k}](https://i.redd.it/top{k}.jpeg)")
        fake_reddit.add_comment(top, f"[Nakano Miku](https://i.redd.it/reply{k}.jpeg)")
    fake_reddit.add_post("anime", "Something else entirely", is_self=True)
    job = parse_job("name: g\nlabels: [{name: miku, aliases: [Nakano Miku], sources: [{kind: comment_links, "
                    "subreddit: anime, query: 'Go-Toubun Episode Discussion', flair: Episode}]}]", "job.yaml")

    with FakeArcticShift(fake_reddit, tree_limit_cap=4) as archive:  # stubs on a small thread
        cfg = arctic_settings.model_copy(update={"arctic_shift_base_url": archive.url})
        summary = scrape_job(cfg, job)
        assert len(archive.requests_to(r"^/api/comments/ids$")) == 1
        assert archive.requests_to(r"^/api/posts/search$")[0].query["title"] == ["Go-Toubun Episode Discussion"]

    assert summary.new_candidates == 12 and summary.sources[0].posts_read == 1
    assert {r["comment_id"] for r in rows(cfg)} == {c["id"] for c in fake_reddit.comments.values()}


def test_429_storms_and_5xx_flaps_are_waited_out(fake_reddit: FakeReddit, fake_arctic: FakeArcticShift,
                                                 arctic_settings: Settings):
    add_posts(fake_reddit, 150)
    fake_arctic.storm_429(r"^/api/posts/search$", times=3, retry_after=0.3)
    fake_arctic.inject(r"^/api/posts/search$", times=2, status=503, body=b'{"error": "Timeout. Maybe slow down"}')
    started = time.monotonic()

    summary = scrape_job(arctic_settings.model_copy(update={"arctic_shift_max_attempts": 6}), posts_job())

    assert summary.new_candidates == 150 and not summary.errors
    assert summary.rate_limited == 3
    assert time.monotonic() - started >= 0.85  # three Retry-After: 0.3 waited, not hammered
    statuses = [r.status for r in searches(fake_arctic)]
    assert statuses[:5] == [429, 429, 429, 503, 503] and statuses[5:] == [200, 200]


def test_a_storm_past_the_retries_fails_the_source_as_transient(fake_reddit: FakeReddit, fake_arctic: FakeArcticShift,
                                                                arctic_settings: Settings):
    from flows.scrape import is_transient

    add_posts(fake_reddit, 5)
    fake_arctic.storm_429(r"^/api/posts/search$", times=50, retry_after=0)

    summary = scrape_job(arctic_settings.model_copy(update={"arctic_shift_max_attempts": 3}), posts_job())

    error = summary.sources[0].error
    assert error.startswith("ArcticShiftUnavailable:") and "429" in error and fake_arctic.url in error
    assert is_transient(error) and len(searches(fake_arctic)) == 3


@pytest.mark.parametrize("fault", ["html", "truncated", "no_data", "error_field"])
def test_malformed_answers_are_a_counted_source_failure_with_the_url(fake_reddit: FakeReddit,
                                                                     fake_arctic: FakeArcticShift,
                                                                     arctic_settings: Settings, fault: str):
    from flows.scrape import is_transient

    add_posts(fake_reddit, 3)
    add_posts(fake_reddit, 2, sub="NakanoNino")
    match fault:
        case "html":
            fake_arctic.html_page(r"^/api/posts/search$", status=200)
        case "truncated":
            fake_arctic.inject(r"^/api/posts/search$", truncate=True)
        case "no_data":
            fake_arctic.inject(r"^/api/posts/search$", body=b'{"results": []}')
        case "error_field":
            fake_arctic.inject(r"^/api/posts/search$", body=b'{"error": "Timeout. Maybe slow down a bit"}')
    job = parse_job("name: g\nlabels: [{name: miku, sources: [{kind: subreddit_posts, subreddit: Nakano_Miku}]}, "
                    "{name: nino, sources: [{kind: subreddit_posts, subreddit: NakanoNino}]}]", "job.yaml")

    summary = scrape_job(arctic_settings, job)

    broken, fine = summary.sources
    assert broken.error.startswith("ArcticShiftBadAnswer:") and "/api/posts/search?" in broken.error
    expected = {"html": "HTML page", "truncated": "truncated JSON", "no_data": "no `data` list",
                "error_field": "Timeout. Maybe slow down"}[fault]
    assert expected in broken.error and is_transient(broken.error)
    assert broken.new_candidates == 0 and fine.new_candidates == 2 and not fine.error
    assert summary.errors == [f"miku subreddit_posts r/Nakano_Miku: {broken.error}"]
    again = scrape_job(arctic_settings, job)  # nothing was marked read: the next run takes all
    assert again.new_candidates == 3 and not again.errors


def test_an_exhausted_quota_pauses_every_request(fake_reddit: FakeReddit, fake_arctic: FakeArcticShift,
                                                 arctic_settings: Settings):
    add_posts(fake_reddit, 150)
    fake_arctic.inject(r"^/api/posts/search$", headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "0.4"})

    scrape_job(arctic_settings, posts_job())

    first, second = searches(fake_arctic)[:2]
    assert second.at - first.at >= 0.38


def test_score_listings_are_refused_with_a_clear_reason(fake_reddit: FakeReddit, arctic_settings: Settings):
    from flows.scrape import is_transient

    add_posts(fake_reddit, 3)
    job = parse_job("name: g\nlabels: [{name: miku, sources: [{kind: subreddit_posts, subreddit: Nakano_Miku, "
                    "listing: top}, {kind: subreddit_posts, subreddit: Nakano_Miku}]}]", "job.yaml")

    summary = scrape_job(arctic_settings, job)

    assert "listing: top" in summary.sources[0].error and not is_transient(summary.sources[0].error)
    assert summary.sources[1].new_candidates == 3
    assert "cannot serve 1 source(s)" in backend_notice(arctic_settings, job)


def test_since_bounds_the_reddit_listing_too(fake_reddit: FakeReddit, settings: Settings):
    add_posts(fake_reddit, 20)
    tenth = sorted(p["created_utc"] for p in fake_reddit.posts.values())[10]
    since = datetime.datetime.fromtimestamp(tenth, datetime.UTC).date()
    for post in fake_reddit.posts.values():  # ten posts from the day before `since`
        if post["created_utc"] < tenth:
            post["created_utc"] = datetime.datetime(since.year, since.month, since.day, tzinfo=datetime.UTC
                                                    ).timestamp() - 3600

    summary = scrape_job(settings, posts_job(f"options: {{since: {since}}}"))

    assert summary.new_candidates == 10


def test_concurrent_scrape_tasks_share_one_limit(fake_reddit: FakeReddit, fake_arctic: FakeArcticShift,
                                                arctic_settings: Settings, tmp_path):
    """Three subreddits, three scrape tasks at once in one flow run: one pace for all of them, and the archive,
    which answers 429 to a client faster than 5 requests/s, never has to."""
    from flows.jobfiles import using_settings

    for sub in ("Nakano_Miku", "NakanoNino", "NakanoIchika"):
        add_posts(fake_reddit, 250, sub=sub)
    job_file = tmp_path / "job.yaml"
    job_file.write_text("name: g\nlabels:\n" + "".join(
        f"  - {{name: {name}, sources: [{{kind: subreddit_posts, subreddit: {sub}}}]}}\n"
        for name, sub in (("miku", "Nakano_Miku"), ("nino", "NakanoNino"), ("ichika", "NakanoIchika"))))
    fake_arctic.limit_rate(10.0)  # twice the pace asked for: a machine's scheduling jitter is not a breach
    cfg = arctic_settings.model_copy(update={"arctic_shift_requests_per_second": 5.0})

    with using_settings(cfg):
        summary = scrape_flow(str(job_file))

    assert summary.new_candidates == 750 and not summary.errors and summary.rate_limited == 0
    times = sorted(r.at for r in searches(fake_arctic))
    assert len(times) == 9 and len({r.query["subreddit"][0] for r in searches(fake_arctic)}) == 3
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # Spaced at 1/5 s when sent; arrivals jitter with the machine's load, so: no two close together, and the
    # nine spread over eight intervals (three unshared limiters would send three at a time).
    assert min(gaps) >= 0.1 and times[-1] - times[0] >= 8 * 0.2 - 0.1, gaps
    assert all(r.status == 200 for r in fake_arctic.requests)


def test_reddit_requests_share_one_limit_per_client_id(fake_reddit: FakeReddit, settings: Settings):
    add_posts(fake_reddit, 250)
    cfg = settings.model_copy(update={"reddit_requests_per_minute": 300.0})  # 5/s

    scrape_job(cfg, posts_job())

    times = sorted(r.at for r in fake_reddit.requests)  # the token, then three pages
    assert len(times) == 4
    assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 0.1 and times[-1] - times[0] >= 0.55


def test_skips_are_counted_by_reason(fake_reddit: FakeReddit, arctic_settings: Settings):
    fake_reddit.add_post("Nakano_Miku", "lewd", url="https://i.redd.it/lewd.jpeg", nsfw=True)
    fake_reddit.add_post("Nakano_Miku", "a clip", url="https://v.redd.it/clip", is_video=True)
    fake_reddit.add_post("Nakano_Miku", "fine", url="https://i.redd.it/fine.jpeg")

    summary = scrape_job(arctic_settings, posts_job())

    assert summary.new_candidates == 1
    assert summary.skipped == {Skip.NSFW: 1, Skip.VIDEO: 1}


def test_cli_tells_a_user_without_keys_what_it_uses_in_one_line(fake_reddit: FakeReddit, fake_arctic: FakeArcticShift,
                                                                yotsuba_env: dict, tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    add_posts(fake_reddit, 4)
    job_file = tmp_path / "job.yaml"
    job_file.write_text("name: g\nlabels: [{name: miku, sources: [{kind: subreddit_posts, subreddit: Nakano_Miku}, "
                        "{kind: subreddit_posts, subreddit: Nakano_Miku, listing: hot}]}]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOTSUBA_")}
    env.update({"YOTSUBA_DATA_DIR": yotsuba_env["YOTSUBA_DATA_DIR"], "YOTSUBA_ARCTIC_SHIFT_BASE_URL": fake_arctic.url,
                "YOTSUBA_TASK_RETRIES": "0", "COLUMNS": "200"})
    yotsuba = str(Path(sys.executable).parent / "yotsuba")

    validate = subprocess.run([yotsuba, "job", "validate", str(job_file)], capture_output=True, text=True, env=env,
                              timeout=120)
    scrape = subprocess.run([yotsuba, "scrape", str(job_file), "--json"], capture_output=True, text=True, env=env,
                            timeout=300)

    for result in (validate, scrape):
        said = [line for line in result.stderr.splitlines() if line.startswith("no Reddit API keys")]
        assert len(said) == 1 and "reading Reddit through the Arctic Shift archive" in said[0], result.stderr
        assert "listing: hot" in said[0] and "Traceback" not in result.stderr
    assert validate.returncode == 0 and scrape.returncode == 0, scrape.stderr
    summary = json.loads(scrape.stdout)
    assert summary["backend"] == "arctic_shift" and summary["new_candidates"] == 4
    assert [s["backend"] for s in summary["sources"]] == ["arctic_shift", "arctic_shift"]
    assert "listing: hot" in summary["sources"][1]["error"]
