"""Imgur API IO: expands `imgur.com/<id>` pages, albums and galleries into image links.

The request is its own function (retried on 429/5xx/connection errors); parsing is
`tasks.links.parse_imgur_response`. Without a client id nothing is fetched and every Imgur
reference is counted as `imgur_no_client_id`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

import requests

from tasks.links import ImageRef, ImgurRef, Skip, imgur_api_path, parse_imgur_response

log = logging.getLogger(__name__)
RETRY_STATUSES = {429, 500, 502, 503, 504}


class ImgurClient:
    def __init__(self, client_id: str | None, api_url: str = "https://api.imgur.com", *,
                 timeout: float = 20.0, max_attempts: int = 4, max_wait_seconds: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep):
        self.client_id = client_id
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.max_wait_seconds = max_wait_seconds
        self.sleep = sleep
        self.session = requests.Session()
        self._cache: dict[ImgurRef, list[ImageRef] | str] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.client_id)

    def expand(self, ref: ImgurRef) -> list[ImageRef] | str:
        """Image links of an Imgur reference, or a Skip reason. Answers are cached for the run."""
        if not self.enabled:
            return Skip.IMGUR_NO_CLIENT_ID
        key = ImgurRef(ref.kind, ref.imgur_id, "")
        if key not in self._cache:
            self._cache[key] = self._expand(ref)
        return self._cache[key]

    def _expand(self, ref: ImgurRef) -> list[ImageRef] | str:
        try:
            payload = self.fetch(imgur_api_path(ref))
        except ImgurNotFound:
            return Skip.IMGUR_NOT_FOUND
        except (requests.RequestException, ImgurError) as exc:
            log.warning("Imgur %s %s failed: %s", ref.kind, ref.imgur_id, exc)
            return Skip.IMGUR_ERROR
        refs = parse_imgur_response(ref, payload)
        return refs if refs else Skip.IMGUR_NOT_FOUND

    def fetch(self, path: str) -> dict[str, Any]:
        """GET an Imgur API path with bounded retries; the client id goes in a header, never a log."""
        headers = {"Authorization": f"Client-ID {self.client_id}"}
        for attempt in range(self.max_attempts):
            try:
                response = self.session.get(f"{self.api_url}{path}", headers=headers, timeout=self.timeout)
            except requests.ConnectionError:
                if attempt + 1 == self.max_attempts:
                    raise
                self.sleep(self._delay(attempt, None))
                continue
            if response.status_code in (404, 410):
                raise ImgurNotFound(path)
            if response.status_code in RETRY_STATUSES and attempt + 1 < self.max_attempts:
                self.sleep(self._delay(attempt, response.headers.get("Retry-After")))
                continue
            if response.status_code != 200:
                raise ImgurError(f"HTTP {response.status_code} for {path}")
            try:
                return response.json()
            except ValueError:
                raise ImgurError(f"not JSON for {path}") from None
        raise ImgurError(f"gave up on {path}")

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        try:
            if retry_after:
                return min(self.max_wait_seconds, float(retry_after))
        except ValueError:
            pass
        return min(self.max_wait_seconds, 2**attempt) * random.uniform(0.5, 1.0)


class ImgurError(Exception):
    pass


class ImgurNotFound(ImgurError):
    pass
