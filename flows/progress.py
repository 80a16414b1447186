"""Progress from inside flows to whoever is watching: a rich bar in the CLI, nothing in a deployment.

Flow parameters must be serialisable, so a callback cannot be one; the CLI registers a reporter for a stage
here instead, in the same process, and the flow's tasks (threads of that process) call `report`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_reporters: dict[str, Callable[..., None]] = {}


@contextmanager
def reporting(stage: str, reporter: Callable[..., None]) -> Iterator[None]:
    _reporters[stage] = reporter
    try:
        yield
    finally:
        _reporters.pop(stage, None)


def reporter(stage: str) -> Callable[..., None] | None:
    return _reporters.get(stage)


def report(stage: str, *args: Any) -> None:
    fn = _reporters.get(stage)
    if fn is not None:
        fn(*args)
