"""The download stage, wired from settings."""

from __future__ import annotations

import dataclasses

from flows.settings import Settings
from tasks import catalog
from tasks.download import DownloadSummary, ProgressCallback, download_job
from tasks.jobs import Job
from tasks.store import ImageStore


def download(settings: Settings, job: Job, on_progress: ProgressCallback | None = None,
             concurrency: int | None = None) -> DownloadSummary:
    """Fetch every candidate of `job` not fetched yet into the image store under `settings.data_dir`."""
    config = settings.download_config()
    if concurrency:
        config = dataclasses.replace(config, concurrency=concurrency)
    conn = catalog.connect(settings.catalog_path)
    try:
        return download_job(conn, ImageStore(settings.data_dir), job.name, config, on_progress=on_progress)
    finally:
        conn.close()
