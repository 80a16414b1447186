"""Request limits per service, shared by every scrape task: in one process through one `RateLimiter`, and, where
a Prefect server is configured (PREFECT_API_URL), across every worker through a Prefect global concurrency
limit with slot decay (`prefect.concurrency.sync.rate_limit`), made for exactly this."""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from flows.settings import Settings, secret_value
from tasks.ratelimit import Limiter, RateLimiter, shared_limiter

log = logging.getLogger(__name__)


def prefect_server_configured() -> bool:
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)


@dataclass
class PrefectRateLimit:
    """The process's own limiter first (threads here wait in memory, not on the API), then a slot of the
    server's global limit `name`, which decays at `per_second`: the same pace for every worker."""

    name: str
    per_second: float
    local: RateLimiter
    _ready: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def acquire(self) -> float:
        from prefect.concurrency.sync import rate_limit

        waited = self.local.acquire()
        self._ensure_limit()
        rate_limit(self.name, occupy=1, strict=True)
        return waited

    def pause_until(self, monotonic_deadline: float) -> None:
        self.local.pause_until(monotonic_deadline)

    def _ensure_limit(self) -> None:
        with self._lock:
            if self._ready:
                return
            from prefect import get_client

            # One slot that frees itself after 1/per_second: requests evenly spaced, no bursts.
            with get_client(sync_client=True) as client:
                client.upsert_global_concurrency_limit_by_name(self.name, limit=1,
                                                               slot_decay_per_second=self.per_second)
            self._ready = True


def limiter_for(service: str, per_second: float) -> Limiter:
    local = shared_limiter(service, per_second)
    if not prefect_server_configured():
        return local
    return PrefectRateLimit(f"yotsuba-{service}", per_second, local)


def arctic_shift_limiter(settings: Settings) -> Limiter:
    host = urlsplit(settings.arctic_shift_base_url).netloc or settings.arctic_shift_base_url
    return limiter_for(f"arctic-shift-{host}", settings.arctic_shift_requests_per_second)


def reddit_limiter(settings: Settings) -> Limiter:
    """Reddit counts per client id: one limit per id (named by a digest, never the id itself)."""
    client = hashlib.sha256((secret_value(settings.reddit_client_id) or "").encode()).hexdigest()[:12]
    return limiter_for(f"reddit-{client}", settings.reddit_requests_per_minute / 60.0)
