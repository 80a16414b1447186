"""Reddit dump files for tests and benchmarks, written as the monthly dumps are: one JSON object per line,
zstandard-compressed with a long window (`RS_YYYY-MM.zst` submissions, `RC_YYYY-MM.zst` comments).

Records carry the API's fields plus the archive's own (`retrieved_on`, ...), integer times, and, as since
2023, comments with only the markdown `body` (no `body_html`). Two ways to fill a dump:

- `dumps_from_fake(fake, directory)`: the posts and comments of a FakeReddit, so that a test can read the same
  posts through the API (real PRAW against the fake) and from dump files, and compare what each path stores.
- `generate_month(directory, ...)`: a month of realistic noise from many subreddits with a known number of
  planted matches for `GOTOUBUN_JOB` (the benchmark's dump, any size).

    rs, rc = dumps_from_fake(fake, tmp_path)            # RS_2019-03.zst, RC_2019-03.zst
    write_dump(tmp_path / "RS_2020-01.zst", [submission_record(post), ...])
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import zstandard

if TYPE_CHECKING:  # fakes.reddit pulls in an HTTP server
    from fakes.reddit import FakeReddit

LONG_WINDOW_LOG = 31  # what the real dumps use (`zstd --long=31`): readers need max_window_size=2**31
RETRIEVED_LAG = 3600 * 24 * 30


def compressor(level: int = 3, window_log: int = LONG_WINDOW_LOG,
               long_distance: bool = True) -> zstandard.ZstdCompressor:
    """A compressor like the dumps' own: a 2 GiB window declared in the frame header, long-distance matching,
    a checksum, and no content size (the dumps are written as a stream)."""
    params = zstandard.ZstdCompressionParameters.from_level(
        level, window_log=window_log, enable_ldm=long_distance, write_checksum=1, write_content_size=0,
    )
    return zstandard.ZstdCompressor(compression_params=params)


@dataclass(frozen=True)
class DumpInfo:
    path: Path
    lines: int
    bytes: int  # decompressed

    @property
    def compressed_bytes(self) -> int:
        return self.path.stat().st_size


def write_dump(path: str | Path, records: Iterable[dict[str, Any] | bytes], *, level: int = 3,
               window_log: int = LONG_WINDOW_LOG, long_distance: bool = True,
               frame_bytes: int | None = None) -> DumpInfo:
    """Write records (dicts, or raw lines without their newline, to plant broken ones) as a dump file,
    streaming. `frame_bytes` starts a new zstd frame every so many bytes: some dumps are several frames."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = size = in_frame = 0
    with path.open("wb") as fh, compressor(level, window_log, long_distance).stream_writer(fh, closefd=False) as out:
        batch: list[bytes] = []
        for record in records:
            line = (record if isinstance(record, bytes) else orjson.dumps(record)) + b"\n"
            batch.append(line)
            lines += 1
            size += len(line)
            in_frame += len(line)
            if len(batch) >= 1024 or (frame_bytes and in_frame >= frame_bytes):
                out.write(b"".join(batch))
                batch = []
                if frame_bytes and in_frame >= frame_bytes:
                    out.flush(zstandard.FLUSH_FRAME)
                    in_frame = 0
        out.write(b"".join(batch))
    return DumpInfo(path, lines, size)


# ---------------------------------------------------------------- records


def _tag(text: Any, digits: int) -> str:
    """A stable id-like tag (hash() changes between processes; the same seed must give the same files)."""
    return f"{zlib.crc32(str(text).lower().encode()) % 36**digits:x}"


def _integral(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def submission_record(post: dict[str, Any]) -> dict[str, Any]:
    """A post as a submissions dump holds it: the API's JSON fields, integer times, and the archive's extras."""
    name = post["subreddit"]
    record: dict[str, Any] = {
        "all_awardings": [], "allow_live_comments": False, "archived": False, "author_flair_css_class": None,
        "author_flair_richtext": [], "author_flair_text": None, "author_flair_type": "text",
        "author_fullname": f"t2_{_tag(post.get('author'), 6)}", "author_patreon_flair": False,
        "can_gild": True, "contest_mode": False, "edited": False, "gilded": 0, "gildings": {}, "hidden": False,
        "is_crosspostable": True, "is_meta": False, "is_original_content": False, "is_reddit_media_domain": True,
        "is_robot_indexable": True, "link_flair_richtext": [], "link_flair_type": "text", "locked": False,
        "media": None, "media_embed": {}, "media_only": False, "no_follow": True, "num_crossposts": 0,
        "parent_whitelist_status": "all_ads", "pinned": False, "pwls": 6, "quarantine": False,
        "removal_reason": None, "send_replies": True, "spoiler": False, "stickied": False,
        "subreddit_id": f"t5_{_tag(name, 5)}", "subreddit_subscribers": 123456,
        "subreddit_type": "public", "thumbnail": "default", "total_awards_received": 0,
        "whitelist_status": "all_ads", "wls": 6,
    }
    record.update({k: v for k, v in post.items() if not k.startswith("_")})
    if not record.get("is_self") and record.get("url"):
        record["url_overridden_by_dest"] = record["url"]  # what the API sends for link posts since 2020
    record["created_utc"] = _integral(record.get("created_utc"))
    record["retrieved_on"] = int(record["created_utc"] or 0) + RETRIEVED_LAG
    return record


def comment_record(comment: dict[str, Any], *, body_html: bool = False) -> dict[str, Any]:
    """A comment as a comments dump holds it. Without `body_html` unless asked: the dumps since 2023 carry only
    the markdown `body` (HTML-escaped like the API's: `&amp;`, `&lt;`, `&gt;`)."""
    record: dict[str, Any] = {
        "all_awardings": [], "associated_award": None, "author_flair_css_class": None,
        "author_flair_richtext": [], "author_flair_text": None, "author_flair_type": "text",
        "author_fullname": f"t2_{_tag(comment.get('author'), 6)}", "author_patreon_flair": False,
        "awarders": [], "can_gild": True, "collapsed": False, "collapsed_reason": None, "controversiality": 0,
        "distinguished": None, "edited": False, "gilded": 0, "gildings": {}, "is_submitter": False,
        "locked": False, "no_follow": True, "quarantined": False, "removal_reason": None, "send_replies": True,
        "stickied": False, "subreddit_id": f"t5_{_tag(comment['subreddit'], 5)}",
        "subreddit_name_prefixed": f"r/{comment['subreddit']}", "subreddit_type": "public",
        "total_awards_received": 0,
    }
    record.update({k: v for k, v in comment.items() if k not in ("replies", "depth") and not k.startswith("_")})
    if not body_html:
        record.pop("body_html", None)
    record["created_utc"] = _integral(record.get("created_utc"))
    record["retrieved_on"] = int(record["created_utc"] or 0) + RETRIEVED_LAG
    return record


def dumps_from_fake(fake: FakeReddit, directory: str | Path, month: str = "2019-03", *,
                    body_html: bool = False, **write: Any) -> tuple[Path, Path]:
    """The fake's posts and comments as `RS_<month>.zst` and `RC_<month>.zst`, in time order as the dumps are."""
    directory = Path(directory)
    posts = sorted(fake.posts.values(), key=lambda p: p["created_utc"])
    comments = sorted(fake.comments.values(), key=lambda c: c["created_utc"])
    rs = write_dump(directory / f"RS_{month}.zst", (submission_record(p) for p in posts), **write).path
    rc = write_dump(directory / f"RC_{month}.zst", (comment_record(c, body_html=body_html) for c in comments),
                    **write).path
    return rs, rc


# ---------------------------------------------------------------- a realistic month, for the benchmark

GOTOUBUN_JOB = """
name: gotoubun
labels:
  - name: miku
    aliases: [Nakano Miku]
    sources:
      - {kind: subreddit_posts, subreddit: Nakano_Miku}
      - {kind: title_mentions, subreddit: 5ToubunNoHanayome}
      - {kind: comment_links, subreddit: anime, query: "Go-toubun no Hanayome Episode Discussion"}
  - name: nino
    aliases: [Nakano Nino]
    sources:
      - {kind: title_mentions, subreddit: 5ToubunNoHanayome}
      - {kind: comment_links, subreddit: anime, query: "Go-toubun no Hanayome Episode Discussion"}
"""

_COMMON = ("the a to and of is it that in this i you for was with on but not so be have are just like my they "
         "what all at one if or he can we about would out more do when an there up people think she her his "
         "episode season anime manga art character best girl show really good time get because much even "
         "still see know who did also first from how only some no been them than well new make because could "
         "going now then really story chapter scene opening ending animation studio voice actor fan drawing "
         "color colour sketch cute wholesome wedding sister sisters quintuplets tutor exam headphones ribbon "
         "butterfly hair short long star bread meat buns school festival kyoto trip bell ferris wheel")


def _vocabulary(size: int = 3000) -> tuple[list[str], list[float]]:
    """Common words and made-up ones with Zipf weights: text that compresses about as well as real comments."""
    rng = random.Random(1)
    syllables = [c + v for c in "bcdfghjklmnprstvwyz" for v in "aeiou"] + ["sh", "th", "ng", "qu", "ch"]
    words = _COMMON.split() + ["".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(size)]
    weights, total = [], 0.0
    for rank in range(len(words)):
        total += 1.0 / (rank + 1)
        weights.append(total)
    return words, weights


WORDS, _WORD_WEIGHTS = _vocabulary()
NOISE_SUBREDDITS = [f"{stem}{n}" for stem in ("pics", "gaming", "funny", "AskReddit", "worldnews", "movies",
                                              "aww", "todayilearned", "Music", "science", "animememes",
                                              "AnimeART", "manga", "Nakano_Mikus", "anime_irl")
                    for n in ("", "2", "_fans")]
THREAD_TITLE = "Go-toubun no Hanayome Season 2 - Episode {n} Discussion"


@dataclass
class GeneratedMonth:
    submissions: DumpInfo
    comments: DumpInfo
    planted: dict[str, int]  # expected candidates per source kind


class _Ids:
    def __init__(self, start: int):
        self.next = start

    def __call__(self) -> str:
        self.next += 1
        number, out = self.next, ""
        while number:
            number, rem = divmod(number, 36)
            out = "0123456789abcdefghijklmnopqrstuvwxyz"[rem] + out
        return out


def generate_month(directory: str | Path, month: str = "2019-03", *, submissions_bytes: int = 50_000_000,
                   comments_bytes: int = 150_000_000, match_fraction: float = 0.01, seed: int = 0,
                   level: int = 3) -> GeneratedMonth:
    """A month of dumps: noise from many subreddits, and `match_fraction` of the lines in the subreddits of
    GOTOUBUN_JOB (image posts, posts naming the sisters, discussion threads and their comments, and
    r/anime chatter that the comment filter must drop). Same seed, same files."""
    rng = random.Random(seed)
    directory = Path(directory)
    start = 1_551_398_400  # 2019-03-01
    planted = {"subreddit_posts": 0, "title_mentions": 0, "comment_links": 0}
    post_ids, comment_ids = _Ids(36**5 * 7), _Ids(36**6 * 3)
    threads: list[dict[str, Any]] = []
    authors = [f"user_{rng.getrandbits(40):x}" for _ in range(5000)] + ["[deleted]"] * 50

    def text(low: int, high: int) -> str:
        words = rng.choices(WORDS, cum_weights=_WORD_WEIGHTS, k=rng.randint(low, high))
        return " ".join(words).capitalize() + rng.choice([".", "!", "?", " &amp; more", "..."])

    def post(subreddit: str, title: str, created: int, **extra: Any) -> dict[str, Any]:
        post_id = post_ids()
        slug = re.sub(r"[^a-z0-9]+", "_", title.lower())[:40]
        url = extra.pop("url", f"https://i.redd.it/{rng.getrandbits(48):012x}.jpg") or \
            f"https://www.reddit.com/r/{subreddit}/comments/{post_id}/{slug}/"
        data = {"id": post_id, "name": f"t3_{post_id}", "title": title, "subreddit": subreddit,
                "subreddit_name_prefixed": f"r/{subreddit}", "author": rng.choice(authors),
                "created_utc": created, "permalink": f"/r/{subreddit}/comments/{post_id}/{slug}/", "url": url,
                "domain": "i.redd.it", "score": rng.randint(0, 5000), "over_18": False, "is_self": False,
                "selftext": "", "is_video": False, "link_flair_text": None, "num_comments": rng.randint(0, 300),
                "thumbnail": f"https://b.thumbs.redditmedia.com/{rng.getrandbits(64):016x}.jpg",
                "preview": {"enabled": True, "images": [{"id": f"{rng.getrandbits(64):x}", "resolutions": [
                    {"url": f"https://preview.redd.it/{rng.getrandbits(48):x}.jpg?width={w}&amp;crop=smart",
                     "width": w, "height": w} for w in (108, 216, 320)], "variants": {}}]}}
        data.update(extra)
        return submission_record(data)

    def submissions() -> Iterator[bytes]:
        written, created = 0, start
        while written < submissions_bytes:
            created += rng.randint(0, 2)
            roll = rng.random()
            if roll < match_fraction / 4:
                record = post("Nakano_Miku", text(3, 10), created)
                planted["subreddit_posts"] += 1
            elif roll < match_fraction / 2:
                who = rng.choice(["Miku", "Nakano Nino", "Ichika"])
                record = post("5ToubunNoHanayome", f"{who} {text(2, 8)}", created)
                planted["title_mentions"] += who != "Ichika"
            elif roll < match_fraction * 0.55:
                record = post("anime", THREAD_TITLE.format(n=len(threads) + 1), created, is_self=True,
                              url=None, selftext=text(20, 80), link_flair_text="Episode")
                threads.append(record)
            elif roll < match_fraction:
                record = post("anime", text(4, 12), created, is_self=True, url=None, selftext=text(10, 60))
            else:
                sub = rng.choice(NOISE_SUBREDDITS)
                record = post(sub, text(4, 16), created, is_self=rng.random() < 0.4, selftext=text(0, 80))
            line = orjson.dumps(record)
            written += len(line) + 1
            yield line

    def comments() -> Iterator[bytes]:
        written, created = 0, start + 3600
        anime_noise = {"id": "zzzzzz", "permalink": "/r/anime/comments/zzzzzz/x/"}
        while written < comments_bytes:
            created += rng.randint(0, 1)
            roll = rng.random()
            comment_id = comment_ids()
            if roll < match_fraction / 2 and threads:
                thread, sub = rng.choice(threads), "anime"
                who = rng.choice(["Miku", "Nino", "Yotsuba"])
                body = f"{text(2, 20)} [{who}](https://i.redd.it/{rng.getrandbits(48):012x}.png) {text(0, 10)}"
                planted["comment_links"] += who != "Yotsuba"
            elif roll < match_fraction:
                thread, sub, body = anime_noise, "anime", text(3, 60)
            else:
                thread = {"id": post_ids.next - rng.randint(0, 10_000), "permalink": "/r/x/comments/x/y/"}
                thread = {"id": f"{thread['id']:x}", "permalink": thread["permalink"]}
                sub, body = rng.choice(NOISE_SUBREDDITS), text(3, 60)
            record = comment_record({
                "id": comment_id, "name": f"t1_{comment_id}", "body": body, "author": rng.choice(authors),
                "created_utc": created, "permalink": f"{thread['permalink']}{comment_id}/",
                "score": rng.randint(-5, 500), "parent_id": f"t3_{thread['id']}", "link_id": f"t3_{thread['id']}",
                "subreddit": sub,
            })
            line = orjson.dumps(record)
            written += len(line) + 1
            yield line

    rs = write_dump(directory / f"RS_{month}.zst", submissions(), level=level)
    rc = write_dump(directory / f"RC_{month}.zst", comments(), level=level)
    return GeneratedMonth(rs, rc, planted)
