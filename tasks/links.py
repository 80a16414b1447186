"""Pure parsing: from Reddit post data and comment text to image URLs. No network IO here.

- `extract_links` finds (text, url) pairs in a comment's markdown `body` and HTML `body_html`.
- `NameMatcher` says whether a title or link text names a label (word boundaries, any case).
- `resolve_post` turns a post's JSON into image references (direct, gallery, crosspost, Imgur).
- `classify_url` turns one URL into a direct image, an Imgur reference to expand, or a skip reason.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit, urlunsplit

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".gifv", ".m4v")
GALLERY_MIME_EXT = {"image/jpg": "jpg", "image/jpeg": "jpg", "image/png": "png", "image/gif": "gif",
                    "image/webp": "webp"}
IMGUR_HOSTS = {"imgur.com", "www.imgur.com", "m.imgur.com"}
IMGUR_ID_RE = re.compile(r"^[A-Za-z0-9]{5,8}$")
PREVIEW_TITLED_RE = re.compile(r"^.+-v0-([A-Za-z0-9]+\.[A-Za-z]+)$")


# ---------------------------------------------------------------- skip reasons

class Skip:
    """Named reasons for dropping something. Every drop is counted under one of these."""

    SELF_POST = "self_post"
    VIDEO = "video"
    GALLERY_UNAVAILABLE = "gallery_unavailable"
    GALLERY_ITEM_INVALID = "gallery_item_invalid"
    NOT_AN_IMAGE_LINK = "not_an_image_link"
    UNSUPPORTED_SCHEME = "unsupported_scheme"
    IMGUR_NO_CLIENT_ID = "imgur_no_client_id"
    IMGUR_NOT_FOUND = "imgur_not_found"
    IMGUR_ERROR = "imgur_error"
    NSFW = "nsfw_excluded"
    SFW = "sfw_excluded"
    FLAIR = "flair_mismatch"
    TITLE_NO_MATCH = "title_does_not_name_label"
    REDDIT_POST_LINK = "reddit_post_link"
    BEFORE_SINCE = "older_than_since"


# ---------------------------------------------------------------- references


@dataclass(frozen=True)
class ImageRef:
    """A URL that should answer with image bytes."""

    url: str
    position: int = 0  # order inside a gallery or album


@dataclass(frozen=True)
class ImgurRef:
    """An Imgur page, album or gallery that needs the Imgur API to list its images."""

    kind: str  # "image" | "album" | "gallery"
    imgur_id: str
    url: str


@dataclass(frozen=True)
class RedditPostRef:
    """A link to another Reddit post or gallery: resolved by fetching that post."""

    post_id: str
    url: str


Ref = ImageRef | ImgurRef | RedditPostRef
REDDIT_ID_RE = re.compile(r"[a-z0-9]{4,10}", re.IGNORECASE)
REDDIT_POST_RE = re.compile(
    r"^(?:/(?:r|u|user)/[\w-]+/comments|/comments|/gallery)/([a-z0-9]{4,10})(?:/|$)", re.IGNORECASE
)


@dataclass
class Resolution:
    refs: list[Ref] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


def _clean_url(url: str) -> str:
    return html.unescape(url.strip()).strip("<>")


def classify_url(url: str) -> Ref | str:
    """One URL to an ImageRef, ImgurRef or RedditPostRef, or a Skip reason (a string)."""
    url = _clean_url(url)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return Skip.UNSUPPORTED_SCHEME
    host = (parts.hostname or "").lower()
    path = parts.path
    lower_path = path.lower()

    if host == "preview.redd.it":
        # A preview is a resized copy of an i.redd.it original named by its media id. Newer previews put
        # the post title first ("<title>-v0-<id>.png"); the original is still i.redd.it/<id>.png.
        name = path.rsplit("/", 1)[-1]
        if name.lower().endswith(IMAGE_EXTENSIONS):
            titled = PREVIEW_TITLED_RE.match(name)
            return ImageRef(f"https://i.redd.it/{titled.group(1) if titled else name}")
        return Skip.NOT_AN_IMAGE_LINK
    if host == "v.redd.it" or lower_path.endswith(VIDEO_EXTENSIONS):
        if host == "i.imgur.com" and lower_path.endswith(".gifv"):
            return ImageRef(urlunsplit(("https", host, path[:-5] + ".gif", "", "")))
        return Skip.VIDEO
    if host == "i.imgur.com":
        stem = path.strip("/").split(".")[0]
        if lower_path.endswith(IMAGE_EXTENSIONS):
            return ImageRef(urlunsplit(("https", host, path, "", "")))
        if IMGUR_ID_RE.match(stem):
            return ImgurRef("image", stem, url)
        return Skip.NOT_AN_IMAGE_LINK
    if host in IMGUR_HOSTS:
        segments = [s for s in path.split("/") if s]
        if len(segments) >= 2 and segments[0] in ("a", "gallery", "t"):
            kind = "album" if segments[0] == "a" else "gallery"
            # New-style slugs ("imgur.com/a/some-title-AbC12") end with the id.
            imgur_id = segments[-1].rsplit("-", 1)[-1]
            if IMGUR_ID_RE.match(imgur_id):
                return ImgurRef(kind, imgur_id, url)
            return Skip.NOT_AN_IMAGE_LINK
        if len(segments) == 1:
            imgur_id = segments[0].split(".")[0]
            if IMGUR_ID_RE.match(imgur_id):
                if segments[0].lower().endswith(IMAGE_EXTENSIONS):
                    return ImageRef(f"https://i.imgur.com/{segments[0]}")
                return ImgurRef("image", imgur_id, url)
        return Skip.NOT_AN_IMAGE_LINK
    if host == "redd.it" and REDDIT_ID_RE.fullmatch(path.strip("/")):
        return RedditPostRef(path.strip("/"), url)
    if host == "reddit.com" or host.endswith(".reddit.com"):
        match = REDDIT_POST_RE.match(path)
        return RedditPostRef(match.group(1), url) if match else Skip.NOT_AN_IMAGE_LINK
    if lower_path.endswith(IMAGE_EXTENSIONS):
        return ImageRef(url)
    return Skip.NOT_AN_IMAGE_LINK


def resolve_post(data: dict[str, Any]) -> Resolution:
    """A post's JSON (PRAW's `vars(submission)` or a dump line) to image references."""
    result = Resolution()
    crossposts = data.get("crosspost_parent_list") or []
    if crossposts and isinstance(crossposts[0], dict):
        data = crossposts[0]  # the original post holds the media
    if data.get("is_gallery") or "gallery_data" in data and data.get("gallery_data") is not None:
        _resolve_gallery(data, result)
        return result
    if data.get("is_video"):
        result.skipped[Skip.VIDEO] += 1
        return result
    if data.get("is_self"):
        result.skipped[Skip.SELF_POST] += 1
        return result
    url = data.get("url_overridden_by_dest") or data.get("url") or ""
    ref = classify_url(url)
    if isinstance(ref, RedditPostRef):
        # A link post pointing at Reddit itself: a gallery whose data is gone, or a link to a thread.
        result.skipped[Skip.GALLERY_UNAVAILABLE if "/gallery/" in url else Skip.REDDIT_POST_LINK] += 1
    elif isinstance(ref, str):
        result.skipped[ref] += 1
    else:
        result.refs.append(ref)
    return result


def _resolve_gallery(data: dict[str, Any], result: Resolution) -> None:
    gallery = data.get("gallery_data")
    metadata = data.get("media_metadata") or {}
    if not gallery or not isinstance(gallery, dict) or not gallery.get("items"):
        # Removed or still-processing galleries come with gallery_data: null.
        result.skipped[Skip.GALLERY_UNAVAILABLE] += 1
        return
    # gallery_data.items is the order the poster chose; media_metadata is an unordered dict.
    position = 0
    for item in gallery["items"]:
        meta = metadata.get(item.get("media_id"))
        if not meta or meta.get("status") != "valid":
            result.skipped[Skip.GALLERY_ITEM_INVALID] += 1
            continue
        if meta.get("e") == "RedditVideo":
            result.skipped[Skip.VIDEO] += 1
            continue
        ext = GALLERY_MIME_EXT.get(str(meta.get("m", "")).lower())
        if ext is None:
            source = meta.get("s") or {}
            url = source.get("u") or source.get("gif")
            ref = classify_url(url) if url else Skip.GALLERY_ITEM_INVALID
            if isinstance(ref, ImageRef):
                result.refs.append(ImageRef(ref.url, position))
                position += 1
            else:
                result.skipped[ref if isinstance(ref, str) else Skip.GALLERY_ITEM_INVALID] += 1
            continue
        result.refs.append(ImageRef(f"https://i.redd.it/{item['media_id']}.{ext}", position))
        position += 1


# ---------------------------------------------------------------- Imgur API responses


def imgur_api_path(ref: ImgurRef) -> str:
    if ref.kind == "album":
        return f"/3/album/{ref.imgur_id}/images"
    if ref.kind == "gallery":
        return f"/3/gallery/{ref.imgur_id}"
    return f"/3/image/{ref.imgur_id}"


def parse_imgur_response(ref: ImgurRef, payload: dict[str, Any]) -> list[ImageRef]:
    """Image links from an Imgur API answer, in album order; videos are left out."""
    data = payload.get("data")
    if ref.kind == "album":
        items = data if isinstance(data, list) else []
    elif ref.kind == "gallery" and isinstance(data, dict) and data.get("is_album"):
        items = data.get("images") or []
    else:
        items = [data] if isinstance(data, dict) else []
    refs = []
    for item in items:
        link = item.get("link") if isinstance(item, dict) else None
        if not link or item.get("animated") and str(item.get("type", "")).startswith("video"):
            continue
        ref_or_skip = classify_url(link)
        if isinstance(ref_or_skip, ImageRef):
            refs.append(ImageRef(ref_or_skip.url, len(refs)))
    return refs


# ---------------------------------------------------------------- links in comment text


@dataclass(frozen=True)
class Link:
    text: str
    url: str


def extract_links(body: str | None = None, body_html: str | None = None) -> list[Link]:
    """Every link with its text, from markdown and from HTML; a URL found in both is kept once."""
    found: dict[str, Link] = {}
    for link in [*parse_markdown_links(body or ""), *parse_html_links(body_html or "")]:
        key = link.url
        if key not in found or (not found[key].text and link.text):
            found[key] = link
    return list(found.values())


def parse_markdown_links(text: str) -> list[Link]:
    """`[text](url "title")` links, with balanced brackets in the text and parentheses in the URL."""
    text = html.unescape(text)  # Reddit stores & < > in markdown as entities
    links = []
    i, n = 0, len(text)
    while i < n:
        start = text.find("[", i)
        if start < 0:
            break
        if start > 0 and text[start - 1] == "\\":  # an escaped bracket is text, not a link
            i = start + 1
            continue
        close = _matching(text, start, "[", "]")
        if close < 0:
            i = start + 1
            continue
        if close + 1 < n and text[close + 1] == "(":
            end = _matching(text, close + 1, "(", ")")
            if end > 0:
                label = text[start + 1 : close]
                target = text[close + 2 : end].strip()
                if target.startswith("<") and ">" in target:
                    url = target[1 : target.index(">")]  # `<url>` may hold spaces
                else:
                    url = _strip_link_title(target)
                # Backslash escapes count in a destination: Reddit's editor writes `a\_b` for `a_b`.
                url = MARKDOWN_ESCAPE_RE.sub(r"\1", url)
                if url:
                    links.append(Link(_plain_text(label), url))
                i = end + 1
                continue
        i = start + 1
    return links


def _matching(text: str, start: int, open_: str, close: str) -> int:
    depth = 0
    i = start
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == open_:
            depth += 1
        elif ch == close:
            depth -= 1
            if depth == 0:
                return i
        elif ch == "\n" and i + 1 < len(text) and text[i + 1] == "\n":
            return -1  # links never span paragraphs
        i += 1
    return -1


def _strip_link_title(target: str) -> str:
    match = re.match(r'^(\S+)\s+(?:"[^"]*"|\'[^\']*\')$', target)
    return match.group(1) if match else target.split()[0] if target else ""


MARKDOWN_ESCAPE_RE = re.compile(r"\\([!-/:-@\[-`{-~])")
# An escape, or an emphasis marker; `_` inside a word ("Nakano_Miku") is text, not emphasis.
_MARKUP_RE = re.compile(r"\\(.)|[*~`]+|(?<![^\W_])_+|_+(?![^\W_])")


def _plain_text(markdown: str) -> str:
    text = _MARKUP_RE.sub(lambda m: m.group(1) or "", markdown)
    return " ".join(text.split())


class _AnchorParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[Link] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href")
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append(Link(" ".join("".join(self._text).split()), self._href))
            self._href = None


def parse_html_links(body_html: str) -> list[Link]:
    """`<a href>` links from Reddit's body_html, which arrives entity-escaped inside the JSON."""
    if not body_html:
        return []
    if "<" not in body_html:  # escaped once more: real HTML always has a `<`, escaped HTML never
        body_html = html.unescape(body_html)
    parser = _AnchorParser()
    parser.feed(body_html)
    parser.close()
    return parser.links


# ---------------------------------------------------------------- names


class NameMatcher:
    """Does a text name one of these names? Case-insensitive, on word boundaries, and with
    spaces, underscores and hyphens interchangeable ("nakano_miku" matches "Nakano Miku")."""

    def __init__(self, names: list[str]):
        self.names = list(names)
        parts = []
        for name in sorted({n.strip() for n in names if n.strip()}, key=len, reverse=True):
            words = [re.escape(w) for w in re.split(r"[\s_\-]+", name) if w]
            if words:
                parts.append(r"[\s_\-]+".join(words))
        if not parts:
            self.pattern = re.compile(r"(?!)")  # no names: match nothing, not every gap between words
        else:
            self.pattern = re.compile(r"(?<![^\W_])(?:" + "|".join(parts) + r")(?![^\W_])", re.IGNORECASE)

    def matches(self, text: str | None) -> bool:
        return bool(text) and self.pattern.search(html.unescape(text)) is not None

    def search_query(self) -> str:
        """A Reddit search query for titles naming any of the names."""
        return " OR ".join(f'title:"{n}"' for n in self._search_names())

    def websearch_query(self) -> str:
        """The same for a full-text title search in PostgreSQL's websearch syntax (Arctic Shift): quoted phrases,
        OR between them. Loose too (stemming, any word order in between): titles are checked with `matches`."""
        return " OR ".join(f'"{n}"' if " " in n else n for n in self._search_names())

    def _search_names(self) -> list[str]:
        return sorted({" ".join(re.split(r"[\s_\-]+", n.strip())) for n in self.names if n.strip()})


def author_name(data: dict[str, Any]) -> str | None:
    author = data.get("author")
    if author is None:
        return None
    name = getattr(author, "name", author)
    return None if name in ("[deleted]", "") else str(name)
