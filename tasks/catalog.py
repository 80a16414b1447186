"""The catalog: one SQLite database (WAL) under the data directory, the source of truth for the data.

Each stage reads the rows it needs and writes its own; a rerun does only what has no row yet.
Schema changes are numbered migrations applied in order (`PRAGMA user_version` records the last).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tasks.errors import CatalogError
from tasks.redact import redact

MIGRATIONS: list[str] = [
    # 1: scraping
    """
    CREATE TABLE sources (
        job            TEXT NOT NULL,
        source_key     TEXT NOT NULL,
        label          TEXT NOT NULL,
        kind           TEXT NOT NULL,
        subreddit      TEXT NOT NULL,
        spec           TEXT NOT NULL,        -- the source as JSON, for people reading the catalog
        watermark_utc  REAL,                 -- newest post time of the last completed `new` pass
        last_run_at    REAL,
        PRIMARY KEY (job, source_key)
    );
    CREATE TABLE seen_posts (
        job            TEXT NOT NULL,
        source_key     TEXT NOT NULL,
        post_id        TEXT NOT NULL,
        created_utc    REAL,
        num_comments   INTEGER,             -- threads are read again when this grows
        seen_at        REAL NOT NULL,
        PRIMARY KEY (job, source_key, post_id)
    );
    CREATE TABLE candidates (
        id             INTEGER PRIMARY KEY,
        job            TEXT NOT NULL,
        label          TEXT NOT NULL,
        source_kind    TEXT NOT NULL,
        source_key     TEXT NOT NULL,
        subreddit      TEXT NOT NULL,
        post_id        TEXT NOT NULL,
        comment_id     TEXT NOT NULL DEFAULT '',
        url            TEXT NOT NULL,
        position       INTEGER NOT NULL DEFAULT 0,
        text           TEXT,
        author         TEXT,
        created_utc    REAL,
        permalink      TEXT,
        score          INTEGER,
        nsfw           INTEGER NOT NULL DEFAULT 0,
        found_at       REAL NOT NULL,
        UNIQUE (job, label, source_kind, subreddit, post_id, comment_id, url)
    );
    CREATE INDEX candidates_by_url ON candidates (url);
    CREATE TABLE scrape_runs (
        id             INTEGER PRIMARY KEY,
        job            TEXT NOT NULL,
        started_at     REAL NOT NULL,
        finished_at    REAL,
        summary        TEXT
    );
    """,
    # 2: downloading into the content-addressed image store
    """
    CREATE TABLE images (
        sha256         TEXT PRIMARY KEY,
        ext            TEXT NOT NULL,        -- the file is images/<sha256[:2]>/<sha256>.<ext>
        bytes          INTEGER NOT NULL,
        width          INTEGER NOT NULL,
        height         INTEGER NOT NULL,
        format         TEXT NOT NULL,        -- JPEG | PNG | WEBP | GIF
        first_url      TEXT NOT NULL,
        stored_at      REAL NOT NULL
    );
    CREATE TABLE downloads (
        candidate_id   INTEGER PRIMARY KEY REFERENCES candidates (id),
        status         TEXT NOT NULL,        -- downloaded | duplicate | removed | not_found | rejected | failed
        reason         TEXT,                 -- why, for rejected and failed (not_an_image, too_large, ...)
        http_status    INTEGER,
        error          TEXT,
        sha256         TEXT REFERENCES images (sha256),
        final_url      TEXT,
        attempts       INTEGER NOT NULL DEFAULT 0,
        fetched_at     REAL NOT NULL
    );
    CREATE INDEX downloads_by_sha ON downloads (sha256);
    CREATE INDEX downloads_by_status ON downloads (status);
    """,
    # 3: faces and the dataset view
    """
    CREATE TABLE detections (
        sha256          TEXT NOT NULL REFERENCES images (sha256),
        params          TEXT NOT NULL,       -- FaceParams.key: detection and crop parameters
        mode            TEXT NOT NULL,       -- detect | crops | crops_unchecked
        faces           INTEGER,             -- NULL when the image could not be read
        grayscale_score REAL,                -- tasks.grayscale.colour_score of the whole image
        error           TEXT,
        done_at         REAL NOT NULL,
        PRIMARY KEY (sha256, params, mode)
    );
    CREATE TABLE faces (
        id              INTEGER PRIMARY KEY,
        sha256          TEXT NOT NULL,       -- the parent image
        params          TEXT NOT NULL,
        mode            TEXT NOT NULL,
        idx             INTEGER NOT NULL,    -- position among the image's faces (top to bottom)
        x INTEGER NOT NULL, y INTEGER NOT NULL, w INTEGER NOT NULL, h INTEGER NOT NULL,
        path            TEXT NOT NULL,       -- relative to the data directory
        hash_kind       TEXT,                -- e.g. dhash8
        hash            TEXT,                -- hex
        UNIQUE (sha256, params, mode, idx)
    );
    CREATE TABLE dataset (
        job             TEXT NOT NULL,
        face_id         INTEGER NOT NULL REFERENCES faces (id),
        label           TEXT NOT NULL,       -- the label the image was found for
        role            TEXT NOT NULL,       -- labelled (one face in its image) | unlabelled (several)
        status          TEXT NOT NULL,       -- kept | duplicate | grayscale | cross_label
        cluster         INTEGER,             -- near-duplicate cluster (face id of its first member)
        PRIMARY KEY (job, face_id, label)
    );
    CREATE INDEX dataset_by_job ON dataset (job, status, role);
    """,
    # 4: labels suggested by a model for unlabelled faces, kept apart from the labelled data
    """
    CREATE TABLE suggestions (
        job             TEXT NOT NULL,
        face_id         INTEGER NOT NULL REFERENCES faces (id),
        model_uri       TEXT NOT NULL,
        label           TEXT NOT NULL,
        confidence      REAL NOT NULL,
        suggested_at    REAL NOT NULL,
        PRIMARY KEY (job, face_id, model_uri)
    );
    """,
    # 5: backfill from Reddit dump files (tasks.dump)
    """
    CREATE TABLE dump_files (
        job             TEXT NOT NULL,
        path            TEXT NOT NULL,       -- resolved path of the dump file
        kind            TEXT NOT NULL,       -- submissions | comments
        size            INTEGER NOT NULL,    -- with mtime: a file that changed is read again
        mtime           REAL NOT NULL,
        filter          TEXT NOT NULL,       -- digest of what the job keeps: a changed job reads files again
        status          TEXT NOT NULL,       -- done | failed
        lines           INTEGER NOT NULL DEFAULT 0,
        matches         INTEGER NOT NULL DEFAULT 0,
        error           TEXT,                -- `path:line: reason` for a failed file
        finished_at     REAL NOT NULL,
        PRIMARY KEY (job, path)
    );
    CREATE TABLE dump_threads (
        job             TEXT NOT NULL,
        source_key      TEXT NOT NULL,       -- the comment_links source whose query and flair the thread meets
        post_id         TEXT NOT NULL,
        subreddit       TEXT NOT NULL,
        over_18         INTEGER NOT NULL,
        created_utc     REAL,
        PRIMARY KEY (job, source_key, post_id)
    );
    """,
    # 6: a pass over a source that stopped early (error, cap, limit) is resumed where it stopped, and the
    # watermark moves only when a pass has read everything down to the previous one
    """
    ALTER TABLE sources ADD COLUMN pass_top_utc REAL;      -- newest post time an unfinished pass has read
    ALTER TABLE sources ADD COLUMN pass_cursor_utc REAL;   -- oldest post time it has read: it goes on below
    """,
    # 7: what each attempt of a retried task found, for the summary its last attempt returns (the attempts may
    # run in other processes: on Dask, nothing but the catalog is shared)
    """
    CREATE TABLE task_attempts (
        task_run        TEXT NOT NULL,       -- Prefect's task run id: the attempts of one retried task
        attempt         INTEGER NOT NULL,
        summary         TEXT NOT NULL,       -- the attempt's summary (to_dict) as JSON
        recorded_at     REAL NOT NULL,
        PRIMARY KEY (task_run, attempt)
    );
    """,
    # 8: corrections from the review page (tasks.corrections): append-only; an undo is a row naming the one it undoes
    """
    CREATE TABLE corrections (
        id              INTEGER PRIMARY KEY,
        job             TEXT NOT NULL,
        face_id         INTEGER NOT NULL REFERENCES faces (id),
        action          TEXT NOT NULL,       -- relabel | exclude | include | accept_suggestion | reject_suggestion
                                             -- | keeper | undo
        value           TEXT,                -- the label (relabel, accept_suggestion)
        undoes          INTEGER REFERENCES corrections (id),
        who             TEXT NOT NULL,
        at              REAL NOT NULL
    );
    CREATE INDEX corrections_by_job ON corrections (job, face_id);
    """,
    # 9: faces found in rotated copies keep their angle; a file that could not be read is no verdict.
    # Errors recorded before this migration could not tell the two apart: each is tried once more.
    """
    ALTER TABLE faces ADD COLUMN angle REAL NOT NULL DEFAULT 0;
    ALTER TABLE detections ADD COLUMN transient INTEGER NOT NULL DEFAULT 0;
    UPDATE detections SET transient = 1 WHERE error IS NOT NULL;
    """,
]


@dataclass(frozen=True)
class Candidate:
    """One image URL found for one label, with where it was found."""

    job: str
    label: str
    source_kind: str
    source_key: str
    subreddit: str
    post_id: str
    url: str
    comment_id: str = ""
    position: int = 0
    text: str | None = None
    author: str | None = None
    created_utc: float | None = None
    permalink: str | None = None
    score: int | None = None
    nsfw: bool = False


CANDIDATE_COLUMNS = tuple(Candidate.__dataclass_fields__)


def connect(path: str | Path) -> sqlite3.Connection:
    """Open (and create or migrate) the catalog. One connection per thread."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CatalogError(f"the catalog's directory {path.parent} cannot be created: {exc.strerror}") from exc
    conn = None
    try:
        conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)  # explicit transactions only
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        migrate(conn)
    except (sqlite3.Error, CatalogError) as exc:
        if conn is not None:
            conn.close()
        if isinstance(exc, CatalogError):
            raise
        raise CatalogError(_catalog_problem(path, exc)) from exc
    return conn


def _catalog_problem(path: Path, exc: sqlite3.Error) -> str:
    text = str(exc)
    if "not a database" in text or "malformed" in text:
        return f"the catalog {path} is damaged ({text}): restore it from a backup, or move it away to start anew"
    if "readonly" in text or "unable to open" in text:
        return f"the catalog {path} cannot be written ({text}): is the data directory writable?"
    return f"the catalog {path} cannot be used: {text}"


def migrate(conn: sqlite3.Connection) -> int:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise CatalogError(
            f"the catalog's schema version {version} is newer than this yotsuba's ({len(MIGRATIONS)}): upgrade yotsuba"
        )
    for number in range(version, len(MIGRATIONS)):
        # executescript() would commit on its own; statement by statement keeps each migration atomic.
        with transaction(conn):
            # Several connections may open a new catalog at once (the scrape tasks of one flow run): the
            # write lock is held now, so read the version again and skip what another one has just done.
            if conn.execute("PRAGMA user_version").fetchone()[0] > number:
                continue
            for statement in _statements(MIGRATIONS[number]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number + 1}")
    return len(MIGRATIONS)


def _statements(script: str) -> Iterator[str]:
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer.strip()
            buffer = ""
    if buffer.strip():
        yield buffer.strip()


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")


# ---------------------------------------------------------------- sources and seen posts


def register_source(conn: sqlite3.Connection, job: str, source_key: str, label: str, kind: str,
                    subreddit: str, spec: dict[str, Any]) -> None:
    conn.execute(
        """INSERT INTO sources (job, source_key, label, kind, subreddit, spec) VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT (job, source_key) DO UPDATE SET spec = excluded.spec""",
        (job, source_key, label, kind, subreddit, json.dumps(spec, sort_keys=True)),
    )


@dataclass(frozen=True)
class SourceState:
    """Where a source's incremental reading stands. Every post from the job's floor (`since`) up to `watermark`
    has been read; an unfinished pass has read the posts from `pass_cursor` up to `pass_top` and goes on below
    `pass_cursor` next time."""

    watermark: float | None = None
    pass_top: float | None = None
    pass_cursor: float | None = None


def source_state(conn: sqlite3.Connection, job: str, source_key: str) -> SourceState:
    row = conn.execute(
        "SELECT watermark_utc, pass_top_utc, pass_cursor_utc FROM sources WHERE job = ? AND source_key = ?",
        (job, source_key),
    ).fetchone()
    return SourceState(*row) if row else SourceState()


def source_watermark(conn: sqlite3.Connection, job: str, source_key: str) -> float | None:
    return source_state(conn, job, source_key).watermark


def save_pass_progress(conn: sqlite3.Connection, job: str, source_key: str, top: float | None,
                       cursor: float | None) -> None:
    """An unfinished pass has read down to `cursor` (from `top`): the next run goes on from there."""
    conn.execute(
        "UPDATE sources SET pass_top_utc = ?, pass_cursor_utc = ?, last_run_at = ? WHERE job = ? AND source_key = ?",
        (top, cursor, time.time(), job, source_key),
    )


def finish_source_pass(conn: sqlite3.Connection, job: str, source_key: str, watermark: float | None) -> None:
    """Record a pass that read everything down to the previous watermark; the watermark only moves forward."""
    conn.execute(
        """UPDATE sources SET last_run_at = ?, pass_top_utc = NULL, pass_cursor_utc = NULL,
                  watermark_utc = CASE WHEN watermark_utc IS NULL OR ? > watermark_utc THEN ? ELSE watermark_utc END
           WHERE job = ? AND source_key = ?""",
        (time.time(), watermark, watermark, job, source_key),
    )


def seen_post(conn: sqlite3.Connection, job: str, source_key: str, post_id: str) -> sqlite3.Row | None:
    return conn.execute(
        "SELECT post_id, created_utc, num_comments FROM seen_posts WHERE job = ? AND source_key = ? AND post_id = ?",
        (job, source_key, post_id),
    ).fetchone()


def record_post(conn: sqlite3.Connection, job: str, source_key: str, post_id: str,
                created_utc: float | None, num_comments: int | None,
                candidates: Iterable[Candidate]) -> int:
    """Store a post as seen together with its candidates, atomically. Returns how many were new."""
    with transaction(conn):
        conn.execute(
            """INSERT INTO seen_posts (job, source_key, post_id, created_utc, num_comments, seen_at)
               VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT (job, source_key, post_id) DO UPDATE SET num_comments = excluded.num_comments""",
            (job, source_key, post_id, created_utc, num_comments, time.time()),
        )
        return insert_candidates(conn, candidates)


def insert_candidates(conn: sqlite3.Connection, candidates: Iterable[Candidate]) -> int:
    now = time.time()
    new = 0
    sql = (
        f"INSERT INTO candidates ({', '.join(CANDIDATE_COLUMNS)}, found_at) "
        f"VALUES ({', '.join('?' * len(CANDIDATE_COLUMNS))}, ?) ON CONFLICT DO NOTHING"
    )
    for candidate in candidates:
        values = asdict(candidate)
        values["nsfw"] = int(candidate.nsfw)
        # a link's `user:password@` is a secret, never stored (the fetch goes to the URL without it)
        values["url"] = redact(candidate.url)
        values["permalink"] = redact(candidate.permalink) if candidate.permalink else candidate.permalink
        cursor = conn.execute(sql, [*values.values(), now])
        new += cursor.rowcount
    return new


# ---------------------------------------------------------------- runs and reads


def start_scrape_run(conn: sqlite3.Connection, job: str) -> int:
    cursor = conn.execute("INSERT INTO scrape_runs (job, started_at) VALUES (?, ?)", (job, time.time()))
    return int(cursor.lastrowid)


def finish_scrape_run(conn: sqlite3.Connection, run_id: int, summary: dict[str, Any]) -> None:
    conn.execute(
        "UPDATE scrape_runs SET finished_at = ?, summary = ? WHERE id = ?",
        (time.time(), json.dumps(summary, sort_keys=True), run_id),
    )


def record_attempt(conn: sqlite3.Connection, task_run: str, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Store one attempt's summary of a retried task; every attempt's so far, oldest first (this one last)."""
    with transaction(conn):
        conn.execute(
            """INSERT INTO task_attempts (task_run, attempt, summary, recorded_at)
               SELECT ?, COALESCE(MAX(attempt), 0) + 1, ?, ? FROM task_attempts WHERE task_run = ?""",
            (task_run, json.dumps(summary, sort_keys=True), time.time(), task_run),
        )
        rows = conn.execute("SELECT summary FROM task_attempts WHERE task_run = ? ORDER BY attempt",
                            (task_run,)).fetchall()
    return [json.loads(row[0]) for row in rows]


def store_suggestions(conn: sqlite3.Connection, job: str, model_uri: str, rows: list[dict[str, Any]]) -> None:
    now = time.time()
    with transaction(conn):
        conn.executemany(
            """INSERT OR REPLACE INTO suggestions (job, face_id, model_uri, label, confidence, suggested_at)
               VALUES (?, ?, ?, ?, ?, ?)""",
            [(job, r["face_id"], model_uri, r["suggested"], r["confidence"], now) for r in rows],
        )
