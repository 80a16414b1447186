"""The download stage: the wiring from settings, and the `download` flow."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from prefect import flow, task

from flows import progress
from flows.artifacts import download_artifacts
from flows.jobfiles import load_job_for_flow, one_run_per_job
from flows.runners import attempts_so_far, retry_options
from flows.settings import Settings
from tasks import catalog
from tasks.download import FAILED, DownloadSummary, ProgressCallback, download_job
from tasks.jobs import Job
from tasks.store import ImageStore


class TransientDownloadError(RuntimeError):
    """URLs failed on timeouts, resets or 5xx after their own attempts: worth another pass later. Carries what
    every attempt so far did (it is stored)."""

    def __init__(self, summary: DownloadSummary):
        self.summary = summary
        super().__init__(f"{sum(summary.failed.values())} URLs failed: {dict(summary.failed)}")


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


def _retry_if_transient(task, task_run, state) -> bool:
    return isinstance(state.result(raise_on_failure=False), TransientDownloadError)


@task(retry_condition_fn=_retry_if_transient, task_run_name="download {job.name}")
def download_candidates(settings: Settings, job: Job, concurrency: int | None = None) -> DownloadSummary:
    """Network IO, one task: its own event loop fetches `concurrency` URLs at once within per-host limits
    (splitting it over machines would break those limits). Only failures are retried, and only they are
    fetched again: everything kept is in the catalog. Returns (or raises with) what every attempt did."""
    summary = download(settings, job, on_progress=progress.reporter("download"), concurrency=concurrency)
    attempts = [DownloadSummary.from_dict(a) for a in attempts_so_far(settings, summary.to_dict())]
    merged = merge_attempts(job.name, attempts)
    if summary.failed:  # failed = transient by definition (403/404/410 and rejects are final statuses)
        raise TransientDownloadError(merged)
    return merged


def merge_attempts(job: str, attempts: list[DownloadSummary]) -> DownloadSummary:
    """What all attempts kept; what is still failed after the last one."""
    merged = DownloadSummary(job)
    for index, attempt in enumerate(attempts):
        last = index == len(attempts) - 1
        merged.by_status.update({k: v for k, v in attempt.by_status.items() if last or k != FAILED})
        merged.rejected.update(attempt.rejected)
        merged.bytes += attempt.bytes
        merged.seconds += attempt.seconds
        merged.partials_cleaned += attempt.partials_cleaned
        merged.urls = max(merged.urls, attempt.urls)  # the first attempt saw them all; the rest, the failures
        if last:
            merged.failed.update(attempt.failed)
    return merged


def run_download(settings: Settings, job: Job, concurrency: int | None = None) -> DownloadSummary:
    future = download_candidates.with_options(**retry_options(settings)).submit(settings, job, concurrency)
    outcome = future.result(raise_on_failure=False)
    if isinstance(outcome, TransientDownloadError):
        summary = outcome.summary
    elif isinstance(outcome, BaseException):
        raise outcome
    else:
        summary = outcome
    download_artifacts(summary)
    return summary


@flow(name="download", log_prints=True)
@one_run_per_job
def download_flow(job_file: str, concurrency: int | None = None) -> DownloadSummary:
    """Fetch every candidate not fetched yet into the content-addressed image store."""
    settings, job = load_job_for_flow(Path(job_file))
    return run_download(settings, job, concurrency)
