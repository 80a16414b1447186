"""The Arctic Shift archive (github ArthurHeitmann/arctic_shift, `api/README.md`): Reddit's posts and comments
without API keys, in Reddit's own JSON objects. Its HTTP client (`ArcticShiftAPI`), the parsing of its answers
(pure functions), and the scraper backend that reads the three source kinds from it (`ArcticScraper`).

What the archive offers and what it does not, as its README documents it:
- `/api/posts/search`: subreddit, `title` full-text search (PostgreSQL's websearch syntax), after/before
  dates, `sort=asc|desc` by created_utc only (no score: `listing: top|hot` cannot be served), limit <= 100.
- `/api/comments/tree`: a thread's comments as Reddit renders them, collapsed into `more` stubs past `limit`;
  `/api/posts/ids`, `/api/comments/ids`: things by id. `md2html=true` adds `body_html`.
- No key, no 1000-item cap, no uptime promise. Answers are `{"data": [...]}`; errors `{"error": "..."}`.
Assumed, not documented: `after`/`before` are exclusive bounds on created_utc; 429 answers carry Retry-After;
`X-RateLimit-Remaining`/`X-RateLimit-Reset` may be sent (both are honoured when present).
"""

from __future__ import annotations

import json
import logging
import random
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import requests

from tasks import catalog
from tasks.imgur import ImgurClient
from tasks.jobs import CommentLinks, Job, Label, Listing, SearchSort, SubredditPosts, TimeFilter, TitleMentions
from tasks.ratelimit import Limiter
from tasks.scrape import Harvester, ProgressCallback, Scraper, SourceReport

log = logging.getLogger(__name__)

PAGE_SIZE = 100  # the most one search answers
IDS_PER_REQUEST = 500  # the most one id lookup answers
TREE_LIMIT = 50_000  # "something like 999999 returns all comments": stubs only for giant threads
TIME_FILTER_SECONDS = {TimeFilter.hour: 3600, TimeFilter.day: 86400, TimeFilter.week: 7 * 86400,
                       TimeFilter.month: 31 * 86400, TimeFilter.year: 366 * 86400}


class ArcticShiftError(RuntimeError):
    """A request to Arctic Shift that failed; the message names the URL."""


class ArcticShiftUnavailable(ArcticShiftError):
    """5xx, 429, timeouts or resets past our retries: worth trying again later (the Prefect task retries)."""


class ArcticShiftBadAnswer(ArcticShiftError):
    """An answer that is not the JSON the API documents: an HTML error page, truncated JSON, no `data`, or an
    `error` field. Often a proxy in front of the archive having a bad moment: retried like an outage."""


class ArcticShiftRefused(ArcticShiftError):
    """A 4xx other than 429: the request itself is wrong; retrying repeats the answer."""


class UnsupportedOnArcticShift(ValueError):
    """A source the archive cannot serve as asked (it sorts by time only)."""


def unsupported_reason(source: SubredditPosts | TitleMentions | CommentLinks) -> str | None:
    """Why Arctic Shift cannot serve `source` as written, or None. `job validate` and `scrape` say it."""
    if isinstance(source, SubredditPosts) and source.listing != Listing.new:
        return (f"r/{source.subreddit}: `listing: {source.listing.value}` ranks by score, which Arctic Shift does "
                "not sort by; use `listing: new` (with `options.since` for history) or Reddit's API")
    if not isinstance(source, SubredditPosts) and source.sort in (SearchSort.top, SearchSort.comments):
        return (f"r/{source.subreddit}: `sort: {source.sort.value}` ranks by score or comments, which Arctic Shift "
                "does not sort by; use `sort: new` or Reddit's API")
    return None


# ---------------------------------------------------------------- parsing (pure)


def parse_answer(status: int, content_type: str, body: bytes, url: str) -> list[dict[str, Any]]:
    """The `data` list of a 200 answer, or ArcticShiftBadAnswer saying what came instead."""
    text = body.decode("utf-8", errors="replace")
    if "json" not in content_type.lower() and text.lstrip()[:1] not in ("{", "["):
        kind = "an HTML page" if "<html" in text[:500].lower() or "html" in content_type.lower() else \
            f"{content_type or 'no content type'}"
        raise ArcticShiftBadAnswer(f"{url}: HTTP {status} answered {kind} instead of JSON")
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArcticShiftBadAnswer(f"{url}: invalid or truncated JSON ({exc.msg} at byte {exc.pos} of "
                                   f"{len(body)})") from None
    if isinstance(payload, dict) and payload.get("error"):
        raise ArcticShiftBadAnswer(f"{url}: the archive answered an error: {str(payload['error'])[:200]}")
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        raise ArcticShiftBadAnswer(f"{url}: the answer has no `data` list")
    return [item for item in data if isinstance(item, dict)]


def flatten_tree(children: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """A comment tree (Reddit's things: `{"kind": "t1"|"more", "data": ...}`) as a breadth-first list of comment
    dicts, as PRAW's CommentForest.list() orders them, and the ids that `more` stubs collapsed."""
    comments: list[dict[str, Any]] = []
    collapsed: list[str] = []
    queue = list(children)
    while queue:
        thing = queue.pop(0)
        data = thing.get("data") if isinstance(thing, dict) else None
        if not isinstance(data, dict):
            continue
        if thing.get("kind") == "more":
            collapsed.extend(str(c) for c in data.get("children") or [])
            continue
        replies = data.get("replies")
        if isinstance(replies, dict):
            queue.extend((replies.get("data") or {}).get("children") or [])
        comments.append({k: v for k, v in data.items() if k != "replies"})
    return comments, collapsed


_FIELD_RE = re.compile(r'(?i)\b(flair|flair_name|flair_text|selftext|author|subreddit|site|url|self|nsfw):'
                       r'(?:"[^"]*"|\S+)')


def websearch_from_reddit_query(query: str) -> str:
    """A Reddit search query as a websearch title query: `title:` prefixes dropped (the search is on titles),
    other field terms dropped (flair is checked locally), `NOT x` as `-x`, `AND` implied."""
    text = _FIELD_RE.sub(" ", query)
    text = re.sub(r'(?i)\btitle:', "", text)
    text = re.sub(r"\bNOT\s+", "-", text)
    text = re.sub(r"\bAND\b", " ", text)
    return " ".join(text.split())


def time_floor(time_filter: TimeFilter, now: float) -> float | None:
    seconds = TIME_FILTER_SECONDS.get(time_filter)
    return None if seconds is None else now - seconds


# ---------------------------------------------------------------- network IO


@dataclass
class ArcticShiftAPI:
    """A polite client: every request waits for the shared limiter, waits out 429s (Retry-After) and an
    exhausted quota (X-RateLimit-*), and retries 5xx, resets and timeouts with exponential backoff and jitter,
    `max_attempts` times per request. Counts what it sent, for the summary and the bench. The settings give
    every value but the first back-off (flows/settings.py states their defaults)."""

    base_url: str
    user_agent: str
    limiter: Limiter
    timeout: float
    max_attempts: int
    max_wait_seconds: float
    base_backoff_seconds: float = 1.0
    sleep: Callable[[float], None] = time.sleep
    session: requests.Session = field(default_factory=requests.Session)
    requests_sent: int = 0
    rate_limited: int = 0

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        self.session.headers["User-Agent"] = self.user_agent
        self.session.headers["Accept"] = "application/json"

    def get(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        query = {k: v for k, v in params.items() if v is not None}
        url = f"{self.base_url}{path}?{urlencode(query)}"
        problem, backoff = "", 0.0
        for attempt in range(self.max_attempts):
            if backoff:
                self.sleep(backoff)
            self.limiter.acquire()
            self.requests_sent += 1
            # After a 5xx or a broken connection, back off exponentially (with jitter); after a 429 the limiter
            # holds every thread until Retry-After has passed.
            backoff = min(self.max_wait_seconds, self.base_backoff_seconds * 2 ** attempt) * random.uniform(0.5, 1)
            try:
                response = self.session.get(url, timeout=self.timeout)
                body = response.content
            except (requests.ConnectionError, requests.Timeout) as exc:
                problem = f"{type(exc).__name__}"
                log.warning("Arctic Shift: %s on %s; retrying", problem, url)
                continue
            self._respect_quota(response)
            if response.status_code == 429:
                self.rate_limited += 1
                wait = min(self.max_wait_seconds, _seconds(response.headers.get("Retry-After")) or backoff)
                self.limiter.pause_until(time.monotonic() + wait)
                backoff, problem = 0.0, "HTTP 429 (rate limited)"
                log.warning("Arctic Shift answered 429; waiting %.1f s", wait)
                continue
            if response.status_code >= 500:
                problem = f"HTTP {response.status_code}"
                log.warning("Arctic Shift: %s on %s; retrying", problem, url)
                continue
            if response.status_code >= 400:
                raise ArcticShiftRefused(f"{url}: HTTP {response.status_code}: {body[:200]!r}")
            return parse_answer(response.status_code, response.headers.get("Content-Type", ""), body, url)
        raise ArcticShiftUnavailable(f"{url}: {problem} after {self.max_attempts} attempts")

    def _respect_quota(self, response: requests.Response) -> None:
        remaining = response.headers.get("X-RateLimit-Remaining")
        if remaining is not None and _seconds(remaining) == 0 and remaining.strip() in ("0", "0.0"):
            reset = _seconds(response.headers.get("X-RateLimit-Reset")) or 1.0
            if reset > 1e9:  # an epoch time rather than seconds to wait
                reset = max(0.0, reset - time.time())
            self.limiter.pause_until(time.monotonic() + min(self.max_wait_seconds, reset))

    # ------------------------------------------------------------ endpoints

    def search_posts(self, subreddit: str, *, title: str | None = None, after: float | None = None,
                     before: float | None = None, limit: int = PAGE_SIZE) -> list[dict[str, Any]]:
        return self.get("/api/posts/search", {
            "subreddit": subreddit, "title": title, "after": _epoch(after), "before": _epoch(before),
            "sort": "desc", "limit": limit, "md2html": "true",
        })

    def iter_posts(self, subreddit: str, *, title: str | None = None, after: float | None = None,
                   before: float | None = None) -> Iterator[dict[str, Any]]:
        """Posts newest first inside (after, before), paged by `before` = the oldest created_utc of a page. Posts
        that share the second at a page's edge are fetched whole, so none is lost between pages."""
        while True:
            page = self.search_posts(subreddit, title=title, after=after, before=before)
            yield from page
            if len(page) < PAGE_SIZE:
                return
            oldest = min(float(p.get("created_utc") or 0) for p in page)
            if float(page[-1].get("created_utc") or 0) == float(page[-2].get("created_utc") or 0):
                ids = {p.get("id") for p in page}  # the page may have cut that second in two
                tied = self.search_posts(subreddit, title=title, after=oldest - 1, before=oldest + 1)
                yield from (p for p in tied if p.get("id") not in ids)
            before = oldest

    def comment_tree(self, link_id: str) -> list[dict[str, Any]]:
        """Every comment of a thread, breadth-first: one request for the tree, then the collapsed ones by id."""
        tree = self.get("/api/comments/tree", {"link_id": f"t3_{link_id}", "limit": TREE_LIMIT,
                                               "md2html": "true"})
        comments, collapsed = flatten_tree(tree)
        for start in range(0, len(collapsed), IDS_PER_REQUEST):
            chunk = collapsed[start:start + IDS_PER_REQUEST]
            comments += self.get("/api/comments/ids", {"ids": ",".join(chunk), "md2html": "true"})
        return comments

    def post(self, post_id: str) -> dict[str, Any] | None:
        found = self.get("/api/posts/ids", {"ids": post_id, "md2html": "true"})
        return found[0] if found else None


def _epoch(value: float | None) -> int | None:
    return None if value is None else int(value)


def _seconds(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value is not None else 0.0
    except ValueError:
        return 0.0


# ---------------------------------------------------------------- the scraper backend


class ArcticScraper(Scraper):
    """Reads the three source kinds from Arctic Shift. Posts come newest first inside a time window: a pass
    reads (watermark, now]; one that stops early (an error, the candidate cap, the post limit) saves how far
    down it got, and the next run first finishes that window, then reads what is newer. A no-op nightly run
    therefore costs one request per source."""

    backend = "arctic_shift"

    def __init__(self, api: ArcticShiftAPI, conn: sqlite3.Connection, job: Job, imgur: ImgurClient,
                 on_post: ProgressCallback | None = None, clock: Callable[[], float] = time.time):
        self.api = api
        self.clock = clock
        linked: dict[str, dict[str, Any] | None] = {}

        def linked_post(post_id: str) -> dict[str, Any] | None:
            if post_id not in linked:
                linked[post_id] = api.post(post_id)
            return linked[post_id]

        super().__init__(conn, job, Harvester(job, imgur, linked_post), on_post)

    @property
    def rate_limited(self) -> int:
        return self.api.rate_limited

    def _floor(self, source: SubredditPosts | TitleMentions | CommentLinks) -> float | None:
        """The oldest post time a source reads: the job's `since`, and a search's time filter."""
        floors = [self.job.since_utc]
        if not isinstance(source, SubredditPosts):
            floors.append(time_floor(source.time_filter, self.clock()))
        present = [f for f in floors if f is not None]
        return max(present) if present else None

    def _scrape_posts(self, label: Label, source: SubredditPosts | TitleMentions, report: SourceReport) -> None:
        reason = unsupported_reason(source)
        if reason:
            raise UnsupportedOnArcticShift(reason)
        title = None
        if isinstance(source, TitleMentions):
            title = websearch_from_reddit_query(source.query) if source.query else \
                self.matchers[label.name].websearch_query()
        # The limit bounds posts read per run. Without `since` it also ends the first pass, as Reddit's listing
        # cap does (the newest N posts, no history); with `since` the pass goes on next run until it gets there.
        budget = source.limit or (None if self.job.options.since else self.job.options.max_posts_per_source)
        while True:
            state = catalog.source_state(self.conn, self.job.name, report.source_key)
            resuming = state.pass_cursor is not None
            floor = state.watermark if state.watermark is not None else self._floor(source)
            top, cursor = state.pass_top, state.pass_cursor
            before = cursor + 1 if cursor is not None else None  # the cursor's second again: ties (seen ones skip)
            for data in self.api.iter_posts(source.subreddit, title=title, after=floor, before=before):
                created = float(data.get("created_utc") or 0)
                top = created if top is None else max(top, created)
                cursor = created if cursor is None else min(cursor, created)
                if not catalog.seen_post(self.conn, self.job.name, report.source_key, str(data.get("id"))):
                    report.posts_read += 1
                    found = self.harvester.post_candidates(label, source, report.source_key, data, report.skipped)
                    self._record(report, str(data.get("id")), data.get("created_utc"), data.get("num_comments"),
                                 found)
                catalog.save_pass_progress(self.conn, self.job.name, report.source_key, top, cursor)
                if self._cap_reached(report):
                    return  # the watermark stays; the next run reads on below the cursor
                if budget is not None and report.posts_read >= budget:
                    if state.watermark is None and not self.job.options.since:
                        log.info("%s r/%s: read the newest %d posts; set `options.since` to reach further back",
                                 label.name, source.subreddit, budget)
                        break  # a first pass without `since`: the newest N, like Reddit's listing
                    return  # the next run goes on below the cursor
            catalog.finish_source_pass(self.conn, self.job.name, report.source_key,
                                       top if top is not None else state.watermark)
            report.stopped_at_seen = state.watermark is not None
            if not resuming:
                return
            # The unfinished window is done: now what arrived since that pass began.

    def _threads(self, source: CommentLinks, limit: int) -> Iterator[tuple[dict[str, Any], Any]]:
        reason = unsupported_reason(source)
        if reason:
            raise UnsupportedOnArcticShift(reason)
        title = websearch_from_reddit_query(source.query)
        for count, data in enumerate(self.api.iter_posts(source.subreddit, title=title,
                                                         after=self._floor(source)), start=1):
            yield data, data
            if count >= limit:
                return

    def _comments(self, handle: Any, more_limit: int | None) -> Iterator[dict[str, Any]]:
        # The archive's tree is whole up to TREE_LIMIT; `more_limit` bounds Reddit's per-stub fetches only.
        yield from self.api.comment_tree(str(handle.get("id")))

