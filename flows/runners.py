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


# What each attempt of a retried task found. A retried task is one task run (one id); an attempt that raised
# to be retried still stored its findings in the catalog, and the run's summary must count them.
_attempts: dict[str, list[Any]] = {}


def remember_attempt(value: Any) -> None:
    from prefect.runtime import task_run

    _attempts.setdefault(str(task_run.id), []).append(value)


def attempts_of(task_run_id: Any) -> list[Any]:
    return _attempts.pop(str(task_run_id), [])


def retry_options(settings: Settings) -> dict[str, Any]:
    """Network tasks: retries with exponential backoff and jitter, from the settings."""
    from prefect.tasks import exponential_backoff

    return {"retries": settings.task_retries,
            "retry_delay_seconds": exponential_backoff(backoff_factor=settings.task_retry_delay_seconds),
            "retry_jitter_factor": 0.5}
