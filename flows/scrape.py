"""The scrape stage, wired from settings: the edge where configuration becomes explicit arguments."""

from __future__ import annotations

from flows.settings import Settings, secret_value
from tasks import catalog
from tasks.imgur import ImgurClient
from tasks.jobs import Job
from tasks.reddit import Backoff, make_reddit
from tasks.scrape import ProgressCallback, Scraper, ScrapeSummary


def scrape_job(settings: Settings, job: Job, on_post: ProgressCallback | None = None) -> ScrapeSummary:
    """Scrape every source of `job` into the catalog under `settings.data_dir`."""
    oauth_url, reddit_url = settings.reddit_urls
    reddit = make_reddit(
        secret_value(settings.reddit_client_id),
        secret_value(settings.reddit_client_secret),
        secret_value(settings.reddit_user_agent) or "yotsuba-net",
        oauth_url=oauth_url,
        reddit_url=reddit_url,
        timeout=settings.reddit_timeout_seconds,
    )
    imgur = ImgurClient(secret_value(settings.imgur_client_id), settings.imgur_api_url)
    backoff = Backoff(max_waits=settings.reddit_max_rate_limit_waits, max_wait_seconds=settings.reddit_max_wait_seconds)
    conn = catalog.connect(settings.catalog_path)
    try:
        return Scraper(reddit, conn, job, imgur, backoff, on_post=on_post).run()
    finally:
        conn.close()
