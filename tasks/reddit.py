"""Reddit network IO through PRAW: the client, bounded retries, and the three kinds of listing.

PRAW is not thread-safe: make one client per thread (`make_reddit`). Parsing of what comes back
lives in `tasks.links`; what to keep and where to store it lives in `tasks.scrape`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import praw
import prawcore
from praw.models import Comment, MoreComments, Submission

from tasks.jobs import CommentLinks, Listing, SubredditPosts, TitleMentions

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


def make_reddit(client_id: str | None, client_secret: str | None, user_agent: str,
                oauth_url: str, reddit_url: str, timeout: float = 30.0) -> praw.Reddit:
    """A read-only PRAW client (application-only OAuth). One per thread."""
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


def author_name(data: dict[str, Any]) -> str | None:
    author = data.get("author")
    if author is None:
        return None
    name = getattr(author, "name", author)
    return None if name in ("[deleted]", "") else str(name)
