"""Reddit's API through PRAW: the client, bounded retries, the three kinds of listing, and the scraper backend
that reads them (`RedditScraper`).

PRAW is not thread-safe: make one client per thread (`make_reddit`). Parsing of what comes back
lives in `tasks.links`; what to keep and where to store it lives in `tasks.scrape`.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import praw
import prawcore
from praw.models import Comment, MoreComments, Submission

from tasks import catalog
from tasks.imgur import ImgurClient
from tasks.jobs import CommentLinks, Job, Label, Listing, SearchSort, SubredditPosts, TitleMentions
from tasks.links import Skip
from tasks.ratelimit import Limiter
from tasks.scrape import Harvester, ProgressCallback, Scraper, SourceReport

log = logging.getLogger(__name__)
T = TypeVar("T")

# Raised by prawcore for a subreddit that does not exist, is private or banned: the source fails,
# the rest of the job goes on.
SOURCE_GONE = (prawcore.NotFound, prawcore.Forbidden, prawcore.Redirect, prawcore.UnavailableForLegalReasons)
TRANSIENT = (prawcore.ServerError, prawcore.RequestException)


class RedditCredentialsMissing(RuntimeError):
    pass


class RedditAuthFailed(RuntimeError):
    """Reddit refused the credentials: every source would fail the same way, so the run stops."""


def is_auth_failure(exc: BaseException) -> bool:
    if isinstance(exc, prawcore.OAuthException):
        return True
    response = getattr(exc, "response", None)
    return isinstance(exc, prawcore.ResponseException) and getattr(response, "status_code", None) == 401


class LimitedRequestor(prawcore.Requestor):
    """prawcore's requestor behind a limiter shared by every client of the process (and, where the edge adds
    it, every worker): PRAW's own rate limiter only knows its own client, and Reddit counts per client id."""

    def __init__(self, *args: Any, limiter: Limiter | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.limiter = limiter

    def request(self, *args: Any, **kwargs: Any) -> Any:
        if self.limiter is not None:
            self.limiter.acquire()
        return super().request(*args, **kwargs)


def make_reddit(client_id: str | None, client_secret: str | None, user_agent: str,
                oauth_url: str, reddit_url: str, timeout: float = 30.0,
                limiter: Limiter | None = None) -> praw.Reddit:
    """A read-only PRAW client (application-only OAuth). One per thread; `limiter` paces its requests."""
    if not client_id or not client_secret:
        raise RedditCredentialsMissing(
            "Reddit credentials are not set: create a 'script' app at https://www.reddit.com/prefs/apps and "
            "set YOTSUBA_REDDIT_CLIENT_ID and YOTSUBA_REDDIT_CLIENT_SECRET (environment or .env)"
        )
    reddit = praw.Reddit(
        client_id=client_id,
        client_secret=client_secret,
        user_agent=user_agent,
        oauth_url=oauth_url,
        reddit_url=reddit_url,
        check_for_updates=False,
        timeout=timeout,
        requestor_class=LimitedRequestor,
        requestor_kwargs={"limiter": limiter},
    )
    reddit.read_only = True
    return reddit


@dataclass
class Backoff:
    """Waits out Reddit's 429s (prawcore raises them instead of retrying) and transient errors,
    a bounded number of times per call. `waits` counts what was waited, for the run summary."""

    max_waits: int = 5
    max_wait_seconds: float = 120.0
    base_seconds: float = 1.0
    sleep: Callable[[float], None] = time.sleep
    waits: int = 0
    rate_limited: int = 0

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        attempt = 0
        while True:
            try:
                return fn(*args, **kwargs)
            except prawcore.TooManyRequests as exc:
                self.rate_limited += 1
                delay = self._retry_after(exc, attempt)
                if attempt >= self.max_waits:
                    raise
                log.warning("Reddit answered 429 (rate limited); waiting %.1f s", delay)
            except TRANSIENT as exc:
                if attempt >= self.max_waits:
                    raise
                delay = min(self.max_wait_seconds, self.base_seconds * 2**attempt) * random.uniform(0.5, 1.0)
                log.warning("Reddit request failed (%s); retrying in %.1f s", type(exc).__name__, delay)
            attempt += 1
            self.waits += 1
            self.sleep(delay)

    def iterate(self, generator: Iterator[T]) -> Iterator[T]:
        """Iterate a PRAW ListingGenerator, retrying a failed page fetch in place.

        A ListingGenerator keeps its `after` cursor until a page arrives, so calling next() again
        after a 429 asks for the same page; nothing is skipped or repeated."""
        while True:
            try:
                item = self.call(next, generator)
            except StopIteration:
                return
            yield item

    def _retry_after(self, exc: prawcore.TooManyRequests, attempt: int) -> float:
        try:
            seconds = float(exc.retry_after) if exc.retry_after else 0.0
        except ValueError:
            seconds = 0.0
        if seconds <= 0:
            seconds = self.base_seconds * 2**attempt
        return min(self.max_wait_seconds, seconds + random.uniform(0, 0.25))


# ---------------------------------------------------------------- listings


def post_data(post: Submission) -> dict[str, Any]:
    """The post's JSON fields without triggering PRAW's lazy fetch (never `post.is_gallery`)."""
    return vars(post)


def listing_for(reddit: praw.Reddit, source: SubredditPosts, limit: int) -> Iterator[Submission]:
    subreddit = reddit.subreddit(source.subreddit)
    if source.listing == Listing.new:
        return subreddit.new(limit=limit)
    if source.listing == Listing.hot:
        return subreddit.hot(limit=limit)
    return subreddit.top(time_filter=source.time_filter.value, limit=limit)


def search_for(reddit: praw.Reddit, source: TitleMentions | CommentLinks, query: str,
               limit: int) -> Iterator[Submission]:
    subreddit = reddit.subreddit(source.subreddit)
    return subreddit.search(query, sort=source.sort.value, time_filter=source.time_filter.value,
                            syntax="lucene", limit=limit)


def iter_comments(submission: Submission, replace_more_limit: int | None, backoff: Backoff) -> Iterator[Comment]:
    """Every comment of a thread: the whole tree, with up to `replace_more_limit` 'more' stubs expanded
    (None expands all of them). Breadth-first, as PRAW's CommentForest.list() orders it."""
    forest = backoff.call(lambda: submission.comments)
    backoff.call(forest.replace_more, limit=replace_more_limit)
    for comment in forest.list():
        if not isinstance(comment, MoreComments):
            yield comment


# ---------------------------------------------------------------- the scraper backend


class LinkedPosts:
    """The posts that links point at (`reddit.com/gallery/<id>`, `redd.it/<id>`), fetched once each per run.
    None for a post that is gone."""

    def __init__(self, reddit: praw.Reddit, backoff: Backoff):
        self.reddit = reddit
        self.backoff = backoff
        self._cache: dict[str, dict[str, Any] | None] = {}

    def __call__(self, post_id: str) -> dict[str, Any] | None:
        if post_id not in self._cache:
            try:
                submission = self.reddit.submission(post_id)
                self.backoff.call(lambda: submission.title)  # one fetch of /comments/<id>
                self._cache[post_id] = post_data(submission)
            except SOURCE_GONE:
                self._cache[post_id] = None
        return self._cache[post_id]


class RedditScraper(Scraper):
    """Reads Reddit's listings and searches through PRAW. Reddit lists at most 1000 items and cannot ask for a
    time window: a `new` listing is read from the newest post until the first seen post older than the
    watermark."""

    backend = "reddit"

    def __init__(self, reddit: praw.Reddit, conn: sqlite3.Connection, job: Job, imgur: ImgurClient,
                 backoff: Backoff | None = None, on_post: ProgressCallback | None = None):
        self.reddit = reddit
        self.backoff = backoff or Backoff()
        super().__init__(conn, job, Harvester(job, imgur, LinkedPosts(reddit, self.backoff)), on_post)

    @property
    def rate_limited(self) -> int:
        return self.backoff.rate_limited

    def _fatal(self, exc: Exception) -> None:
        if is_auth_failure(exc):
            raise RedditAuthFailed(
                "Reddit refused the credentials (HTTP 401): check YOTSUBA_REDDIT_CLIENT_ID and "
                "YOTSUBA_REDDIT_CLIENT_SECRET; the app must be of type 'script' or 'web'"
            ) from None

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, SOURCE_GONE):
            return f"subreddit not found, private or banned ({type(exc).__name__})"
        return super()._describe(exc)

    def _scrape_posts(self, label: Label, source: SubredditPosts | TitleMentions, report: SourceReport) -> None:
        limit = source.limit or self.job.options.max_posts_per_source
        if isinstance(source, SubredditPosts):
            posts = listing_for(self.reddit, source, limit)
            time_ordered = source.listing == Listing.new
        else:
            query = source.query or self.matchers[label.name].search_query()
            posts = search_for(self.reddit, source, query, limit)
            time_ordered = source.sort == SearchSort.new
        watermark = catalog.source_watermark(self.conn, self.job.name, report.source_key)
        newest, listed = None, 0
        for post in self.backoff.iterate(posts):
            listed += 1
            data = post_data(post)
            created = data.get("created_utc")
            if self._too_old(created):
                if time_ordered:
                    break  # everything after this is older still
                report.skipped[Skip.BEFORE_SINCE] += 1
                continue
            newest = created if newest is None or (created or 0) > newest else newest
            if catalog.seen_post(self.conn, self.job.name, report.source_key, post.id):
                if time_ordered and watermark is not None and created is not None and created <= watermark:
                    report.stopped_at_seen = True  # everything older was read by a completed pass
                    break
                continue
            report.posts_read += 1
            found = self.harvester.post_candidates(label, source, report.source_key, data, report.skipped)
            self._record(report, post.id, created, data.get("num_comments"), found)
            if self._cap_reached(report):
                # The pass stopped before the posts it did not read: the watermark stays, so the next run
                # reads on past the posts seen now instead of stopping at them.
                log.info("%s r/%s: %d new candidates (the cap); the next run goes on", label.name,
                         source.subreddit, report.new_candidates)
                return
        if listed >= limit and time_ordered and not report.stopped_at_seen and watermark:
            # Reddit lists no further than this: what lies between is out of the API's reach.
            log.warning("%s r/%s: read %d posts without reaching those seen last time; raise `limit`, or "
                        "backfill from dump files or Arctic Shift, to close the gap", label.name,
                        source.subreddit, limit)
        catalog.finish_source_pass(self.conn, self.job.name, report.source_key, newest)

    def _threads(self, source: CommentLinks, limit: int) -> Iterator[tuple[dict[str, Any], Any]]:
        query = f'{source.query} flair:"{source.flair}"' if source.flair else source.query
        for thread in self.backoff.iterate(search_for(self.reddit, source, query, limit)):
            yield post_data(thread), thread

    def _comments(self, handle: Any, more_limit: int | None) -> Iterator[dict[str, Any]]:
        for comment in iter_comments(handle, more_limit, self.backoff):
            yield vars(comment)
