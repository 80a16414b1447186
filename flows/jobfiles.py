"""The edge of a flow run: settings from the environment, the job from its file.

A deployment's flow run reads `Settings()` from its worker's environment. The CLI and the demo have built
their settings already (a --data-dir option, the demo's fake Reddit credentials): they lend them to the
flows they start in this process with `using_settings`, since secrets must never become flow parameters.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flows.settings import Settings
from tasks.jobs import Job, load_job

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
