"""A fake Arctic Shift on 127.0.0.1, serving the same world as a FakeReddit (its posts and comments, by reference)
in Arctic Shift's shapes, parameters and paging, for real HTTP clients.

Endpoints (github ArthurHeitmann/arctic_shift, `api/README.md`): `/api/posts/search` (subreddit, title full-text
search in websearch syntax, author, after/before, sort asc|desc by created_utc, limit 1-100),
`/api/comments/search` (link_id, parent_id, body, after/before, sort, limit), `/api/comments/tree` (a thread's
tree, `more` stubs past `limit`), `/api/posts/ids`, `/api/comments/ids`. Answers are `{"data": [...]}`, errors
`{"error": "..."}` with a 400.

Fault injection per path: a status with headers (429 storms with Retry-After, 5xx flaps), an HTML page, a
truncated JSON body, or a slow answer. `limit_rate(per_second)` answers 429 to a client that asks faster. Every
request is recorded with its time and client (User-Agent).

    with FakeReddit() as world, FakeArcticShift(world) as archive:
        world.add_post("Nakano_Miku", "Miku in summer", url="https://i.redd.it/abc.jpeg")
        requests.get(f"{archive.url}/api/posts/search", params={"subreddit": "Nakano_Miku"})
"""

from __future__ import annotations

import datetime
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fakes.loopback import LoopbackServer
from fakes.reddit import FakeReddit

PAGE_CAP = 100
# PostgreSQL's english stop words that matter in titles: they are not indexed, so a query ignores them too.
STOP_WORDS = frozenset({"a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
                        "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
                        "they", "this", "to", "was", "will", "with"})
HTML_ERROR = (b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway"
              b"</h1></center><hr><center>nginx</center></body></html>")


@dataclass
class ArcticFault:
    path: re.Pattern[str]
    times: int
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None  # None: the real answer (a slow fault)
    content_type: str = "application/json"
    delay: float = 0.0
    truncate: bool = False  # the real answer, cut in half


@dataclass
class ArcticRequest:
    path: str
    query: dict[str, list[str]]
    status: int
    client: str
    at: float  # time.monotonic() when the request arrived


# ---------------------------------------------------------------- full-text search


def _words(text: str) -> list[str]:
    return [_stem(w) for w in re.findall(r"[^\W_]+", text.lower()) if w not in STOP_WORDS]


def _stem(word: str) -> str:
    """A very small stand-in for the english snowball stemmer: plurals."""
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def websearch_matches(query: str, text: str) -> bool:
    """PostgreSQL's websearch_to_tsquery against a title, closely enough: words ANDed, "quoted phrases" (words in
    order, stop words skipped), `OR` between terms (binding looser than AND, as `|` does in a tsquery), `-word`
    and `-"phrase"` excluded. Stemming is only plurals."""
    words = _words(text)
    for alternative in re.split(r"\s+OR\s+", query.strip(), flags=re.IGNORECASE):
        terms = re.findall(r'(-?)"([^"]*)"|(-?)(\S+)', alternative)
        ok = bool(terms)
        for neg_phrase, phrase, neg_word, word in terms:
            negated = bool(neg_phrase or neg_word)
            wanted = _words(phrase if phrase or neg_phrase else word)
            if not wanted:
                continue
            found = _contains_phrase(words, wanted)
            if found == negated:
                ok = False
                break
        if ok:
            return True
    return False


def _contains_phrase(words: list[str], phrase: list[str]) -> bool:
    n = len(phrase)
    return any(words[i:i + n] == phrase for i in range(len(words) - n + 1))


def parse_date(value: str) -> float:
    """Arctic Shift's date forms: epoch seconds or milliseconds, ISO 8601 (partial)."""
    value = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        number = float(value)
        return number / 1000 if number > 1e11 else number
    parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


# ---------------------------------------------------------------- the server


class FakeArcticShift(LoopbackServer):
    """Arctic Shift over a FakeReddit's world. `tree_limit_cap` bounds what `/api/comments/tree` shows before
    collapsing into `more` stubs, whatever `limit` asks (to test stubs on small threads)."""

    thread_name = "fake-arctic-shift"

    def __init__(self, world: FakeReddit, tree_limit_cap: int | None = None):
        self.world = world
        self.tree_limit_cap = tree_limit_cap
        self.faults: list[ArcticFault] = []
        self.requests: list[ArcticRequest] = []
        self.min_interval: float | None = None
        self._last_by_client: dict[str, float] = {}
        self._lock = threading.Lock()

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _Handler

    # ------------------------------------------------------------ faults and records

    def inject(self, path_pattern: str, *, times: int = 1, status: int = 200, headers: dict[str, str] | None = None,
               body: bytes | None = None, content_type: str = "application/json", delay: float = 0.0,
               truncate: bool = False) -> ArcticFault:
        """The next `times` requests whose path matches get this answer instead of (or, for `delay` and
        `truncate`, made from) the real one."""
        fault = ArcticFault(re.compile(path_pattern), times, status, headers or {}, body, content_type, delay,
                            truncate)
        with self._lock:
            self.faults.append(fault)
        return fault

    def storm_429(self, path_pattern: str, times: int, retry_after: float = 1) -> ArcticFault:
        return self.inject(path_pattern, times=times, status=429, headers={"Retry-After": f"{retry_after:g}"},
                           body=b'{"error": "Too many requests"}')

    def html_page(self, path_pattern: str, times: int = 1, status: int = 502) -> ArcticFault:
        return self.inject(path_pattern, times=times, status=status, body=HTML_ERROR, content_type="text/html")

    def limit_rate(self, per_second: float | None) -> None:
        """Answer 429 (Retry-After: 1) to a client that sends faster than this; None: no limit."""
        self.min_interval = None if per_second is None else 1.0 / per_second

    def requests_to(self, path_pattern: str) -> list[ArcticRequest]:
        pattern = re.compile(path_pattern)
        with self._lock:
            return [r for r in self.requests if pattern.search(r.path)]

    def _take_fault(self, path: str) -> ArcticFault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and fault.path.search(path):
                    fault.times -= 1
                    return fault
        return None

    def _too_fast(self, client: str, now: float) -> bool:
        if self.min_interval is None:
            return False
        with self._lock:
            last = self._last_by_client.get(client)
            self._last_by_client[client] = now
        return last is not None and now - last < self.min_interval * 0.98

    # ------------------------------------------------------------ the API

    def _posts(self) -> list[dict[str, Any]]:
        return [self.world._public(p) for p in self.world.posts.values()]

    def _comments(self) -> list[dict[str, Any]]:
        return [dict(c) for c in self.world.comments.values()]

    def search(self, things: list[dict[str, Any]], query: dict[str, str], text_fields: dict[str, str]
               ) -> list[dict[str, Any]]:
        def keep(thing: dict[str, Any]) -> bool:
            for param, key in (("subreddit", "subreddit"), ("author", "author")):
                if param in query and str(thing.get(key, "")).lower() != query[param].lower():
                    return False
            for param in ("link_id", "parent_id"):
                if param in query:
                    wanted = query[param] or None
                    if param == "link_id" and wanted and not wanted.startswith("t3_"):
                        wanted = f"t3_{wanted}"
                    if param == "parent_id" and wanted is None:
                        wanted = thing.get("link_id")  # `parent_id=` means top-level comments
                    elif param == "parent_id" and not wanted.startswith(("t1_", "t3_")):
                        wanted = f"t1_{wanted}"
                    if thing.get(param) != wanted:
                        return False
            if "over_18" in query and bool(thing.get("over_18")) != (query["over_18"].lower() == "true"):
                return False
            for param, key in text_fields.items():
                if param in query and not websearch_matches(query[param], str(thing.get(key) or "")):
                    return False
            created = float(thing.get("created_utc") or 0)
            if "after" in query and not created > parse_date(query["after"]):
                return False
            return not ("before" in query and not created < parse_date(query["before"]))

        found = [t for t in things if keep(t)]
        found.sort(key=lambda t: t.get("created_utc") or 0, reverse=query.get("sort", "desc") == "desc")
        limit = int(query.get("limit", "25"))
        if not 1 <= limit <= PAGE_CAP:
            raise ValueError(f"limit must be between 1 and {PAGE_CAP}")
        return found[:limit]

    def tree(self, link_id: str, limit: int) -> list[dict[str, Any]]:
        """A thread's comments as Reddit renders them, depth first; past `limit` comments, each parent's remaining
        children become one `more` stub listing every collapsed id (their replies included)."""
        if self.tree_limit_cap is not None:
            limit = min(limit, self.tree_limit_cap)
        shown = [0]

        def render(parent: str, depth: int) -> list[dict[str, Any]]:
            things: list[dict[str, Any]] = []
            ids = self.world.children.get(parent, [])
            for index, comment_id in enumerate(ids):
                if shown[0] >= limit:
                    collapsed = [c for rest in ids[index:] for c in self._subtree(rest)]
                    things.append({"kind": "more", "data": {
                        "count": len(collapsed), "name": f"t1_{collapsed[0]}", "id": collapsed[0],
                        "parent_id": parent, "depth": depth, "children": collapsed}})
                    break
                shown[0] += 1
                data = dict(self.world.comments[comment_id])
                replies = render(data["name"], depth + 1)
                data["replies"] = {"kind": "Listing", "data": {"children": replies}} if replies else ""
                things.append({"kind": "t1", "data": data})
            return things

        return render(link_id, 0)

    def _subtree(self, comment_id: str) -> list[str]:
        out = [comment_id]
        for child in self.world.children.get(f"t1_{comment_id}", []):
            out += self._subtree(child)
        return out


class _Handler(BaseHTTPRequestHandler):
    fake: FakeArcticShift
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
        pass

    def do_GET(self) -> None:
        arrived = time.monotonic()
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        client = self.headers.get("User-Agent", "")
        fault = self.fake._take_fault(path)
        if self.fake._too_fast(client, arrived):
            status = self._send(429, b'{"error": "Too many requests"}', "application/json", {"Retry-After": "1"})
        elif fault is not None and fault.body is not None:
            time.sleep(fault.delay)
            status = self._send(fault.status, fault.body, fault.content_type, fault.headers)
        else:
            status, payload = self._route(path, query)
            body = json.dumps(payload).encode()
            if fault is not None:
                time.sleep(fault.delay)
                body = body[: len(body) // 2] if fault.truncate else body
            self._send(status, body, "application/json; charset=utf-8", fault.headers if fault else None)
        with self.fake._lock:
            self.fake.requests.append(ArcticRequest(path, parse_qs(parts.query, keep_blank_values=True), status,
                                                    client, arrived))

    def _route(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        fake = self.fake
        try:
            if path == "/api/posts/search":
                if ("title" in query or "selftext" in query) and not ("subreddit" in query or "author" in query):
                    return 400, {"error": "title and selftext search need subreddit or author"}
                return 200, {"data": fake.search(fake._posts(), query, {"title": "title", "selftext": "selftext"})}
            if path == "/api/comments/search":
                if "body" in query and not any(k in query for k in ("author", "link_id", "parent_id")):
                    return 400, {"error": "body search needs author, link_id or parent_id"}
                return 200, {"data": fake.search(fake._comments(), query, {"body": "body"})}
            if path == "/api/comments/tree":
                link_id = query.get("link_id", "")
                if not link_id:
                    return 400, {"error": "link_id is required"}
                link_id = link_id if link_id.startswith("t3_") else f"t3_{link_id}"
                return 200, {"data": fake.tree(link_id, int(query.get("limit", "50")))}
            if path in ("/api/posts/ids", "/api/comments/ids"):
                table = fake.world.posts if path == "/api/posts/ids" else fake.world.comments
                ids = [i.split("_", 1)[-1] for i in query.get("ids", "").split(",") if i]
                if len(ids) > 500:
                    return 400, {"error": "at most 500 ids"}
                return 200, {"data": [fake.world._public(table[i]) for i in ids if i in table]}
        except ValueError as exc:
            return 400, {"error": str(exc)}
        except Exception as exc:  # a bug in the fake, or a test's injected breakage: a 500, as a server would
            return 500, {"error": f"fake server error: {exc!r}"}
        return 404, {"error": "Not Found"}

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> int:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)
        return status
