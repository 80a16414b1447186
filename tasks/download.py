"""Downloading candidates into the image store: concurrent, polite, crash-safe.

- aiohttp with a global concurrency (a fixed pool of workers) and a per-host connection limit;
  connect and read timeouts; retries with exponential backoff and jitter on connection errors,
  timeouts, 429 and 5xx, honouring Retry-After; never on 403/404/410.
- Redirects are followed by hand (at most `max_redirects`), so that every hop passes the host policy
  and Imgur's redirect to its deleted-image placeholder is recognised as `removed`.
- Bodies are capped while streaming, must be an image by magic bytes and decode fully; then they are
  stored by content (tasks.store) and only then recorded in the catalog, so a crash at any point
  leaves no partial file in the store and no row pointing at nothing.
- A rerun fetches only what has no final row; candidates sharing a URL cause one request.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import logging
import os
import random
import re
import socket
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from tasks import catalog
from tasks.images import ImageInfo, Rejected, inspect_image, is_imgur_removed_placeholder
from tasks.redact import redact
from tasks.store import ImageStore

log = logging.getLogger(__name__)

DOWNLOADED = "downloaded"  # new bytes, stored by this fetch
ALREADY_HAD = "already_had"  # the URL was fetched before (for another candidate): no request made
DUPLICATE = "duplicate"  # fetched, but the same bytes were already in the store
REMOVED = "removed"  # the host says the image was deleted (Imgur's removed.png)
NOT_FOUND = "not_found"  # 404 or 410
REJECTED = "rejected"  # answered, but not an image we keep (reason says why)
FAILED = "failed"  # gave up after retries (reason says why); tried again on the next run
STATUSES = (DOWNLOADED, ALREADY_HAD, DUPLICATE, REMOVED, NOT_FOUND, REJECTED, FAILED)
HAS_IMAGE = (DOWNLOADED, ALREADY_HAD, DUPLICATE)

RETRY_STATUSES = {429, 500, 502, 503, 504}
NUMERIC_LAST_LABEL = re.compile(r"(?:^|\.)(?:0x[0-9a-f]*|[0-9]+)\.?$", re.IGNORECASE)
REDIRECT_STATUSES = {301, 302, 303, 307, 308}


@dataclass(frozen=True)
class DownloadConfig:
    """What a download run may do. The settable values have no defaults here: they come from the Settings
    fields (flows/settings.py `download_config`), where each default is stated once."""

    concurrency: int  # requests in flight at once (the number of workers)
    per_host: int  # connections to one host at once
    connect_timeout: float
    read_timeout: float  # the longest silence inside a body
    total_timeout: float  # the most one URL may take, all attempts and back-offs included
    max_attempts: int
    max_bytes: int
    max_pixels: int
    allow_private_hosts: bool
    backoff_base: float = 0.5
    max_backoff: float = 60.0
    max_redirects: int = 5
    user_agent: str = "yotsuba-net/0.1 (anime face dataset builder)"


@dataclass
class FetchResult:
    url: str
    status: str
    reason: str | None = None
    http_status: int | None = None
    error: str | None = None
    sha256: str | None = None
    info: ImageInfo | None = None
    final_url: str | None = None
    attempts: int = 0
    bytes: int = 0


@dataclass
class Body:
    """A fetched body still to be validated and stored (CPU work, done off the network slots)."""

    url: str
    final_url: str
    data: bytes
    attempts: int = 0


class _Retry(Exception):
    def __init__(self, reason: str, detail: str = "", http_status: int | None = None, delay: float | None = None):
        self.reason, self.detail, self.http_status, self.delay = reason, detail, http_status, delay
        super().__init__(f"{reason} {detail}".strip())


# ---------------------------------------------------------------- host policy


class HostRefused(OSError):
    """A host that resolves to an address we must not fetch from (links in comments are arbitrary URLs)."""


class HostPolicy:
    def __init__(self, allow_private: bool):
        self.allow_private = allow_private

    def address_allowed(self, address: str) -> bool:
        if self.allow_private:
            return True
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        return not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
                    or ip.is_unspecified)

    def check_url(self, url: URL) -> None:
        if url.scheme not in ("http", "https"):
            raise Rejected("bad_scheme", url.scheme or "none")
        host = url.host or ""
        if not host:
            raise Rejected("bad_url", "no host")
        try:
            literal = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            if NUMERIC_LAST_LABEL.search(host):
                # `0`, `127.1`, `2130706433`, `999.1.1.1`: not an address, and not a name either (a URL parser
                # reads a host ending in a number as IPv4). Resolvers guess (`0` is 0.0.0.0) or fail, and a
                # failure would be retried on every run: the URL itself is wrong, so the verdict is final.
                raise Rejected("bad_url", f"invalid numeric host {host!r}") from None
            return  # a name: checked when resolved (PolicyResolver), so a redirect or rebinding cannot dodge it
        if literal.is_unspecified:
            raise Rejected("bad_url", f"unspecified address {host}")  # 0.0.0.0 or ::, a destination nowhere
        if not self.address_allowed(str(literal)):
            raise Rejected("private_host", host)


class PolicyResolver(ThreadedResolver):
    def __init__(self, policy: HostPolicy):
        super().__init__()
        self.policy = policy

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[Any]:
        results = await super().resolve(host, port, family)
        refused = [r["host"] for r in results if not self.policy.address_allowed(r["host"])]
        if refused:
            raise HostRefused(f"{host} resolves to a private or local address ({refused[0]})")
        return results


def _is_host_refused(exc: BaseException) -> bool:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, HostRefused) or isinstance(getattr(exc, "os_error", None), HostRefused):
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


# ---------------------------------------------------------------- fetching


class Fetcher:
    """Fetches URLs into the store. One per event loop."""

    def __init__(self, store: ImageStore, config: DownloadConfig, executor: ThreadPoolExecutor,
                 sleep: Callable[[float], Any] = asyncio.sleep):
        self.store = store
        self.config = config
        self.executor = executor
        self.policy = HostPolicy(config.allow_private_hosts)
        self.sleep = sleep

    def session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self.config.concurrency, limit_per_host=self.config.per_host,
                                         resolver=PolicyResolver(self.policy), ttl_dns_cache=300)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.config.connect_timeout,
                                        sock_read=self.config.read_timeout)
        return aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     headers={"User-Agent": self.config.user_agent}, trust_env=False)

    async def fetch(self, session: aiohttp.ClientSession, url: str) -> FetchResult | Body:
        """The network part, with retries: a final FetchResult, or a Body for `keep`. The whole of it, every
        attempt and back-off, runs under one deadline: a host that drips a byte now and then never trips the
        read timeout, and would otherwise hold a worker for as long as it likes."""
        attempts = 0
        last: _Retry | None = None
        try:
            async with asyncio.timeout(self.config.total_timeout):
                for attempt in range(1, self.config.max_attempts + 1):
                    attempts = attempt
                    try:
                        result = await self._attempt(session, url)
                    except _Retry as retry:
                        last = retry
                        if attempt < self.config.max_attempts:
                            await self.sleep(self._delay(attempt, retry.delay))
                        continue
                    except Rejected as rejected:
                        result = FetchResult(url, REJECTED, reason=rejected.reason, error=rejected.detail or None)
                    result.attempts = attempt
                    return result
        except TimeoutError:
            return FetchResult(url, FAILED, reason="deadline", attempts=attempts,
                               error=f"not done within {self.config.total_timeout:g} s, all attempts included")
        assert last is not None
        return FetchResult(url, FAILED, reason=last.reason, http_status=last.http_status,
                           error=last.detail or None, attempts=self.config.max_attempts)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(self.config.max_backoff, retry_after)
        return min(self.config.max_backoff, self.config.backoff_base * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)

    async def _attempt(self, session: aiohttp.ClientSession, url: str) -> FetchResult | Body:
        current = URL(url, encoded="%" in url)
        try:
            for _hop in range(self.config.max_redirects + 1):
                self.policy.check_url(current)
                async with session.get(current, allow_redirects=False) as response:
                    status = response.status
                    if status in REDIRECT_STATUSES:
                        location = response.headers.get("Location")
                        if not location:
                            raise Rejected("bad_redirect", f"HTTP {status} without Location")
                        current = current.join(URL(location))
                        if is_imgur_removed_placeholder(current.path):
                            return FetchResult(url, REMOVED, http_status=status, final_url=str(current))
                        continue
                    if status in (404, 410):
                        return FetchResult(url, NOT_FOUND, http_status=status, final_url=str(current))
                    if status in RETRY_STATUSES:
                        raise _Retry(f"http_{status}", http_status=status,
                                     delay=_retry_after(response.headers.get("Retry-After")))
                    if status != 200:
                        return FetchResult(url, REJECTED, reason="forbidden" if status == 403 else f"http_{status}",
                                           http_status=status, final_url=str(current))
                    return Body(url, str(current), await self._read_capped(response))
            return FetchResult(url, REJECTED, reason="too_many_redirects", final_url=str(current))
        except (Rejected, _Retry):
            raise
        except aiohttp.ClientConnectorError as exc:
            if _is_host_refused(exc):
                raise Rejected("private_host", str(exc.os_error)) from None
            raise _Retry("connection_error", str(exc)) from None
        except TimeoutError as exc:  # before ClientConnectionError: aiohttp's read timeout is both
            raise _Retry("timeout", str(exc) or "read timed out") from None
        except aiohttp.ClientPayloadError as exc:
            raise _Retry("incomplete_body", str(exc)) from None
        except (aiohttp.ClientConnectionError, ConnectionResetError) as exc:
            raise _Retry("connection_error", f"{type(exc).__name__}: {exc}") from None
        except aiohttp.ClientError as exc:
            raise _Retry("client_error", f"{type(exc).__name__}: {exc}") from None

    async def _read_capped(self, response: aiohttp.ClientResponse) -> bytes:
        cap = self.config.max_bytes
        if response.content_length is not None and response.content_length > cap:
            raise Rejected("too_large", f"Content-Length {response.content_length} > {cap}")
        body = bytearray()
        async for chunk in response.content.iter_chunked(1 << 16):
            body.extend(chunk)
            if len(body) > cap:
                raise Rejected("too_large", f"body over {cap} bytes")
        return bytes(body)

    async def keep(self, body: Body) -> FetchResult:
        """Validate and store a body. CPU and disk work: in threads, off the event loop."""
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self.executor, self._validate_and_store, body.url, body.final_url,
                                            body.data)
        result.attempts = body.attempts
        return result

    async def fetch_and_keep(self, session: aiohttp.ClientSession, url: str) -> FetchResult:
        outcome = await self.fetch(session, url)
        return await self.keep(outcome) if isinstance(outcome, Body) else outcome

    def _validate_and_store(self, url: str, final_url: str, data: bytes) -> FetchResult:
        try:
            info = inspect_image(data, self.config.max_pixels)
        except Rejected as rejected:
            return FetchResult(url, REJECTED, reason=rejected.reason, error=rejected.detail or None, http_status=200,
                               final_url=final_url)
        host = URL(final_url).host or ""
        if "imgur" in host and is_imgur_removed_placeholder(URL(final_url).path, info):
            return FetchResult(url, REMOVED, http_status=200, final_url=final_url)
        sha256, created = self.store.put(data, info.ext)
        return FetchResult(url, DOWNLOADED if created else DUPLICATE, http_status=200, sha256=sha256, info=info,
                           final_url=final_url, bytes=len(data))


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


async def fetch_all(urls: list[str], store: ImageStore, config: DownloadConfig,
                    on_result: Callable[[FetchResult], None]) -> None:
    """Fetch every URL with `config.concurrency` workers; `on_result` is called on the loop for each."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for url in urls:
        queue.put_nowait(url)
    # Decoding (Pillow releases the GIL) and fsync overlap well in threads; a few more than cores pays off.
    workers = min(8, (os.cpu_count() or 2) * 2)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="yotsuba-decode") as executor:
        fetcher = Fetcher(store, config, executor)
        # A network slot is freed as soon as its body has arrived: validating and storing happen in tasks
        # of their own, bounded so that at most 2 x concurrency bodies wait in memory.
        waiting_bodies = asyncio.Semaphore(2 * config.concurrency)
        keeping: set[asyncio.Task[None]] = set()

        async def keep(body: Body) -> None:
            try:
                on_result(await fetcher.keep(body))
            finally:
                waiting_bodies.release()

        async with fetcher.session() as session:

            async def worker() -> None:
                while True:
                    try:
                        url = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    outcome = await fetcher.fetch(session, url)
                    if isinstance(outcome, Body):
                        await waiting_bodies.acquire()
                        task = asyncio.create_task(keep(outcome))
                        keeping.add(task)
                        task.add_done_callback(keeping.discard)
                    else:
                        on_result(outcome)

            await asyncio.gather(*(worker() for _ in range(min(config.concurrency, max(1, len(urls))))))
            await asyncio.gather(*list(keeping))


# ---------------------------------------------------------------- the job


@dataclass
class DownloadSummary:
    job: str
    by_status: Counter[str] = field(default_factory=Counter)  # per candidate
    rejected: Counter[str] = field(default_factory=Counter)  # per URL fetched
    failed: Counter[str] = field(default_factory=Counter)
    urls: int = 0
    bytes: int = 0
    seconds: float = 0.0
    partials_cleaned: int = 0

    @property
    def images_per_second(self) -> float:
        return self.urls / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "candidates": {status: self.by_status.get(status, 0) for status in STATUSES},
            "rejected": dict(sorted(self.rejected.items())),
            "failed": dict(sorted(self.failed.items())),
            "urls_fetched": self.urls,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 2),
            "partials_cleaned": self.partials_cleaned,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DownloadSummary:
        return cls(data["job"], Counter({k: v for k, v in data["candidates"].items() if v}),
                   Counter(data["rejected"]), Counter(data["failed"]), data["urls_fetched"], data["bytes"],
                   data["seconds"], data["partials_cleaned"])


def pending_candidates(conn: sqlite3.Connection, job: str) -> list[tuple[int, str]]:
    """Candidates with no final download row: never tried, or failed last time."""
    rows = conn.execute(
        """SELECT c.id, c.url FROM candidates c LEFT JOIN downloads d ON d.candidate_id = c.id
           WHERE c.job = ? AND (d.candidate_id IS NULL OR d.status = ?) ORDER BY c.id""",
        (job, FAILED),
    ).fetchall()
    return [(row[0], row[1]) for row in rows]


def _known_results(conn: sqlite3.Connection, urls: list[str]) -> dict[str, sqlite3.Row]:
    """The final result already recorded for each URL (from any candidate), if any."""
    known: dict[str, sqlite3.Row] = {}
    for start in range(0, len(urls), 500):
        chunk = urls[start : start + 500]
        rows = conn.execute(
            f"""SELECT c.url, d.* FROM downloads d JOIN candidates c ON c.id = d.candidate_id
                WHERE d.status != ? AND c.url IN ({",".join("?" * len(chunk))})""",
            (FAILED, *chunk),
        ).fetchall()
        for row in rows:
            known.setdefault(row["url"], row)
    return known


def record_result(conn: sqlite3.Connection, candidate_ids: list[int], result: FetchResult) -> list[str]:
    """Write the image row (if any) and one download row per candidate, atomically. Returns their statuses."""
    now = time.time()
    statuses = []
    with catalog.transaction(conn):
        if result.sha256 and result.info:
            conn.execute(
                """INSERT INTO images (sha256, ext, bytes, width, height, format, first_url, stored_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sha256) DO NOTHING""",
                (result.sha256, result.info.ext, result.bytes, result.info.width, result.info.height,
                 result.info.format, result.url, now),
            )
        for index, candidate_id in enumerate(candidate_ids):
            status = result.status if index == 0 or result.status not in HAS_IMAGE else ALREADY_HAD
            conn.execute(
                """INSERT INTO downloads (candidate_id, status, reason, http_status, error, sha256, final_url,
                                          attempts, fetched_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (candidate_id) DO UPDATE SET status = excluded.status, reason = excluded.reason,
                       http_status = excluded.http_status, error = excluded.error, sha256 = excluded.sha256,
                       final_url = excluded.final_url, attempts = downloads.attempts + excluded.attempts,
                       fetched_at = excluded.fetched_at""",
                (candidate_id, status, result.reason, result.http_status, result.error and redact(result.error),
                 result.sha256, result.final_url and redact(result.final_url), result.attempts, now),
            )
            statuses.append(status)
    return statuses


ProgressCallback = Callable[[int, int, FetchResult | None], None]  # (done, total, last result)


def download_job(conn: sqlite3.Connection, store: ImageStore, job: str, config: DownloadConfig,
                 on_progress: ProgressCallback | None = None) -> DownloadSummary:
    """Fetch every candidate of `job` that has no final download row yet."""
    started = time.monotonic()
    summary = DownloadSummary(job, partials_cleaned=store.clean_partials())
    by_url: dict[str, list[int]] = {}
    for candidate_id, url in pending_candidates(conn, job):
        by_url.setdefault(url, []).append(candidate_id)

    for url, row in _known_results(conn, list(by_url)).items():
        # Fetched before for another candidate: reuse the answer, no request.
        reused = FetchResult(url, row["status"], reason=row["reason"], http_status=row["http_status"],
                             error=row["error"], sha256=row["sha256"], final_url=row["final_url"])
        if reused.status in HAS_IMAGE:
            reused.status = ALREADY_HAD
        summary.by_status.update(record_result(conn, by_url.pop(url), reused))

    total = len(by_url)
    done = 0
    if on_progress:
        on_progress(0, total, None)

    def on_result(result: FetchResult) -> None:
        nonlocal done
        done += 1
        summary.by_status.update(record_result(conn, by_url[result.url], result))
        summary.bytes += result.bytes
        if result.status == REJECTED:
            summary.rejected[result.reason or "unknown"] += 1
        elif result.status == FAILED:
            summary.failed[result.reason or "unknown"] += 1
            log.warning("giving up on %s after %d attempts: %s", redact(result.url), result.attempts, result.reason)
        if on_progress:
            on_progress(done, total, result)

    asyncio.run(fetch_all(list(by_url), store, config, on_result))
    summary.urls = total
    summary.seconds = time.monotonic() - started
    return summary
