"""The task runner is a setting: a thread pool here (each detection batch over threads of its own), or Dask,
on a LocalCluster or an existing cluster, so the CPU stages scale past one machine."""

from __future__ import annotations

import os
from typing import Any

from flows.settings import Settings


def task_runner(settings: Settings) -> Any:
    if settings.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if settings.dask_address:
            return DaskTaskRunner(address=settings.dask_address)
        workers = settings.dask_workers or os.cpu_count() or 1
        # One thread per worker process: detection is CPU work, one batch per core at a time.
        return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True,
                                              "dashboard_address": None})
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=max(4, os.cpu_count() or 1))


def uses_cluster(settings: Settings) -> bool:
    return settings.task_runner == "dask"


def attempts_so_far(settings: Settings, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Inside a retried task: record this attempt's summary in the catalog and return every attempt's so far
    (this one last). An attempt that raised to be retried still stored what it found, and the summary the task
    returns must count it; the catalog is what the attempts share, on threads here or processes on Dask."""
    from prefect.runtime import task_run

    from tasks import catalog

    conn = catalog.connect(settings.catalog_path)
    try:
        return catalog.record_attempt(conn, str(task_run.id), summary)
    finally:
        conn.close()


def retry_options(settings: Settings) -> dict[str, Any]:
    """Network tasks: retries with exponential backoff and jitter, from the settings."""
    from prefect.tasks import exponential_backoff

    return {"retries": settings.task_retries,
            "retry_delay_seconds": exponential_backoff(backoff_factor=settings.task_retry_delay_seconds),
            "retry_jitter_factor": 0.5}
