"""The backfill stage, wired from settings: read Reddit dump files into the catalog (tasks.dump)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flows.settings import Settings, secret_value
from tasks import catalog
from tasks.dump import BackfillCallback, Backfiller, BackfillSummary, DumpPathError, resolve_dumps
from tasks.imgur import ImgurClient
from tasks.jobs import Job
from tasks.reddit import Backoff, LinkedPosts, is_auth_failure, make_reddit
from tasks.scrape import Harvester, LinkedPostLookup

log = logging.getLogger(__name__)


def backfill_job(settings: Settings, job: Job, on_progress: BackfillCallback | None = None, *,
                 dumps: list[str] | None = None, base_dir: str | Path | None = None,
                 force: bool = False) -> BackfillSummary:
    """Read the job's dump files (or `dumps`, which replace them) into the catalog under `settings.data_dir`.

    Relative paths and globs are relative to `base_dir` (the CLI passes the job file's folder). Raises
    DumpPathError when there is no dump to read or a pattern names no file. Reddit credentials are optional:
    with them, links to other Reddit posts (galleries) are followed as the API path does; without them they
    are counted as `reddit_post_link`."""
    patterns = list(dumps or job.dumps)
    if not patterns:
        raise DumpPathError([f"job {job.name} lists no dump files: add `dumps: [RS_2019-*.zst, RC_2019-*.zst]` "
                             "to the job file, or name them on the command line"])
    paths = resolve_dumps(patterns, base_dir if base_dir is not None else Path.cwd())
    imgur = ImgurClient(secret_value(settings.imgur_client_id), settings.imgur_api_url)
    harvester = Harvester(job, imgur, _linked_posts(settings))
    conn = catalog.connect(settings.catalog_path)
    try:
        return Backfiller(conn, job, harvester, force=force, on_progress=on_progress).run(paths)
    finally:
        conn.close()


def _linked_posts(settings: Settings) -> LinkedPostLookup | None:
    """Linked posts through the API when credentials are set. A failure skips the link, not the file: the
    dump has been paid for by then, and the link is counted in the summary."""
    client_id, secret = secret_value(settings.reddit_client_id), secret_value(settings.reddit_client_secret)
    if not client_id or not secret:
        return None
    oauth_url, reddit_url = settings.reddit_urls
    reddit = make_reddit(client_id, secret, secret_value(settings.reddit_user_agent) or "yotsuba-net",
                         oauth_url=oauth_url, reddit_url=reddit_url, timeout=settings.reddit_timeout_seconds)
    lookup = LinkedPosts(reddit, Backoff(max_waits=settings.reddit_max_rate_limit_waits,
                                         max_wait_seconds=settings.reddit_max_wait_seconds))
    failed: set[str] = set()
    state = {"refused": False}

    def tolerant(post_id: str) -> dict[str, Any] | None:
        if state["refused"] or post_id in failed:
            return None
        try:
            return lookup(post_id)
        except Exception as exc:  # noqa: BLE001 - any failure: count the link as skipped, go on
            failed.add(post_id)
            if is_auth_failure(exc):
                state["refused"] = True
                log.warning("Reddit refused the credentials: links to other posts are not followed this run")
            else:
                log.warning("could not fetch linked post %s: %s: %s", post_id, type(exc).__name__, exc)
            return None

    return tolerant
