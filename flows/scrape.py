"""The scrape stage: the wiring from settings, and the `scrape` flow that fans out over subreddits."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

from prefect import flow, get_run_logger, task

from flows import progress
from flows.artifacts import scrape_artifacts
from flows.jobfiles import load_job_for_flow, one_run_per_job
from flows.limits import arctic_shift_limiter, reddit_limiter
from flows.runners import attempts_so_far, retry_options
from flows.settings import Settings, secret_value
from tasks import catalog
from tasks.arctic import ArcticScraper, ArcticShiftAPI, unsupported_reason
from tasks.imgur import ImgurClient
from tasks.jobs import Backend, Job
from tasks.reddit import Backoff, RedditScraper, make_reddit
from tasks.scrape import ProgressCallback, Scraper, ScrapeSummary

# Error types (by name, as the scraper records them) that a later attempt may not meet: Reddit's 5xx after
# prawcore's own retries, rate limits past our waits, the network, an archive that is down or answers
# garbage. A missing subreddit, bad credentials or a source the backend cannot serve are not among them:
# retrying those only repeats the answer.
TRANSIENT_ERRORS = ("ServerError", "RequestException", "TooManyRequests", "ConnectionError", "TimeoutError",
                    "ReadTimeout", "ConnectTimeout", "ChunkedEncodingError", "ArcticShiftUnavailable",
                    "ArcticShiftBadAnswer")


class TransientScrapeError(RuntimeError):
    """Some sources failed in a way worth retrying; carries what the attempt did find (it is stored)."""

    def __init__(self, summary: ScrapeSummary):
        self.summary = summary
        super().__init__("; ".join(summary.errors))


def is_transient(error: str | None) -> bool:
    return bool(error) and error.split(":", 1)[0].strip() in TRANSIENT_ERRORS


def backend_notice(settings: Settings, job: Job) -> str | None:
    """One line for a person whose scrape will not use Reddit's API, or whose sources the archive cannot serve
    as written; None when there is nothing to say."""
    if settings.scrape_backend(job) != Backend.arctic_shift:
        return None
    why = "options.backend is arctic_shift" if job.options.backend == Backend.arctic_shift else \
        "no Reddit API keys (YOTSUBA_REDDIT_CLIENT_ID/_SECRET)"
    problems = [reason for _, source in job.iter_sources() if (reason := unsupported_reason(source))]
    line = f"{why}: reading Reddit through the Arctic Shift archive ({settings.arctic_shift_base_url}), no keys needed"
    return line + (f"; it cannot serve {len(problems)} source(s): {problems[0]}" if problems else "")


def make_scraper(settings: Settings, job: Job, conn, on_post: ProgressCallback | None = None) -> Scraper:
    """The job's backend with its client, behind the limit shared by every scrape task."""
    imgur = ImgurClient(secret_value(settings.imgur_client_id), settings.imgur_api_url)
    if settings.scrape_backend(job) == Backend.arctic_shift:
        api = ArcticShiftAPI(
            settings.arctic_shift_base_url, settings.arctic_shift_user_agent, arctic_shift_limiter(settings),
            timeout=settings.arctic_shift_timeout_seconds, max_attempts=settings.arctic_shift_max_attempts,
            max_wait_seconds=settings.arctic_shift_max_wait_seconds,
        )
        return ArcticScraper(api, conn, job, imgur, on_post=on_post)
    oauth_url, reddit_url = settings.reddit_urls
    # One PRAW client per call: PRAW is not thread-safe, and each scrape task runs in a thread of its own.
    reddit = make_reddit(
        secret_value(settings.reddit_client_id),
        secret_value(settings.reddit_client_secret),
        secret_value(settings.reddit_user_agent) or "yotsuba-net",
        oauth_url=oauth_url,
        reddit_url=reddit_url,
        timeout=settings.reddit_timeout_seconds,
        limiter=reddit_limiter(settings),
    )
    backoff = Backoff(max_waits=settings.reddit_max_rate_limit_waits, max_wait_seconds=settings.reddit_max_wait_seconds)
    return RedditScraper(reddit, conn, job, imgur, backoff, on_post=on_post)


def scrape_job(settings: Settings, job: Job, on_post: ProgressCallback | None = None) -> ScrapeSummary:
    """Scrape every source of `job` into the catalog under `settings.data_dir`."""
    conn = catalog.connect(settings.catalog_path)
    try:
        return make_scraper(settings, job, conn, on_post).run()
    finally:
        conn.close()


def split_by_subreddit(job: Job) -> list[Job]:
    """One job per subreddit, each with only that subreddit's sources: the unit of fan-out. Threads shared
    by several labels (comment_links with one search) stay in one piece, so each is still read once."""
    by_subreddit: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for label, source in job.iter_sources():
        by_subreddit[source.subreddit.lower()][label.name].append(source)
    parts = []
    for _, sources_by_label in sorted(by_subreddit.items()):
        labels = [label.model_copy(update={"sources": sources_by_label[label.name]})
                  for label in job.labels if label.name in sources_by_label]
        parts.append(job.model_copy(update={"labels": labels}))
    return parts


def _retry_if_transient(task, task_run, state) -> bool:
    return isinstance(state.result(raise_on_failure=False), TransientScrapeError)


@task(retry_condition_fn=_retry_if_transient, task_run_name="scrape r/{subreddit}")
def scrape_subreddit(settings: Settings, job: Job, subreddit: str) -> ScrapeSummary:
    """Network IO: retried with backoff and jitter, on transient errors only. Scraping is incremental, so a
    retry reads only what the failed attempt did not store. Returns (or raises with) what every attempt found."""
    summary = scrape_job(settings, job, on_post=progress.reporter("scrape"))
    attempts = [ScrapeSummary.from_dict(a) for a in attempts_so_far(settings, summary.to_dict())]
    merged = ScrapeSummary(job.name, merge_attempts(attempts), sum(a.rate_limited for a in attempts),
                           sum(a.seconds for a in attempts), summary.backend)
    if any(is_transient(s.error) for s in summary.sources):
        raise TransientScrapeError(merged)
    return merged


def merge_attempts(attempts: list[ScrapeSummary]) -> list:
    """Per source: what every attempt found, and the last attempt's error (if the retries did not clear it)."""
    merged: dict[str, object] = {}
    for attempt in attempts:
        for report in attempt.sources:
            first = merged.get(report.source_key)
            if first is None:
                merged[report.source_key] = report
                continue
            first.posts_read += report.posts_read
            first.new_candidates += report.new_candidates
            first.skipped.update(report.skipped)
            first.error = report.error
            first.stopped_at_seen, first.cap_reached = report.stopped_at_seen, report.cap_reached
    return list(merged.values())


def run_scrape(settings: Settings, job: Job) -> ScrapeSummary:
    """Inside a flow: one task per subreddit, concurrently (each with its own client and connection)."""
    started = time.monotonic()
    task = scrape_subreddit.with_options(**retry_options(settings))
    parts = split_by_subreddit(job)
    futures = [task.submit(settings, part, part.labels[0].sources[0].subreddit) for part in parts]
    sources, rate_limited = [], 0
    for future in futures:
        outcome = future.result(raise_on_failure=False)
        if isinstance(outcome, TransientScrapeError):
            outcome = outcome.summary  # the retries did not clear every error: what they found still counts
        elif isinstance(outcome, BaseException):
            raise outcome  # refused credentials and the like: the run cannot go on
        sources += outcome.sources
        rate_limited += outcome.rate_limited
    summary = ScrapeSummary(job.name, sources, rate_limited, time.monotonic() - started,
                            backend=settings.scrape_backend(job).value)
    scrape_artifacts(summary)
    return summary


@flow(name="scrape", log_prints=True)
@one_run_per_job
def scrape_flow(job_file: str) -> ScrapeSummary:
    """Find new candidate images on Reddit for every source of the job; store them in the catalog."""
    settings, job = load_job_for_flow(Path(job_file))
    notice = backend_notice(settings, job)
    if notice:
        get_run_logger().info(notice)
    return run_scrape(settings, job)
