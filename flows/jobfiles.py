"""The edge of a flow run: settings from the environment, the job from its file.

A deployment's flow run reads `Settings()` from its worker's environment. The CLI and the demo have built
their settings already (a --data-dir option, the demo's fake Reddit credentials): they lend them to the
flows they start in this process with `using_settings`, since secrets must never become flow parameters.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from flows.settings import Settings
from tasks.jobs import Job, load_job
from tasks.locks import job_lock

R = TypeVar("R")

_lent: list[Settings] = []


@contextmanager
def using_settings(settings: Settings) -> Iterator[Settings]:
    _lent.append(settings)
    try:
        yield settings
    finally:
        _lent.pop()


def current_settings() -> Settings:
    return _lent[-1] if _lent else Settings()


def load_job_for_flow(job_file: Path) -> tuple[Settings, Job]:
    """A bad job file fails the run at once, with every problem in the message (tasks.jobs.JobFileError)."""
    return current_settings(), load_job(job_file)


def one_run_per_job(flow_fn: Callable[..., R]) -> Callable[..., R]:
    """A flow function (first parameter: the job file) that runs holding the job's lock (tasks.locks): a
    second run of the same job, from any process, stops at once naming the first. Put it under `@flow`."""

    @functools.wraps(flow_fn)
    def locked(job_file: str, *args: Any, **kwargs: Any) -> R:
        settings, job = load_job_for_flow(Path(job_file))
        with job_lock(settings.data_dir, job.name):
            return flow_fn(job_file, *args, **kwargs)

    return locked
