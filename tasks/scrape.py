"""Scraping a job: read each source's listing, keep what names the label, store new candidates.

Incremental: every post a source has looked at is stored as seen, with its candidates, in one
transaction. A `new` listing (or a search sorted by new) stops at the first already-seen post older
than the newest post of the last completed pass; a thread is read again only when its comment
count grew. A rerun therefore emits only new candidates and reads little.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import praw

from tasks import catalog
from tasks.catalog import Candidate
from tasks.imgur import ImgurClient
from tasks.jobs import (
    CommentLinks,
    Job,
    Label,
    Listing,
    NsfwPolicy,
    SearchSort,
    SubredditPosts,
    TitleMentions,
)
from tasks.jobs import source_key as make_source_key
from tasks.links import (
    ImageRef,
    ImgurRef,
    NameMatcher,
    RedditPostRef,
    Ref,
    Skip,
    classify_url,
    extract_links,
    resolve_post,
)
from tasks.reddit import (
    SOURCE_GONE,
    Backoff,
    RedditAuthFailed,
    author_name,
    is_auth_failure,
    iter_comments,
    listing_for,
    post_data,
    search_for,
)

log = logging.getLogger(__name__)


@dataclass
class SourceReport:
    """What one (label, source) did in one run."""

    label: str
    kind: str
    subreddit: str
    source_key: str
    posts_read: int = 0
    new_candidates: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    stopped_at_seen: bool = False
    cap_reached: bool = False
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label, "kind": self.kind, "subreddit": self.subreddit,
            "source_key": self.source_key, "posts_read": self.posts_read,
            "new_candidates": self.new_candidates, "skipped": dict(sorted(self.skipped.items())),
            "stopped_at_seen": self.stopped_at_seen, "cap_reached": self.cap_reached, "error": self.error,
        }


@dataclass
class ScrapeSummary:
    job: str
    sources: list[SourceReport]
    rate_limited: int = 0
    seconds: float = 0.0

    @property
    def new_candidates(self) -> int:
        return sum(s.new_candidates for s in self.sources)

    @property
    def errors(self) -> list[str]:
        return [f"{s.label} {s.kind} r/{s.subreddit}: {s.error}" for s in self.sources if s.error]

    @property
    def skipped(self) -> Counter[str]:
        return skipped_by_reason(self.sources)

    def new_by_label(self) -> dict[str, dict[str, int]]:
        return new_by_label(self.sources)

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "new_candidates": self.new_candidates,
            "new_by_label": self.new_by_label(),
            "skipped": dict(sorted(self.skipped.items())),
            "rate_limited": self.rate_limited,
            "errors": self.errors,
            "seconds": round(self.seconds, 2),
            "sources": [s.to_dict() for s in self.sources],
        }


def skipped_by_reason(sources: list[SourceReport]) -> Counter[str]:
    total: Counter[str] = Counter()
    for s in sources:
        total.update(s.skipped)
    return total


def new_by_label(sources: list[SourceReport]) -> dict[str, dict[str, int]]:
    """label -> source kind -> new candidates."""
    table: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for s in sources:
        table[s.label][s.kind] += s.new_candidates
    return {label: dict(kinds) for label, kinds in table.items()}


ProgressCallback = Callable[[SourceReport], None]
LinkedPostLookup = Callable[[str], dict[str, Any] | None]


class Harvester:
    """What a post or a comment yields: the one place that decides, for both paths that read Reddit (the API
    through PRAW, `Scraper`, and the dump files, `tasks.dump`), so that they store the same candidates for
    the same posts. Works on plain dicts of the JSON fields: PRAW's `vars(thing)` or a parsed dump line.

    Skips are counted into the Counter the caller passes (a source's `skipped`)."""

    def __init__(self, job: Job, imgur: ImgurClient, linked_post: LinkedPostLookup | None = None):
        self.job = job
        self.imgur = imgur
        self.linked_post: LinkedPostLookup = linked_post or (lambda post_id: None)
        self.matchers = {label.name: NameMatcher(label.names) for label in job.labels}

    def nsfw_allowed(self, data: dict[str, Any], *skipped: Counter[str]) -> bool:
        nsfw = bool(data.get("over_18"))
        policy = self.job.options.nsfw
        reason = Skip.NSFW if nsfw and policy == NsfwPolicy.exclude else \
            Skip.SFW if not nsfw and policy == NsfwPolicy.only else None
        for counter in skipped if reason else ():
            counter[reason] += 1
        return reason is None

    def post_candidates(self, label: Label, source: SubredditPosts | TitleMentions, source_key: str,
                        data: dict[str, Any], skipped: Counter[str]) -> list[Candidate]:
        """The candidates of one post of a subreddit_posts or title_mentions source."""
        if not self.nsfw_allowed(data, skipped):
            return []
        flairs = {f.lower() for f in source.flairs}
        if flairs and (data.get("link_flair_text") or "").lower() not in flairs:
            skipped[Skip.FLAIR] += 1
            return []
        if isinstance(source, TitleMentions) and not self.matchers[label.name].matches(data.get("title")):
            # Reddit search is loose ("miku" finds "Mikuru"): the title itself must name the label.
            skipped[Skip.TITLE_NO_MATCH] += 1
            return []
        resolution = resolve_post(data)
        skipped.update(resolution.skipped)
        refs = self.expand(resolution.refs, skipped)
        return [self._candidate(label, source.kind, source_key, data, ref, text=data.get("title")) for ref in refs]

    def comment_candidates(self, thread: dict[str, Any], comment: dict[str, Any],
                           targets: list[tuple[Label, str, Counter[str]]]) -> dict[str, list[Candidate]]:
        """The candidates of one comment of a thread, per label: links whose text names the label.
        `targets`: (label, source_key, skipped) of each comment_links source the thread belongs to."""
        found: dict[str, list[Candidate]] = defaultdict(list)
        for link in extract_links(comment.get("body"), comment.get("body_html")):
            for label, key, skipped in targets:
                if not self.matchers[label.name].matches(link.text):
                    continue
                ref = classify_url(link.url)
                if isinstance(ref, str):
                    skipped[ref] += 1
                    continue
                for image in self.expand([ref], skipped):
                    found[label.name].append(Candidate(
                        job=self.job.name, label=label.name, source_kind="comment_links",
                        source_key=key, subreddit=str(thread.get("subreddit")),
                        post_id=str(thread.get("id")), comment_id=str(comment.get("id")), url=image.url,
                        position=image.position, text=link.text, author=author_name(comment),
                        created_utc=comment.get("created_utc"), permalink=_absolute(comment.get("permalink")),
                        score=comment.get("score"), nsfw=bool(thread.get("over_18")),
                    ))
        return found

    def expand(self, refs: list[Ref], skipped: Counter[str]) -> list[ImageRef]:
        """Direct image references for a list that may hold Imgur pages and links to Reddit posts."""
        out: list[ImageRef] = []
        for ref in refs:
            if isinstance(ref, ImageRef):
                out.append(ref)
            elif isinstance(ref, ImgurRef):
                expanded = self.imgur.expand(ref)
                if isinstance(expanded, str):
                    skipped[expanded] += 1
                else:
                    out.extend(expanded)
            elif isinstance(ref, RedditPostRef):
                linked = self.linked_post(ref.post_id)
                if linked is None:
                    skipped[Skip.REDDIT_POST_LINK] += 1
                    continue
                resolution = resolve_post(linked)
                skipped.update(resolution.skipped)
                out.extend(self.expand([r for r in resolution.refs if not isinstance(r, RedditPostRef)], skipped))
        return out

    def _candidate(self, label: Label, kind: str, key: str, data: dict[str, Any], ref: ImageRef,
                   text: str | None) -> Candidate:
        return Candidate(
            job=self.job.name, label=label.name, source_kind=kind, source_key=key,
            subreddit=str(data.get("subreddit")), post_id=str(data.get("id")), url=ref.url,
            position=ref.position, text=text, author=author_name(data), created_utc=data.get("created_utc"),
            permalink=_absolute(data.get("permalink")), score=data.get("score"), nsfw=bool(data.get("over_18")),
        )


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


class Scraper:
    """Scrapes one job into the catalog. Holds one PRAW client: use one Scraper per thread."""

    def __init__(self, reddit: praw.Reddit, conn: sqlite3.Connection, job: Job, imgur: ImgurClient,
                 backoff: Backoff | None = None, on_post: ProgressCallback | None = None):
        self.reddit = reddit
        self.conn = conn
        self.job = job
        self.imgur = imgur
        self.backoff = backoff or Backoff()
        self.on_post = on_post or (lambda report: None)
        self.harvester = Harvester(job, imgur, LinkedPosts(reddit, self.backoff))
        self.matchers = self.harvester.matchers

    def run(self) -> ScrapeSummary:
        started = time.monotonic()
        run_id = catalog.start_scrape_run(self.conn, self.job.name)
        reports: list[SourceReport] = []
        groups: dict[tuple[Any, ...], list[tuple[Label, CommentLinks]]] = defaultdict(list)
        for label, source in self.job.iter_sources():
            if isinstance(source, CommentLinks):
                # One thread serves every label: read it once for all labels with the same search.
                key = (source.subreddit.lower(), source.query, source.flair, source.sort, source.time_filter,
                       source.replace_more_limit, source.limit)
                groups[key].append((label, source))
                continue
            report = self._report(label, source)
            reports.append(report)
            self._guarded(report, self._scrape_posts, label, source, report)
        for group in groups.values():
            group_reports = [self._report(label, source) for label, source in group]
            reports.extend(group_reports)
            try:
                self._scrape_threads(group, group_reports)
            except Exception as exc:  # one broken source must not stop the others; the summary says why
                self._raise_if_auth_failure(exc)
                for report in group_reports:
                    report.error = _describe(exc)
                log.error("comment_links r/%s failed: %s", group[0][1].subreddit, _describe(exc))
        summary = ScrapeSummary(self.job.name, reports, self.backoff.rate_limited, time.monotonic() - started)
        catalog.finish_scrape_run(self.conn, run_id, summary.to_dict())
        return summary

    def _report(self, label: Label, source: SubredditPosts | TitleMentions | CommentLinks) -> SourceReport:
        key = make_source_key(label.name, source)
        catalog.register_source(self.conn, self.job.name, key, label.name, source.kind, source.subreddit,
                                source.model_dump(mode="json"))
        return SourceReport(label.name, source.kind, source.subreddit, key)

    def _guarded(self, report: SourceReport, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # one broken source must not stop the others; the summary says why
            self._raise_if_auth_failure(exc)
            report.error = _describe(exc)
            log.error("%s %s r/%s failed: %s", report.label, report.kind, report.subreddit, report.error)

    @staticmethod
    def _raise_if_auth_failure(exc: Exception) -> None:
        if is_auth_failure(exc):
            raise RedditAuthFailed(
                "Reddit refused the credentials (HTTP 401): check YOTSUBA_REDDIT_CLIENT_ID and "
                "YOTSUBA_REDDIT_CLIENT_SECRET; the app must be of type 'script' or 'web'"
            ) from None

    # ------------------------------------------------------------ posts: subreddit_posts, title_mentions

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
        newest = None
        for post in self.backoff.iterate(posts):
            data = post_data(post)
            created = data.get("created_utc")
            newest = created if newest is None or (created or 0) > newest else newest
            if catalog.seen_post(self.conn, self.job.name, report.source_key, post.id):
                if time_ordered and watermark is not None and created is not None and created <= watermark:
                    report.stopped_at_seen = True  # everything older was read by a completed pass
                    break
                continue
            report.posts_read += 1
            found = self.harvester.post_candidates(label, source, report.source_key, data, report.skipped)
            report.new_candidates += catalog.record_post(
                self.conn, self.job.name, report.source_key, post.id, created, data.get("num_comments"), found
            )
            self.on_post(report)
            if self._cap_reached(report):
                break
        if limit and report.posts_read >= limit and time_ordered and not report.stopped_at_seen and watermark:
            log.warning("%s r/%s: read %d posts without reaching those seen last time; raise `limit` to "
                        "avoid gaps", label.name, source.subreddit, limit)
        catalog.finish_source_pass(self.conn, self.job.name, report.source_key, newest)

    # ------------------------------------------------------------ threads: comment_links

    def _scrape_threads(self, group: list[tuple[Label, CommentLinks]], reports: list[SourceReport]) -> None:
        first = group[0][1]
        limit = first.limit or self.job.options.threads_per_source
        more_limit = first.replace_more_limit if first.replace_more_limit is not None \
            else self.job.options.replace_more_limit
        query = f'{first.query} flair:"{first.flair}"' if first.flair else first.query
        for thread in self.backoff.iterate(search_for(self.reddit, first, query, limit)):
            data = post_data(thread)
            if first.flair and (data.get("link_flair_text") or "").lower() != first.flair.lower():
                for report in reports:
                    report.skipped[Skip.FLAIR] += 1
                continue
            num_comments = data.get("num_comments") or 0
            stale = [
                (label, report) for (label, _), report in zip(group, reports, strict=True)
                if self._thread_changed(report.source_key, thread.id, num_comments)
            ]
            if not stale:
                continue
            for _, report in stale:
                report.posts_read += 1
            found: dict[str, list[Candidate]] = defaultdict(list)
            if self.harvester.nsfw_allowed(data, *(r.skipped for _, r in stale)):
                targets = [(label, report.source_key, report.skipped) for label, report in stale]
                for comment in iter_comments(thread, more_limit, self.backoff):
                    for name, candidates in self.harvester.comment_candidates(data, vars(comment), targets).items():
                        found[name].extend(candidates)
            for label, report in stale:
                report.new_candidates += catalog.record_post(
                    self.conn, self.job.name, report.source_key, thread.id, data.get("created_utc"),
                    num_comments, found[label.name],
                )
                self.on_post(report)
        for report in reports:
            catalog.finish_source_pass(self.conn, self.job.name, report.source_key, None)

    def _thread_changed(self, source_key: str, thread_id: str, num_comments: int) -> bool:
        row = catalog.seen_post(self.conn, self.job.name, source_key, thread_id)
        return row is None or (row["num_comments"] or 0) < num_comments

    # ------------------------------------------------------------ shared

    def _cap_reached(self, report: SourceReport) -> bool:
        cap = self.job.options.max_candidates_per_source
        report.cap_reached = cap is not None and report.new_candidates >= cap
        return report.cap_reached


def _absolute(permalink: str | None) -> str | None:
    if not permalink:
        return None
    return permalink if permalink.startswith("http") else f"https://www.reddit.com{permalink}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SOURCE_GONE):
        return f"subreddit not found, private or banned ({type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}"

