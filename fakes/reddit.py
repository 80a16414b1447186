"""A fake Reddit + Imgur + image host on 127.0.0.1 that real PRAW talks to.

Used by the tests and by the offline demo. It speaks enough of Reddit's JSON API for PRAW's
read-only client: the client-credentials token endpoint, subreddit listings (new, hot, top) with
`after` pagination and Reddit's 100-per-page and 1000-total caps, subreddit search, comment trees
with `more` stubs (`/api/morechildren`) and "continue this thread" links, and /api/info. It also
serves Imgur's album, gallery and image API, and raw image bytes. Faults can be injected per path.

    with FakeReddit() as fake:
        fake.add_post("Nakano_Miku", "Miku in summer", url="https://i.redd.it/abc.jpeg")
        reddit = praw.Reddit(client_id=fake.client_id, client_secret=fake.client_secret,
                             user_agent="test", oauth_url=fake.url, reddit_url=fake.url,
                             check_for_updates=False)
"""

from __future__ import annotations

import html
import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fakes.loopback import LoopbackServer

PAGE_CAP = 100
LISTING_CAP = 1000
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(number: int) -> str:
    out = ""
    while True:
        number, rem = divmod(number, 36)
        out = _BASE36[rem] + out
        if number == 0:
            return out


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    status: int
    times: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"message": "injected fault"}'


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    status: int
    at: float = 0.0  # time.monotonic() when it arrived


class FakeReddit(LoopbackServer):
    """In-memory Reddit and Imgur. Builders add content; `start()` serves it on 127.0.0.1."""

    thread_name = "fake-reddit"

    def __init__(self, client_id: str = "fake-client", client_secret: str = "fake-secret",
                 imgur_client_id: str = "fake-imgur", comments_per_level: int = 20, max_depth: int = 6):
        self.client_id = client_id
        self.client_secret = client_secret
        self.imgur_client_id = imgur_client_id
        self.comments_per_level = comments_per_level
        self.max_depth = max_depth
        self.subreddits: dict[str, str] = {}  # lower name -> display name
        self.posts: dict[str, dict[str, Any]] = {}  # id -> post data
        self.comments: dict[str, dict[str, Any]] = {}  # id -> comment data
        self.children: dict[str, list[str]] = {}  # parent fullname -> child comment ids, in order
        self.imgur: dict[tuple[str, str], dict[str, Any]] = {}  # (kind, id) -> API payload
        self.images: dict[str, tuple[bytes, str]] = {}  # path -> (bytes, content type)
        self.faults: list[Fault] = []
        self.requests: list[RecordedRequest] = []
        self._ids = itertools.count(36**5)  # ids look like Reddit's: base36, 6 characters
        self._clock = 1_700_000_000.0
        self._lock = threading.Lock()

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _Handler

    # ------------------------------------------------------------ builders

    def _new_id(self) -> str:
        return _base36(next(self._ids))

    def _tick(self) -> float:
        self._clock += 60.0
        return self._clock

    def add_subreddit(self, name: str) -> str:
        self.subreddits.setdefault(name.lower(), name)
        return name

    def add_post(self, subreddit: str, title: str, url: str | None = None, *, flair: str | None = None,
                 nsfw: bool = False, author: str | None = "fan_artist", score: int = 1,
                 created_utc: float | None = None, is_self: bool = False, selftext: str = "",
                 is_video: bool = False, post_id: str | None = None, **extra: Any) -> dict[str, Any]:
        """Add a link post (an image post when `url` is an image). Returns its JSON data."""
        name = self.add_subreddit(subreddit)
        post_id = post_id or self._new_id()
        created = created_utc if created_utc is not None else self._tick()
        permalink = f"/r/{name}/comments/{post_id}/{re.sub(r'[^a-z0-9]+', '_', title.lower())[:40]}/"
        data: dict[str, Any] = {
            "id": post_id,
            "name": f"t3_{post_id}",
            "title": title,
            "subreddit": name,
            "subreddit_name_prefixed": f"r/{name}",
            "author": author if author is not None else "[deleted]",
            "created_utc": created,
            "permalink": permalink,
            "url": url if url is not None else f"https://www.reddit.com{permalink}",
            "score": score,
            "over_18": nsfw,
            "is_self": is_self,
            "selftext": selftext,
            "is_video": is_video,
            "link_flair_text": flair,
            "num_comments": 0,
            "domain": urlsplit(url).hostname if url else f"self.{name}",
        }
        data.update(extra)
        self.posts[post_id] = data
        self.children.setdefault(data["name"], [])
        return data

    def add_gallery(self, subreddit: str, title: str, items: list[dict[str, Any]] | None,
                    **kwargs: Any) -> dict[str, Any]:
        """A gallery post. Each item: {"media_id", "mime" (image/jpg...), "status" ("valid"...),
        "e" ("Image" | "AnimatedImage" | "RedditVideo")}. `items=None` makes `gallery_data: null`.

        media_metadata is emitted in reverse order on purpose: Reddit's is not gallery order."""
        post = self.add_post(subreddit, title, url=None, is_gallery=True, **kwargs)
        post["url"] = f"https://www.reddit.com/gallery/{post['id']}"
        if items is None:
            post["gallery_data"] = None
            post["media_metadata"] = None
            return post
        post["gallery_data"] = {"items": [{"media_id": it["media_id"], "id": i} for i, it in enumerate(items)]}
        metadata = {}
        for item in reversed(items):
            status = item.get("status", "valid")
            if status != "valid":
                metadata[item["media_id"]] = {"status": status}
                continue
            mime = item.get("mime", "image/jpg")
            ext = mime.split("/")[-1]
            metadata[item["media_id"]] = {
                "status": "valid",
                "e": item.get("e", "Image"),
                "m": mime,
                "id": item["media_id"],
                "s": {"x": 800, "y": 1000,
                      "u": f"https://preview.redd.it/{item['media_id']}.{ext}?width=800&format=pjpg&s=abc"},
            }
        post["media_metadata"] = metadata
        return post

    def add_crosspost(self, subreddit: str, title: str, original: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        post = self.add_post(subreddit, title, url=original["url"], **kwargs)
        post["crosspost_parent"] = original["name"]
        post["crosspost_parent_list"] = [dict(original)]
        return post

    def add_comment(self, parent: dict[str, Any], body: str, *, author: str | None = "commenter",
                    body_html: str | None = None, score: int = 1) -> dict[str, Any]:
        """A comment under a post or another comment. body_html defaults to a rendering of body's links."""
        comment_id = self._new_id()
        post = parent if parent["name"].startswith("t3_") else self.posts[parent["link_id"][3:]]
        data = {
            "id": comment_id,
            "name": f"t1_{comment_id}",
            "body": body,
            "body_html": body_html if body_html is not None else render_body_html(body),
            "author": author if author is not None else "[deleted]",
            "created_utc": self._tick(),
            "permalink": f"{post['permalink']}{comment_id}/",
            "score": score,
            "parent_id": parent["name"],
            "link_id": post["name"],
            "subreddit": post["subreddit"],
        }
        self.comments[comment_id] = data
        self.children.setdefault(parent["name"], []).append(comment_id)
        self.children.setdefault(data["name"], [])
        post["num_comments"] += 1
        return data

    def add_imgur_album(self, album_id: str, links: list[str], *, gallery: bool = False) -> None:
        images = [{"id": link.rsplit("/", 1)[-1].split(".")[0], "link": link,
                   "type": "image/jpeg", "animated": False} for link in links]
        if gallery:
            self.imgur[("gallery", album_id)] = {"id": album_id, "is_album": True, "images": images}
        self.imgur[("album", album_id)] = images  # type: ignore[assignment]

    def add_imgur_image(self, image_id: str, link: str) -> None:
        self.imgur[("image", image_id)] = {"id": image_id, "link": link, "type": "image/jpeg", "animated": False}

    def add_image(self, path: str, data: bytes, content_type: str = "image/jpeg") -> str:
        """Serve raw bytes at `path` (e.g. "/i/abc.jpeg"); returns the absolute URL (server must be up)."""
        self.images[path] = (data, content_type)
        return f"{self.url}{path}" if self._server else path

    def inject(self, path_pattern: str, status: int, *, times: int = 1, method: str = "*",
               headers: dict[str, str] | None = None, body: bytes | None = None) -> Fault:
        """Answer the next `times` requests whose path matches with `status`."""
        fault = Fault(method, re.compile(path_pattern), status, times, headers or {})
        if body is not None:
            fault.body = body
        self.faults.append(fault)
        return fault

    def requests_to(self, path_pattern: str) -> list[RecordedRequest]:
        pattern = re.compile(path_pattern)
        with self._lock:
            return [r for r in self.requests if pattern.search(r.path)]

    # ------------------------------------------------------------ rendering

    def listing(self, subreddit: str, order: str, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        posts = [p for p in self.posts.values() if p["subreddit"].lower() == subreddit.lower()]
        if order == "new":
            posts.sort(key=lambda p: p["created_utc"], reverse=True)
        else:  # hot and top: by score (hot is close enough for a fake)
            posts.sort(key=lambda p: (p["score"], p["created_utc"]), reverse=True)
        if order == "search":
            posts = [p for p in posts if search_matches(query.get("q", [""])[0], p)]
            sort = query.get("sort", ["relevance"])[0]
            if sort == "new":
                posts.sort(key=lambda p: p["created_utc"], reverse=True)
        return posts

    def page(self, items: list[dict[str, Any]], kind: str, query: dict[str, list[str]]) -> dict[str, Any]:
        items = items[:LISTING_CAP]  # Reddit never lists past 1000
        limit = min(int(query.get("limit", ["25"])[0]), PAGE_CAP)
        start = 0
        after = query.get("after", [None])[0]
        if after:
            names = [item["name"] for item in items]
            start = names.index(after) + 1 if after in names else len(items)
        chunk = items[start : start + limit]
        more = start + limit < len(items)
        return _listing([{"kind": kind, "data": self._public(item)} for item in chunk],
                        after=chunk[-1]["name"] if chunk and more else None)

    def _public(self, data: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in data.items() if not k.startswith("_")}

    def comment_tree(self, parent_name: str, depth: int) -> list[dict[str, Any]]:
        """Children of `parent_name` as Reddit renders them: a page of comments, then a `more` stub."""
        ids = self.children.get(parent_name, [])
        shown, hidden = ids[: self.comments_per_level], ids[self.comments_per_level :]
        things = []
        for comment_id in shown:
            data = dict(self.comments[comment_id])
            data["depth"] = depth
            if self.children.get(data["name"]):
                if depth + 1 >= self.max_depth:
                    replies = [_more(data["name"], [], count=0, depth=depth + 1)]  # "continue this thread"
                else:
                    replies = self.comment_tree(data["name"], depth + 1)
                data["replies"] = _listing(replies)
            else:
                data["replies"] = ""
            things.append({"kind": "t1", "data": data})
        if hidden:
            count = sum(1 + self._descendants(self.comments[c]["name"]) for c in hidden)
            things.append(_more(parent_name, hidden, count=count, depth=depth))
        return things

    def _descendants(self, name: str) -> int:
        return sum(1 + self._descendants(self.comments[c]["name"]) for c in self.children.get(name, []))

    def flat_subtrees(self, ids: list[str]) -> list[dict[str, Any]]:
        """What /api/morechildren answers: the asked comments and their replies, parents first."""
        out = []
        stack = list(reversed(ids))
        while stack:
            comment_id = stack.pop()
            data = dict(self.comments[comment_id])
            data["replies"] = ""
            out.append({"kind": "t1", "data": data})
            stack.extend(reversed(self.children.get(data["name"], [])))
        return out


def _listing(children: list[dict[str, Any]], after: str | None = None) -> dict[str, Any]:
    return {"kind": "Listing", "data": {"after": after, "before": None, "dist": len(children),
                                        "children": children}}


def _more(parent_name: str, children: list[str], count: int, depth: int) -> dict[str, Any]:
    more_id = children[0] if children else "_"
    return {"kind": "more", "data": {"count": count, "name": f"t1_{more_id}", "id": more_id,
                                     "parent_id": parent_name, "depth": depth, "children": children}}


def render_body_html(body: str) -> str:
    """Reddit-like body_html: the markdown rendered by an independent renderer (Python-Markdown,
    not the parser under test), then entity-escaped as it is inside Reddit's JSON."""
    import markdown

    rendered = markdown.markdown(html.unescape(body))
    return html.escape(f'<div class="md">{rendered}\n</div>', quote=False)


_TERM_RE = re.compile(r'(?:(\w+):)?(?:"([^"]*)"|(\S+))')


def search_matches(query: str, post: dict[str, Any]) -> bool:
    """A small Lucene-ish matcher: `A OR B`, `title:"x"`, `flair:"x"`, bare words (title or body).
    Substring matching, like Reddit's loose search: callers must check titles themselves."""
    for alternative in re.split(r"\s+OR\s+", query.strip()):
        terms = [t for t in _TERM_RE.findall(alternative) if (t[1] or t[2]).upper() != "AND"]
        if all(_term_matches(field_, phrase or word, post) for field_, phrase, word in terms):
            return True
    return False


def _term_matches(field_name: str, value: str, post: dict[str, Any]) -> bool:
    value = value.lower()
    if field_name in ("flair", "flair_name", "flair_text"):
        return (post.get("link_flair_text") or "").lower() == value
    if field_name == "title":
        return value in post["title"].lower()
    return value in post["title"].lower() or value in (post.get("selftext") or "").lower()


class _Handler(BaseHTTPRequestHandler):
    fake: FakeReddit
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        arrived = time.monotonic()
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        query = parse_qs(parts.query)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if method == "POST" and body:
            query.update(parse_qs(body.decode()))
        status = self._fault(method, path)
        if status is None:
            try:
                status = self._route(method, path, query)
            except Exception as exc:  # a bug in the fake must show up, not hang the client
                status = self._json(500, {"message": f"fake server error: {exc!r}"})
        with self.fake._lock:
            self.fake.requests.append(RecordedRequest(method, path, query, status, arrived))

    def _fault(self, method: str, path: str) -> int | None:
        with self.fake._lock:
            for fault in self.fake.faults:
                if fault.times > 0 and fault.method in ("*", method) and fault.path.search(path):
                    fault.times -= 1
                    break
            else:
                return None
        self._send(fault.status, fault.body, "application/json", fault.headers)
        return fault.status

    def _route(self, method: str, path: str, query: dict[str, list[str]]) -> int:
        fake = self.fake
        if path in fake.images:
            data, content_type = fake.images[path]
            self._send(200, data, content_type)
            return 200
        if path == "/api/v1/access_token" and method == "POST":
            return self._token(query)
        if path.startswith("/3/"):
            return self._imgur(path)
        if not self._authorised():
            return self._json(401, {"message": "Unauthorized", "error": 401})
        if match := re.fullmatch(r"/r/(\w+)/(new|hot|top|search)", path):
            name, order = match.groups()
            if name.lower() not in fake.subreddits:
                return self._json(404, {"message": "Not Found", "error": 404, "reason": "banned"})
            items = fake.listing(name, order, query)
            return self._json(200, fake.page(items, "t3", query))
        if match := re.fullmatch(r"/comments/(\w+)(?:/_/(\w+))?", path):
            post_id, comment_id = match.groups()
            if post_id not in fake.posts:
                return self._json(404, {"message": "Not Found", "error": 404})
            post = _listing([{"kind": "t3", "data": fake._public(fake.posts[post_id])}])
            if comment_id:  # "continue this thread": the comment itself with its replies
                data = dict(fake.comments[comment_id])
                data["replies"] = _listing(fake.comment_tree(data["name"], 1))
                return self._json(200, [post, _listing([{"kind": "t1", "data": data}])])
            return self._json(200, [post, _listing(fake.comment_tree(f"t3_{post_id}", 0))])
        if path == "/api/morechildren":
            ids = [c for c in query.get("children", [""])[0].split(",") if c in fake.comments]
            return self._json(200, {"json": {"errors": [], "data": {"things": fake.flat_subtrees(ids)}}})
        if path == "/api/info":
            names = query.get("id", [""])[0].split(",")
            things = [{"kind": "t3", "data": fake._public(fake.posts[n[3:]])}
                      for n in names if n.startswith("t3_") and n[3:] in fake.posts]
            return self._json(200, _listing(things))
        if match := re.fullmatch(r"/r/(\w+)/about", path):
            name = match.group(1)
            if name.lower() not in fake.subreddits:
                return self._json(404, {"message": "Not Found", "error": 404})
            display = fake.subreddits[name.lower()]
            return self._json(200, {"kind": "t5", "data": {"display_name": display, "id": "2abc",
                                                           "name": "t5_2abc", "over18": False}})
        return self._json(404, {"message": "Not Found", "error": 404})

    def _token(self, query: dict[str, list[str]]) -> int:
        import base64

        auth = self.headers.get("Authorization", "")
        expected = base64.b64encode(f"{self.fake.client_id}:{self.fake.client_secret}".encode()).decode()
        if auth != f"Basic {expected}":
            return self._json(401, {"message": "Unauthorized", "error": 401})
        return self._json(200, {"access_token": "fake-token", "token_type": "bearer",
                                "expires_in": 86400, "scope": "*"})

    def _authorised(self) -> bool:
        return self.headers.get("Authorization", "").lower() == "bearer fake-token"

    def _imgur(self, path: str) -> int:
        if self.headers.get("Authorization") != f"Client-ID {self.fake.imgur_client_id}":
            return self._json(403, {"data": {"error": "Invalid client_id"}, "success": False, "status": 403})
        patterns = {"album": r"/3/album/(\w+)/images", "gallery": r"/3/gallery/(?:album/)?(\w+)",
                    "image": r"/3/image/(\w+)"}
        for kind, pattern in patterns.items():
            if match := re.fullmatch(pattern, path):
                payload = self.fake.imgur.get((kind, match.group(1)))
                if payload is None and kind == "gallery":
                    payload = self.fake.imgur.get(("image", match.group(1)))
                if payload is None:
                    return self._json(404, {"data": {"error": f"Unable to find {kind} {match.group(1)}"},
                                            "success": False, "status": 404})
                return self._json(200, {"data": payload, "success": True, "status": 200})
        return self._json(404, {"data": {"error": "no such endpoint"}, "success": False, "status": 404})

    def _json(self, status: int, payload: Any) -> int:
        self._send(status, json.dumps(payload).encode(), "application/json; charset=UTF-8")
        return status

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            # Say so, as real servers do: urllib3 would otherwise reuse the closed socket.
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

