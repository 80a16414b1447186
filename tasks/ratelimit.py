"""Request pacing shared by every thread of a process that talks to one service.

A `RateLimiter` spaces acquisitions evenly at `per_second`, and every holder waits out a pause that one of
them learnt from the service (a 429's Retry-After, `X-RateLimit-Remaining: 0`). The scrape tasks of a flow
run are threads of one process, so one limiter per service and process (`shared_limiter`) is one limit for
all of them; across processes and machines the edge adds Prefect's global rate limit on top
(flows/limits.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol


class Limiter(Protocol):
    def acquire(self) -> float:
        """Block until a request may go out; returns the seconds waited."""

    def pause_until(self, monotonic_deadline: float) -> None:
        """No holder sends before this moment (a 429 or an exhausted quota said so)."""


class RateLimiter:
    """At most `per_second` acquisitions per second across every thread that holds it, evenly spaced
    (no bursts: a polite client to a free service)."""

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        self.interval = 1.0 / per_second
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = 0.0  # the earliest moment the next request may go out

    def acquire(self) -> float:
        with self._lock:  # reserve a slot, then wait for it outside the lock
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        wait = slot - now
        if wait > 0:
            self._sleep(wait)
        return max(wait, 0.0)

    def pause_until(self, monotonic_deadline: float) -> None:
        with self._lock:
            self._next = max(self._next, monotonic_deadline)


_shared: dict[tuple[str, float], RateLimiter] = {}
_shared_lock = threading.Lock()


def shared_limiter(service: str, per_second: float) -> RateLimiter:
    """The one limiter of this process for `service` at this rate (e.g. a host, or Reddit per client id)."""
    with _shared_lock:
        return _shared.setdefault((service, per_second), RateLimiter(per_second))
