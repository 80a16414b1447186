"""The one way secrets leave URLs: `user:password@` is removed before a URL is printed, logged, stored
in the catalog or sent to MLflow (links in comments, tracking URIs and proxies can carry them)."""

from __future__ import annotations

import re

# scheme://userinfo@ : userinfo runs up to the last '@' before the first '/', '?', '#' or whitespace
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/?#\s@]*(?:@[^/?#\s@]*)*@")


def redact(text: str) -> str:
    """`text` (a URL, a message, a traceback) with every URL's `user:password@` removed; nothing else
    changes, so a URL without one is returned as it was (and redacting twice is redacting once)."""
    return _USERINFO.sub(r"\g<scheme>", text)
