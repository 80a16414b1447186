"""Backfill from Reddit dump files: past the API's 1000-item cap, into the same catalog, as the same candidates.

The monthly dumps hold every submission (`RS_YYYY-MM.zst`) and comment (`RC_YYYY-MM.zst`) of Reddit as
zstandard-compressed NDJSON, one JSON object per line with the API's fields. A file is streamed, never loaded:
compressed bytes are read in small blocks and decompressed with the 2 GiB window the dumps need; a bytes regex
(`"subreddit":"<one of the job's>"`, any case) picks the lines worth parsing, and only those reach orjson.
Memory: the reader's own buffers are about a megabyte, but zstd keeps the window as its history, so a file
takes up to 2 GiB while it is read (any decoder of these dumps does).

The job's own sources decide what is kept, so one pass over a file feeds all three kinds:
- subreddit_posts, title_mentions: posts of their subreddit, through the same `Harvester` as the API path
  (tasks.scrape), so the same post gives the same candidate records. A title_mentions post must name the label
  (the API path's title check; with a `query`, the query too, applied locally).
- comment_links: threads are posts of the subreddit that meet the source's search `query` and `flair`
  (applied locally, `query_matches`); they are remembered in the catalog (`dump_threads`), so comment files are
  read after every submission file, and a later run's comment files still find earlier runs' threads.

The API's bounds (`limit`, `max_posts_per_source`, `threads_per_source`, `max_candidates_per_source`) and its
listing orders do not apply: a backfill takes everything in the files.

De-duplication against the API path: a post already seen by the source (`seen_posts`), or a comment that
already has candidates for the label, is counted as `known` and not harvested again. Posts read here are
recorded as seen, so the API path does not harvest them again either. A file read to its end with the same
job filter is not read again (`dump_files`) unless forced.

Errors: a truncated or corrupt file, or an invalid JSON line among those parsed, stops that file with
`DumpError` (`path:line: reason`); every candidate found before it is already stored (one transaction per
post or comment), and the other files are still read. Lines the pre-filter rules out are never parsed, so a
broken one among them goes unnoticed; zstd's checksums catch corruption of the compressed bytes.
"""

from __future__ import annotations

import glob
import hashlib
import html
import json
import logging
import os
import re
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import zstandard

from tasks import catalog
from tasks.jobs import CommentLinks, Job, Label, SubredditPosts, TitleMentions
from tasks.jobs import source_key as make_source_key
from tasks.links import Skip
from tasks.scrape import Harvester, new_by_label, skipped_by_reason

log = logging.getLogger(__name__)

SUBMISSIONS = "submissions"
COMMENTS = "comments"
MAX_WINDOW_SIZE = 2**31  # the dumps are written with `zstd --long=31`
READ_BYTES = 1 << 17  # compressed bytes per read from the file
OUTPUT_PER_CALL = 1 << 17  # decompressed bytes one decompress call should return (see _zstd_pieces)
BLOCK_BYTES = 1 << 20  # decompressed bytes scanned at a time
LOGGED_SKIPS = 5  # skipped lines logged one by one per file; the rest are only counted


class DumpError(Exception):
    """A dump file that cannot be read on: `path:line: reason` (line None: the file as a whole)."""

    def __init__(self, path: str | Path, line: int | None, reason: str):
        self.path = str(path)
        self.line = line
        self.reason = reason
        super().__init__(f"{self.path}:{line}: {reason}" if line is not None else f"{self.path}: {reason}")


class DumpPathError(ValueError):
    """Dump paths or globs that name no file. `problems` holds one line per pattern."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


# ---------------------------------------------------------------- finding and naming files


def resolve_dumps(patterns: Iterable[str], base_dir: str | Path = ".") -> list[Path]:
    """Dump files named by paths or globs (`~` expanded; relative ones are relative to `base_dir`), in order,
    each once. Every pattern must name at least one file."""
    found: dict[Path, None] = {}
    problems = []
    for pattern in patterns:
        expanded = Path(os.path.expanduser(pattern))
        full = expanded if expanded.is_absolute() else Path(base_dir) / expanded
        if glob.has_magic(str(full)):
            matches = sorted(Path(p) for p in glob.glob(str(full), recursive=True) if Path(p).is_file())
            if not matches:
                problems.append(f"{pattern}: no file matches (looked in {full.parent})")
        elif full.is_file():
            matches = [full]
        else:
            problems.append(f"{pattern}: no such file ({full})")
            matches = []
        for match in matches:
            found.setdefault(match.resolve(), None)
    if problems:
        raise DumpPathError(problems)
    return list(found)


def dump_kind(path: str | Path) -> str | None:
    """submissions or comments from the file name (`RS_`/`RC_`, or the per-subreddit dumps' `_submissions`/
    `_comments`); None when the name does not say."""
    name = Path(path).name
    stem = name.split(".", 1)[0].lower()
    if name.startswith("RS_") or stem.endswith("_submissions") or stem == "submissions":
        return SUBMISSIONS
    if name.startswith("RC_") or stem.endswith("_comments") or stem == "comments":
        return COMMENTS
    return None


def sniff_kind(path: str | Path) -> str:
    """submissions or comments from the first record of the file: comments have a `link_id` and no title."""
    for _, record in scan(path, None, FileProgress(Path(path))):
        return COMMENTS if "link_id" in record and "title" not in record else SUBMISSIONS
    return SUBMISSIONS  # an empty file: nothing to read either way


# ---------------------------------------------------------------- streaming and filtering lines


class LineFilter:
    """Which lines of a dump to parse: those of the given subreddits (any case) and, for comments, of the
    given threads. The check on raw bytes only has to be cheap and never miss; parsed records are checked
    again (a crosspost names its origin's subreddit in a nested object)."""

    LINK_ID = re.compile(rb'"link_id":\s*"t3_([0-9a-z]+)"')

    def __init__(self, subreddits: Iterable[str], threads: set[str] | None = None):
        self.subreddits = {s.lower() for s in subreddits}
        self.threads = threads
        names = b"|".join(re.escape(s.encode()) for s in sorted(self.subreddits))
        # Case-insensitive on the name only: the literal `"subreddit":` prefix keeps the regex scan fast.
        self.pattern = re.compile(rb'"subreddit":\s*"(?i:' + names + rb')"') if names else None

    def wants_raw(self, block: bytes | bytearray, start: int, end: int) -> bool:
        """A second cheap look at a candidate line before parsing it: its thread, for comments."""
        if self.threads is None:
            return True
        match = self.LINK_ID.search(block, start, end)
        return match is None or match.group(1).decode() in self.threads

    def accepts(self, record: dict[str, Any]) -> bool:
        if str(record.get("subreddit") or "").lower() not in self.subreddits:
            return False
        if self.threads is not None:
            link_id = str(record.get("link_id") or "")
            return link_id.startswith("t3_") and link_id[3:] in self.threads
        return True


@dataclass
class FileProgress:
    """How far the scan of one file got."""

    path: Path
    size: int = 0  # compressed bytes
    read: int = 0  # compressed bytes read
    bytes: int = 0  # decompressed bytes scanned
    lines: int = 0
    matches: int = 0
    skipped_lines: int = 0  # parsed lines that could not be used (not an object, no id, ...)


def scan(path: str | Path, line_filter: LineFilter | None, progress: FileProgress,
         on_block: Callable[[], None] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each line of a dump that passes `line_filter` (None: every line), streaming.

    Raises DumpError for a corrupt or truncated zstd stream and for an invalid JSON line among those parsed,
    after yielding every record before it. `progress` is updated after each decompressed block, then
    `on_block` is called."""
    path = Path(path)
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise DumpError(path, None, f"cannot be read ({exc.strerror or exc})") from None
    with fh:
        progress.size = os.fstat(fh.fileno()).st_size
        pieces = _zstd_pieces(fh) if path.suffix == ".zst" else iter(lambda: fh.read(BLOCK_BYTES), b"")
        # One buffer for the whole file: `del buf[:n]` only moves its start, so no block is copied or allocated.
        buf = bytearray()
        try:
            for piece in pieces:
                buf += piece
                if len(buf) >= BLOCK_BYTES and (end := buf.rfind(b"\n") + 1):
                    yield from _scan_block(buf, end, line_filter, path, progress)
                    del buf[:end]
                    progress.read = fh.tell()
                    if on_block:
                        on_block()
        except _Damaged as damage:
            # Keep every complete line that came out before the damage; the partial one is where it stopped.
            if end := buf.rfind(b"\n") + 1:
                yield from _scan_block(buf, end, line_filter, path, progress)
            progress.read = fh.tell()
            raise DumpError(path, progress.lines + 1, f"{damage} after {progress.lines:,} complete lines") from None
        if end := buf.rfind(b"\n") + 1:
            yield from _scan_block(buf, end, line_filter, path, progress)
            del buf[:end]
        if buf.strip():  # a last line without its newline
            buf += b"\n"
            yield from _scan_block(buf, len(buf), line_filter, path, progress)
        progress.read = fh.tell()
        if on_block:
            on_block()


class _Damaged(Exception):
    """The zstd stream cannot be read on (scan turns it into a DumpError with the line)."""


def _zstd_pieces(fh: Any) -> Iterator[bytes]:
    """Decompressed pieces of a zstd file of one or more frames. stream_reader would end a truncated file
    without a word; a decompressobj says whether its frame was complete. It is fed just enough compressed
    bytes for about OUTPUT_PER_CALL out, whatever the ratio: memory stays small, and a call that meets
    damage loses all it decoded (python-zstandard raises without it), so little is lost."""
    decompressor = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW_SIZE)
    frame = decompressor.decompressobj()
    in_frame = False
    feed, fed, produced = 8192, 0, 0
    while raw := fh.read(READ_BYTES):
        offset = 0
        while offset < len(raw):
            piece = raw[offset : offset + feed]
            offset += len(piece)
            fed += len(piece)
            try:
                while piece:
                    out = frame.decompress(piece)
                    in_frame = True
                    if out:
                        produced += len(out)
                        yield out
                    if frame.eof:  # the next frame starts in what is left over
                        piece, frame, in_frame = frame.unused_data, decompressor.decompressobj(), False
                    else:
                        piece = b""
            except zstandard.ZstdError as exc:
                raise _Damaged(f"corrupt zstd data ({exc})") from None
            feed = min(READ_BYTES, max(1024, OUTPUT_PER_CALL * fed // max(produced, 1)))
    if in_frame:
        raise _Damaged("the file ends inside a zstd frame: it is truncated (an interrupted download?)")


def _scan_block(block: bytearray, end: int, line_filter: LineFilter | None, path: Path,
                progress: FileProgress) -> Iterator[tuple[int, dict[str, Any]]]:
    """The wanted records of block[:end] (whole lines), with their line numbers in the file."""
    # Where every line ends, in one numpy pass: the line count, and each hit's line and bounds without
    # searching the block again. (The array made from the buffer is dropped at once: the buffer must resize.)
    newlines = np.flatnonzero(np.frombuffer(block, np.uint8, end) == 10)
    if line_filter is None:
        lines: Iterable[int] = range(len(newlines))
    elif line_filter.pattern is None:
        lines = ()
    else:  # the regex scanner lets go of the buffer before anything is yielded
        hits = [m.start() for m in line_filter.pattern.finditer(block, 0, end)]
        lines = dict.fromkeys(np.searchsorted(newlines, hits).tolist())  # two hits on one line: one line
    base = progress.lines
    for index in lines:
        start = int(newlines[index - 1]) + 1 if index else 0
        stop = int(newlines[index])
        if line_filter is not None and not line_filter.wants_raw(block, start, stop):
            continue
        raw = block[start:stop]
        if not raw.strip():
            continue
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            progress.lines = base + index  # the lines before this one were read
            raise DumpError(path, base + index + 1, f"invalid JSON ({exc}): {bytes(raw[:80])!r}") from None
        if not isinstance(record, dict):
            _skip_line(progress, path, base + index + 1, f"a JSON {type(record).__name__}, not an object")
            continue
        if line_filter is not None and not line_filter.accepts(record):
            continue
        progress.matches += 1
        yield base + index + 1, record
    progress.lines = base + len(newlines)
    progress.bytes += end


def _skip_line(progress: FileProgress, path: Path, line: int, reason: str) -> None:
    progress.skipped_lines += 1
    if progress.skipped_lines <= LOGGED_SKIPS:
        log.warning("%s:%d: line skipped: %s", path, line, reason)
    elif progress.skipped_lines == LOGGED_SKIPS + 1:
        log.warning("%s: more lines skipped; the summary counts them", path)


# ---------------------------------------------------------------- records


def normalise_post(record: dict[str, Any]) -> dict[str, Any]:
    """A dump's post as the API gives it: float times, int scores (old dumps have strings), string ids."""
    record["id"] = str(record["id"])
    record["subreddit"] = str(record.get("subreddit") or "")
    record["created_utc"] = _float(record.get("created_utc"))
    record["score"] = _int(record.get("score"))
    record["num_comments"] = _int(record.get("num_comments"))
    return record


def normalise_comment(record: dict[str, Any]) -> dict[str, Any]:
    """A dump's comment as the API gives it. Old dumps have no permalink: one is made that Reddit resolves."""
    record["id"] = str(record["id"])
    record["created_utc"] = _float(record.get("created_utc"))
    record["score"] = _int(record.get("score"))
    if not record.get("permalink"):
        record["permalink"] = f"/r/{record.get('subreddit')}/comments/{str(record['link_id'])[3:]}/_/{record['id']}/"
    return record


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


_TERM_RE = re.compile(r'(-)?(?:(\w+):)?(?:"([^"]*)"|([^\s()]+))')
_WORD_RE = re.compile(r"\w+")


def _words(text: Any) -> str:
    return " ".join(_WORD_RE.findall(html.unescape(str(text or "")).lower()))


def query_matches(query: str, data: dict[str, Any]) -> bool:
    """Does a post meet a Reddit search query? Applied locally to dump posts, for the sources that find posts
    by search. Alternatives split on OR; in each, every term must hold: a word or "a phrase", scoped by
    `title:`, `selftext:`, `flair:`, `author:`, `subreddit:`, `site:`/`url:` or else in the title or the text,
    and negated by `-` or NOT. Words compare whole, in any case, punctuation aside ("Go-Toubun" is
    "go toubun"). Reddit's search is looser (stems, partial words); the title checks after it make up for
    that on the API path. Unknown fields (`nsfw:`, `self:`) hold for every post."""
    title, text = f" {_words(data.get('title'))} ", f" {_words(data.get('selftext'))} "
    for alternative in re.split(r"\s+OR\s+", query.strip()):
        ok, negate_next = True, False
        for minus, field_name, phrase, word in _TERM_RE.findall(alternative):
            if word in ("AND", "NOT") and not field_name:
                negate_next = word == "NOT"
                continue
            holds = _term_holds(field_name.lower(), phrase or word, title, text, data)
            if holds == (bool(minus) != negate_next):  # a term that holds when it must not, or the reverse
                ok = False
            negate_next = False
        if ok:
            return True
    return False


def _term_holds(field_name: str, value: str, title: str, text: str, data: dict[str, Any]) -> bool:
    words = f" {_words(value)} "
    if field_name in ("flair", "flair_name", "flair_text"):
        return _words(data.get("link_flair_text")) == _words(value)
    if field_name == "title":
        return words in title
    if field_name in ("selftext", "self_text"):
        return words in text
    if field_name == "author":
        return str(data.get("author") or "").lower() == value.lower()
    if field_name == "subreddit":
        return str(data.get("subreddit") or "").lower() == value.lower()
    if field_name in ("site", "url"):
        return value.lower() in f"{data.get('domain') or ''} {data.get('url') or ''}".lower()
    if field_name:
        return True
    return words in title or words in text


# ---------------------------------------------------------------- the backfill


@dataclass
class BackfillSource:
    """What one (label, source) got from the dumps in one run."""

    label: str
    kind: str
    subreddit: str
    source_key: str
    threads: int = 0  # comment_links: threads of the dumps that meet the query and flair
    matched: int = 0  # posts (comment_links: comments) read from the dumps
    new_candidates: int = 0
    known: int = 0  # posts or comments already in the catalog (the API path, an earlier backfill)
    skipped: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "kind": self.kind, "subreddit": self.subreddit, "source_key": self.source_key,
                "threads": self.threads, "matched": self.matched, "new_candidates": self.new_candidates,
                "known": self.known, "skipped": dict(sorted(self.skipped.items()))}


@dataclass
class FileReport:
    """One dump file in one run. status: done | failed | unchanged (read to its end before, same job filter)
    | unneeded (comments, and no thread to read them for)."""

    path: str
    kind: str
    size: int
    status: str = "pending"
    read: int = 0
    bytes: int = 0
    lines: int = 0
    matches: int = 0
    skipped_lines: int = 0
    seconds: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "status": self.status, "compressed_bytes": self.size,
                "bytes": self.bytes, "lines": self.lines, "matches": self.matches,
                "skipped_lines": self.skipped_lines, "seconds": round(self.seconds, 2), "error": self.error}


@dataclass
class BackfillSummary:
    job: str
    sources: list[BackfillSource]
    files: list[FileReport]
    seconds: float = 0.0

    @property
    def new_candidates(self) -> int:
        return sum(s.new_candidates for s in self.sources)

    @property
    def known(self) -> int:
        return sum(s.known for s in self.sources)

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    @property
    def errors(self) -> list[str]:
        return [f.error for f in self.files if f.error]

    @property
    def skipped(self) -> Counter[str]:
        return skipped_by_reason(self.sources)

    @property
    def mb_per_second(self) -> float:
        seconds = sum(f.seconds for f in self.files)
        return self.bytes / 1e6 / seconds if seconds else 0.0

    def new_by_label(self) -> dict[str, dict[str, int]]:
        return new_by_label(self.sources)

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job, "new_candidates": self.new_candidates, "known": self.known,
            "new_by_label": self.new_by_label(), "skipped": dict(sorted(self.skipped.items())),
            "bytes": self.bytes, "lines": sum(f.lines for f in self.files),
            "matches": sum(f.matches for f in self.files), "mb_per_second": round(self.mb_per_second, 1),
            "errors": self.errors, "seconds": round(self.seconds, 2),
            "sources": [s.to_dict() for s in self.sources], "files": [f.to_dict() for f in self.files],
        }


@dataclass
class BackfillProgress:
    """What `on_progress` gets, after each decompressed block and each file."""

    file: FileReport
    files_done: int
    files_total: int
    compressed_total: int
    compressed_read: int  # all files: those done, and this one so far
    lines: int
    matches: int
    new_candidates: int


BackfillCallback = Callable[[BackfillProgress], None]


@dataclass
class _ThreadGroup:
    """comment_links sources with the same subreddit, query and flair: one check per post serves them all."""

    query: str
    flair: str | None
    members: list[tuple[Label, BackfillSource]] = field(default_factory=list)


class Backfiller:
    """Reads dump files into the catalog for one job. Submission files first, then comment files."""

    def __init__(self, conn: sqlite3.Connection, job: Job, harvester: Harvester, *, force: bool = False,
                 on_progress: BackfillCallback | None = None):
        self.conn = conn
        self.job = job
        self.harvester = harvester
        self.force = force
        self.on_progress = on_progress or (lambda progress: None)
        self.reports: list[BackfillSource] = []
        self.post_sources: dict[str, list[tuple[Label, SubredditPosts | TitleMentions, BackfillSource]]] = \
            defaultdict(list)
        self.thread_groups: dict[str, dict[tuple[str, str | None], _ThreadGroup]] = defaultdict(dict)
        self.thread_sources: dict[str, tuple[Label, BackfillSource]] = {}
        for label, source in job.iter_sources():
            key = make_source_key(label.name, source)
            catalog.register_source(conn, job.name, key, label.name, source.kind, source.subreddit,
                                    source.model_dump(mode="json"))
            report = BackfillSource(label.name, source.kind, source.subreddit, key)
            self.reports.append(report)
            sub = source.subreddit.lower()
            if isinstance(source, CommentLinks):
                group_key = (source.query, source.flair.lower() if source.flair else None)
                group = self.thread_groups[sub].setdefault(group_key, _ThreadGroup(source.query, source.flair))
                group.members.append((label, report))
                self.thread_sources[key] = (label, report)
            else:
                self.post_sources[sub].append((label, source, report))
        self.filter_digest = _digest({"labels": [label.model_dump(mode="json") for label in job.labels],
                                      "nsfw": job.options.nsfw.value})

    # ------------------------------------------------------------ the run

    def run(self, paths: list[Path]) -> BackfillSummary:
        started = time.monotonic()
        files = [self._file_report(p) for p in paths]
        files.sort(key=lambda f: (f.kind != SUBMISSIONS, Path(f.path).name))  # threads before their comments
        self._files, self._done_bytes = files, sum(f.size for f in files if f.status == "failed")
        submissions = LineFilter([*self.post_sources, *self.thread_groups])
        for report in (f for f in files if f.kind == SUBMISSIONS):
            self._read_file(report, submissions, self.filter_digest, self._on_submission)
        self.threads = self._load_threads()
        comments = LineFilter(self.thread_groups, set(self.threads))
        comments_digest = _digest([self.filter_digest, sorted(self.threads)])
        for report in (f for f in files if f.kind == COMMENTS):
            if not self.threads:
                report.status = "unneeded"
                self._done_bytes += report.size
                continue
            self._read_file(report, comments, comments_digest, self._on_comment)
        return BackfillSummary(self.job.name, self.reports, files, time.monotonic() - started)

    def _file_report(self, path: Path) -> FileReport:
        try:
            return FileReport(str(path), dump_kind(path) or sniff_kind(path), _size(path))
        except DumpError as exc:  # not even a first line: the file fails, the others are read
            log.error("%s", exc)
            return FileReport(str(path), "unknown", _size(path), status="failed", error=str(exc))

    def _read_file(self, report: FileReport, line_filter: LineFilter, digest: str,
                   handle: Callable[[dict[str, Any], Path, int, FileProgress], None]) -> None:
        path = Path(report.path)
        stat = path.stat()
        if not self.force and self._already_read(path, stat, digest):
            report.status = "unchanged"
            self._done_bytes += report.size
            self._progress(report)
            return
        progress = FileProgress(path, size=report.size)
        started = time.monotonic()

        def on_block() -> None:
            report.read, report.bytes, report.lines = progress.read, progress.bytes, progress.lines
            report.matches, report.seconds = progress.matches, time.monotonic() - started
            self._progress(report)

        try:
            for line_no, record in scan(path, line_filter, progress, on_block):
                handle(record, path, line_no, progress)
            report.status = "done"
        except DumpError as exc:
            report.status, report.error = "failed", str(exc)
            log.error("%s", exc)
        finally:
            report.skipped_lines = progress.skipped_lines
            self._done_bytes += report.size
            on_block()
        self._remember_file(path, stat, report, digest)

    def _progress(self, current: FileReport) -> None:
        done = [f for f in self._files if f.status != "pending"]
        self.on_progress(BackfillProgress(
            file=current, files_done=len(done), files_total=len(self._files),
            compressed_total=sum(f.size for f in self._files),
            compressed_read=self._done_bytes + (current.read if current.status == "pending" else 0),
            lines=sum(f.lines for f in self._files), matches=sum(f.matches for f in self._files),
            new_candidates=sum(r.new_candidates for r in self.reports),
        ))

    # ------------------------------------------------------------ submissions

    def _on_submission(self, record: dict[str, Any], path: Path, line: int, progress: FileProgress) -> None:
        if "id" not in record:
            _skip_line(progress, path, line, "a post without an id")
            return
        data = normalise_post(record)
        sub = data["subreddit"].lower()
        for label, source, report in self.post_sources.get(sub, ()):
            if isinstance(source, TitleMentions):
                # The API path's search: only posts that name the label count as read at all.
                if not self.harvester.matchers[label.name].matches(data.get("title")):
                    continue
                if source.query and not query_matches(source.query, data):
                    continue
            if catalog.seen_post(self.conn, self.job.name, report.source_key, data["id"]):
                report.known += 1
                continue
            report.matched += 1
            found = self.harvester.post_candidates(label, source, report.source_key, data, report.skipped)
            report.new_candidates += catalog.record_post(self.conn, self.job.name, report.source_key, data["id"],
                                                         data["created_utc"], data.get("num_comments"), found)
        for group in self.thread_groups.get(sub, {}).values():
            if not query_matches(group.query, data):
                continue
            if group.flair and (data.get("link_flair_text") or "").lower() != group.flair.lower():
                for _, report in group.members:
                    report.skipped[Skip.FLAIR] += 1
                continue
            with catalog.transaction(self.conn):
                self.conn.executemany(
                    """INSERT INTO dump_threads (job, source_key, post_id, subreddit, over_18, created_utc)
                       VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
                    [(self.job.name, report.source_key, data["id"], data["subreddit"], int(bool(data.get("over_18"))),
                      data["created_utc"]) for _, report in group.members])

    # ------------------------------------------------------------ comments

    def _load_threads(self) -> dict[str, tuple[dict[str, Any], list[tuple[Label, str, Counter[str]]]]]:
        """The threads of this run's and earlier runs' submission files, for the job's comment_links sources,
        with the sources each belongs to; threads the nsfw policy leaves out are counted and dropped."""
        threads: dict[str, tuple[dict[str, Any], list[tuple[Label, str, Counter[str]]]]] = {}
        keys = list(self.thread_sources)
        rows = self.conn.execute(
            f"""SELECT source_key, post_id, subreddit, over_18 FROM dump_threads
                WHERE job = ? AND source_key IN ({', '.join('?' * len(keys))}) ORDER BY post_id, source_key""",
            (self.job.name, *keys),
        ).fetchall() if keys else []
        for row in rows:
            label, report = self.thread_sources[row["source_key"]]
            thread = {"id": row["post_id"], "subreddit": row["subreddit"], "over_18": bool(row["over_18"])}
            if not self.harvester.nsfw_allowed(thread, report.skipped):
                continue
            report.threads += 1
            threads.setdefault(row["post_id"], (thread, []))[1].append((label, row["source_key"], report.skipped))
        return threads

    def _on_comment(self, record: dict[str, Any], path: Path, line: int, progress: FileProgress) -> None:
        if "id" not in record:
            _skip_line(progress, path, line, "a comment without an id")
            return
        data = normalise_comment(record)
        thread, members = self.threads[str(data["link_id"])[3:]]
        targets = []
        for label, key, skipped in members:
            report = self.thread_sources[key][1]
            report.matched += 1
            if self._comment_known(label.name, thread, data["id"]):
                report.known += 1
                continue
            targets.append((label, key, skipped))
        if not targets:
            return
        found = self.harvester.comment_candidates(thread, data, targets)
        if not found:
            return
        with catalog.transaction(self.conn):
            for label, key, _ in targets:
                self.thread_sources[key][1].new_candidates += catalog.insert_candidates(
                    self.conn, found.get(label.name, []))

    def _comment_known(self, label: str, thread: dict[str, Any], comment_id: str) -> bool:
        return self.conn.execute(
            """SELECT 1 FROM candidates WHERE job = ? AND label = ? AND source_kind = 'comment_links'
               AND subreddit = ? AND post_id = ? AND comment_id = ? LIMIT 1""",
            (self.job.name, label, thread["subreddit"], thread["id"], comment_id),
        ).fetchone() is not None

    # ------------------------------------------------------------ files read before

    def _already_read(self, path: Path, stat: os.stat_result, digest: str) -> bool:
        row = self.conn.execute(
            "SELECT size, mtime, filter, status FROM dump_files WHERE job = ? AND path = ?",
            (self.job.name, str(path)),
        ).fetchone()
        return row is not None and row["status"] == "done" and row["size"] == stat.st_size \
            and row["mtime"] == stat.st_mtime and row["filter"] == digest

    def _remember_file(self, path: Path, stat: os.stat_result, report: FileReport, digest: str) -> None:
        with catalog.transaction(self.conn):
            self.conn.execute(
                """INSERT INTO dump_files (job, path, kind, size, mtime, filter, status, lines, matches, error,
                                           finished_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (job, path) DO UPDATE SET kind = excluded.kind, size = excluded.size,
                       mtime = excluded.mtime, filter = excluded.filter, status = excluded.status,
                       lines = excluded.lines, matches = excluded.matches, error = excluded.error,
                       finished_at = excluded.finished_at""",
                (self.job.name, str(path), report.kind, stat.st_size, stat.st_mtime, digest, report.status,
                 report.lines, report.matches, report.error, time.time()),
            )


def _digest(value: Any) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0

