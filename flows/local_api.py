"""Prefect's local API dies with the process that started it.

Without PREFECT_API_URL, Prefect runs flows against a temporary API server it starts itself: a uvicorn
subprocess (`prefect.server.api.server.SubprocessASGIServer`), stopped by an `atexit` hook. A process killed
with SIGKILL (or the OOM killer) runs no atexit hook, and the server kept running for good, holding its
port and its SQLite database. Here every such server gets a watchdog: a tiny process that blocks on a pipe
from this one and, when the pipe closes (this process ended, however it ended), stops the server. A
watchdog rather than PR_SET_PDEATHSIG in the server: that signal follows the *thread* that started the
child, and Prefect may start its server from a thread that ends before the run does.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from typing import Any

# Waits for EOF on stdin, then stops the server if it is still the process it was (not a reused pid):
# SIGTERM, then SIGKILL after 5 s. Python's standard library only, so it starts in milliseconds.
WATCHDOG = """
import os, signal, sys, time
pid, started = int(sys.argv[1]), sys.argv[2]
def alive():
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19] == started
    except (OSError, IndexError):
        return False
sys.stdin.buffer.read()
for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 0.0)):
    if not alive():
        break
    os.kill(pid, sig)
    deadline = time.monotonic() + wait
    while alive() and time.monotonic() < deadline:
        time.sleep(0.05)
"""

_watchdogs: list[subprocess.Popen[bytes]] = []  # kept so that their pipes stay open while this process lives


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (field 22 of /proc/PID/stat): with the pid, its identity."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def watch(process: subprocess.Popen[Any]) -> subprocess.Popen[bytes] | None:
    """Start a watchdog that stops `process` once this process has ended. Linux only (/proc)."""
    started = _start_time(process.pid)
    if started is None:
        return None
    watchdog = subprocess.Popen([sys.executable, "-I", "-S", "-c", WATCHDOG, str(process.pid), started],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)  # not in the terminal's group: Ctrl+C must not end it
    _watchdogs.append(watchdog)
    return watchdog


def local_api_dies_with_this_process() -> None:
    """Give every local API server Prefect starts from now on a watchdog (idempotent)."""
    from prefect.server.api.server import SubprocessASGIServer

    start = SubprocessASGIServer._run_uvicorn_command  # Prefect 3.8: the one place its server is spawned
    if getattr(start, "_yotsuba_watched", False):
        return

    @functools.wraps(start)
    def start_watched(self: SubprocessASGIServer) -> subprocess.Popen[Any]:
        process = start(self)
        watch(process)
        return process

    start_watched._yotsuba_watched = True  # type: ignore[attr-defined]
    SubprocessASGIServer._run_uvicorn_command = start_watched  # type: ignore[method-assign]
