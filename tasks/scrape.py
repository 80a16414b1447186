"""Scraping a job: read each source's posts, keep what names the label, store new candidates.

Incremental: every post a source has looked at is stored as seen, with its candidates, in one
transaction. A source's watermark is the newest post of its last complete pass: a later pass reads only
what is newer (Arctic Shift asks `after=<watermark>`; a Reddit `new` listing stops at the first seen post
older than it). A pass that stops early (an error, a cap, a limit) leaves the watermark where it was, so
the next run goes on where it stopped. A thread is read again only when its comment count grew. A rerun
therefore emits only new candidates and reads little.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tasks import catalog
from tasks.catalog import Candidate
from tasks.imgur import ImgurClient
from tasks.jobs import (
    CommentLinks,
    Job,
    Label,
    NsfwPolicy,
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
    author_name,
    classify_url,
    extract_links,
    resolve_post,
)

log = logging.getLogger(__name__)


@dataclass
class SourceReport:
    """What one (label, source) did in one run."""

    label: str
    kind: str
    subreddit: str
    source_key: str
    backend: str = ""
    posts_read: int = 0
    new_candidates: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    stopped_at_seen: bool = False
    cap_reached: bool = False
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label, "kind": self.kind, "subreddit": self.subreddit,
            "source_key": self.source_key, "backend": self.backend, "posts_read": self.posts_read,
            "new_candidates": self.new_candidates, "skipped": dict(sorted(self.skipped.items())),
            "stopped_at_seen": self.stopped_at_seen, "cap_reached": self.cap_reached, "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceReport:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**{**fields, "skipped": Counter(data.get("skipped") or {})})


@dataclass
class ScrapeSummary:
    job: str
    sources: list[SourceReport]
    rate_limited: int = 0
    seconds: float = 0.0
    backend: str = ""

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
            "backend": self.backend,
            "new_candidates": self.new_candidates,
            "new_by_label": self.new_by_label(),
            "skipped": dict(sorted(self.skipped.items())),
            "rate_limited": self.rate_limited,
            "errors": self.errors,
            "seconds": round(self.seconds, 2),
            "sources": [s.to_dict() for s in self.sources],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScrapeSummary:
        return cls(data["job"], [SourceReport.from_dict(s) for s in data["sources"]], data.get("rate_limited", 0),
                   data.get("seconds", 0.0), data.get("backend", ""))


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
    """What a post or a comment yields: the one place that decides, for every path that reads Reddit (its API
    through PRAW, the Arctic Shift archive, and the dump files, `tasks.dump`), so that they store the same
    candidates for the same posts. Works on plain dicts of the JSON fields: PRAW's `vars(thing)` or a parsed dump line.

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


class Scraper:
    """Scrapes one job into the catalog: the run loop every backend shares. A backend (`tasks.reddit.RedditScraper`,
    `tasks.arctic.ArcticScraper`) says how to read a post source and how to find threads and their comments;
    what a post or comment yields is the Harvester's, how threads are read again is decided here. Holds one
    client and one catalog connection: one Scraper per thread."""

    backend = ""

    def __init__(self, conn: sqlite3.Connection, job: Job, harvester: Harvester,
                 on_post: ProgressCallback | None = None):
        self.conn = conn
        self.job = job
        self.harvester = harvester
        self.matchers = harvester.matchers
        self.on_post = on_post or (lambda report: None)

    # ------------------------------------------------------------ what a backend provides

    def _scrape_posts(self, label: Label, source: SubredditPosts | TitleMentions, report: SourceReport) -> None:
        raise NotImplementedError

    def _threads(self, source: CommentLinks, limit: int) -> Iterator[tuple[dict[str, Any], Any]]:
        """The threads a comment_links source searches for, newest first: (post data, a handle for `_comments`)."""
        raise NotImplementedError

    def _comments(self, handle: Any, more_limit: int | None) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    @property
    def rate_limited(self) -> int:
        return 0

    def _fatal(self, exc: Exception) -> None:
        """Raise instead of recording a source failure when no other source could succeed either."""

    def _describe(self, exc: BaseException) -> str:
        return f"{type(exc).__name__}: {exc}"

    # ------------------------------------------------------------ the run

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
            self._guarded([report], self._scrape_posts, label, source, report)
        for group in groups.values():
            group_reports = [self._report(label, source) for label, source in group]
            reports.extend(group_reports)
            self._guarded(group_reports, self._scrape_threads, group, group_reports)
        summary = ScrapeSummary(self.job.name, reports, self.rate_limited, time.monotonic() - started,
                                backend=self.backend)
        catalog.finish_scrape_run(self.conn, run_id, summary.to_dict())
        return summary

    def _report(self, label: Label, source: SubredditPosts | TitleMentions | CommentLinks) -> SourceReport:
        key = make_source_key(label.name, source)
        catalog.register_source(self.conn, self.job.name, key, label.name, source.kind, source.subreddit,
                                source.model_dump(mode="json"))
        return SourceReport(label.name, source.kind, source.subreddit, key, backend=self.backend)

    def _guarded(self, reports: list[SourceReport], fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # one broken source must not stop the others; the summary says why
            self._fatal(exc)
            for report in reports:
                report.error = self._describe(exc)
            first = reports[0]
            log.error("%s %s r/%s failed: %s", first.label, first.kind, first.subreddit, first.error)

    def _record(self, report: SourceReport, post_id: str, created: float | None, num_comments: int | None,
                found: list[Candidate]) -> None:
        report.new_candidates += catalog.record_post(
            self.conn, self.job.name, report.source_key, post_id, created, num_comments, found)
        self.on_post(report)

    def _cap_reached(self, report: SourceReport) -> bool:
        cap = self.job.options.max_candidates_per_source
        report.cap_reached = cap is not None and report.new_candidates >= cap
        return report.cap_reached

    def _too_old(self, created: float | None) -> bool:
        since = self.job.since_utc
        return since is not None and created is not None and created < since

    # ------------------------------------------------------------ threads: comment_links

    def _scrape_threads(self, group: list[tuple[Label, CommentLinks]], reports: list[SourceReport]) -> None:
        first = group[0][1]
        limit = first.limit or self.job.options.threads_per_source
        more_limit = first.replace_more_limit if first.replace_more_limit is not None \
            else self.job.options.replace_more_limit
        for data, handle in self._threads(first, limit):
            if self._too_old(data.get("created_utc")):
                for report in reports:
                    report.skipped[Skip.BEFORE_SINCE] += 1
                continue
            if first.flair and (data.get("link_flair_text") or "").lower() != first.flair.lower():
                for report in reports:
                    report.skipped[Skip.FLAIR] += 1
                continue
            num_comments = data.get("num_comments") or 0
            post_id = str(data.get("id"))
            stale = [
                (label, report) for (label, _), report in zip(group, reports, strict=True)
                if self._thread_changed(report.source_key, post_id, num_comments)
            ]
            if not stale:
                continue
            for _, report in stale:
                report.posts_read += 1
            found: dict[str, list[Candidate]] = defaultdict(list)
            if self.harvester.nsfw_allowed(data, *(r.skipped for _, r in stale)):
                targets = [(label, report.source_key, report.skipped) for label, report in stale]
                for comment in self._comments(handle, more_limit):
                    for name, candidates in self.harvester.comment_candidates(data, comment, targets).items():
                        found[name].extend(candidates)
            for label, report in stale:
                self._record(report, post_id, data.get("created_utc"), num_comments, found[label.name])
        for report in reports:
            catalog.finish_source_pass(self.conn, self.job.name, report.source_key, None)

    def _thread_changed(self, source_key: str, thread_id: str, num_comments: int) -> bool:
        row = catalog.seen_post(self.conn, self.job.name, source_key, thread_id)
        return row is None or (row["num_comments"] or 0) < num_comments


def _absolute(permalink: str | None) -> str | None:
    if not permalink:
        return None
    return permalink if permalink.startswith("http") else f"https://www.reddit.com{permalink}"
