"""One run of a job at a time: two runs of the same job would fetch every URL twice and record most of them
as duplicates, and race each other's detection and training.

The lock is an advisory `flock` on `<data>/locks/<job>.lock`, taken without waiting: a second run stops at
once with a message naming the first (pid, host, start time, command), read from the file. The kernel
releases a flock when its process dies, SIGKILL included, so a lock left by a dead run (its pid still in the
file) is simply taken over. The file is never deleted: deleting it would let a third run lock a new file
while the second still holds the old one. A run that already holds the lock takes it again freely (the
nightly flow holds it for its scrape, download, prepare and train subflows).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tasks.errors import Failure
from tasks.redact import redact


class JobLocked(Failure):
    """Another run of the same job holds its lock."""

    def __init__(self, job: str, holder: dict[str, Any], path: Path):
        self.job, self.holder, self.path = job, holder, path
        if holder.get("pid"):
            started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
            who = (f"pid {holder['pid']} on {holder.get('host', '?')}, started {started}, "
                   f"command: {holder.get('command', '?')}")
        else:
            who = "a run that is just starting"
        super().__init__(f"another run of job {job} is in progress ({who}); wait for it to end, or stop it. "
                         f"Lock: {path}")


# In this process: the locks held, by path, with how many times each was taken (a run's subflows take the
# lock their parent holds). Only lock state lives here; results never do.
_held: dict[Path, list[int]] = {}  # path -> [fd, depth]
_guard = threading.Lock()


def lock_path(data_dir: Path, job: str) -> Path:
    return data_dir / "locks" / f"{job}.lock"


def read_holder(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}


@contextmanager
def job_lock(data_dir: Path, job: str) -> Iterator[None]:
    """Hold the job's lock for the block, or raise JobLocked at once when another process holds it."""
    path = lock_path(data_dir, job).resolve()
    with _guard:
        if path in _held:
            _held[path][1] += 1
            fd = None
        else:
            fd = _acquire(path, job)
            _held[path] = [fd, 1]
    try:
        yield
    finally:
        with _guard:
            entry = _held[path]
            entry[1] -= 1
            if entry[1] == 0:
                del _held[path]
                _release(entry[0])


def _acquire(path: Path, job: str) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JobLocked(job, read_holder(path), path) from None
    except BaseException:
        os.close(fd)
        raise
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
              "command": redact(" ".join([Path(sys.argv[0]).name, *sys.argv[1:]]))}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)
    return fd


def _release(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)  # no holder to name any more; the file itself stays (see the module's note)
    finally:
        os.close(fd)  # closing the descriptor releases the flock
