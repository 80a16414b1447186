"""Arctic Shift's answers parsed (recorded shapes), query translation, the fake's full-text search, and the
shared rate limiter's pacing."""

from __future__ import annotations

import threading

import pytest

from fakes.arctic import parse_date, websearch_matches
from tasks.arctic import (
    ArcticShiftBadAnswer,
    flatten_tree,
    parse_answer,
    unsupported_reason,
    websearch_from_reddit_query,
)
from tasks.jobs import CommentLinks, SubredditPosts, TitleMentions
from tasks.links import NameMatcher
from tasks.ratelimit import RateLimiter, shared_limiter

URL = "https://arctic-shift.photon-reddit.com/api/posts/search?subreddit=x"


def test_parse_answer_returns_the_data_list():
    body = b'{"data": [{"id": "abc", "title": "t"}, {"id": "def"}, "junk"]}'
    assert parse_answer(200, "application/json", body, URL) == [{"id": "abc", "title": "t"}, {"id": "def"}]


@pytest.mark.parametrize("content_type, body, says", [
    ("text/html", b"<html><body>502 Bad Gateway</body></html>", "answered an HTML page instead of JSON"),
    ("application/json", b'{"data": [{"id": "abc", "tit', "invalid or truncated JSON"),
    ("application/json", b'{"results": []}', "no `data` list"),
    ("application/json", b'{"data": null}', "no `data` list"),
    ("application/json", b'{"error": "Timeout. Maybe slow down a bit"}', "Timeout. Maybe slow down a bit"),
    ("text/plain", b"upstream connect error", "text/plain instead of JSON"),
])
def test_parse_answer_names_what_came_instead(content_type: str, body: bytes, says: str):
    with pytest.raises(ArcticShiftBadAnswer) as caught:
        parse_answer(200, content_type, body, URL)
    assert says in str(caught.value) and str(caught.value).startswith(URL)


def test_flatten_tree_is_breadth_first_and_collects_collapsed_ids():
    def comment(cid: str, replies: list | None = None) -> dict:
        data = {"id": cid, "body": cid}
        data["replies"] = {"kind": "Listing", "data": {"children": replies}} if replies else ""
        return {"kind": "t1", "data": data}

    tree = [comment("a", [comment("a1", [comment("a1x")]), {"kind": "more", "data": {"children": ["a2", "a3"]}}]),
            comment("b"), {"kind": "more", "data": {"children": ["c"]}}]

    comments, collapsed = flatten_tree(tree)

    assert [c["id"] for c in comments] == ["a", "b", "a1", "a1x"]
    assert collapsed == ["c", "a2", "a3"]
    assert all("replies" not in c for c in comments)


@pytest.mark.parametrize("reddit, websearch", [
    ("Go-toubun no Hanayome Episode Discussion", "Go-toubun no Hanayome Episode Discussion"),
    ('title:"Episode Discussion" flair:"Episode"', '"Episode Discussion"'),
    ("miku AND nino NOT cosplay", "miku nino -cosplay"),
    ('title:"Nakano Miku" OR title:miku', '"Nakano Miku" OR miku'),
])
def test_reddit_queries_become_websearch_title_queries(reddit: str, websearch: str):
    assert websearch_from_reddit_query(reddit) == websearch


def test_label_names_become_a_websearch_query():
    assert NameMatcher(["miku", "Nakano_Miku", "Nakano-Miku"]).websearch_query() == '"Nakano Miku" OR miku'


@pytest.mark.parametrize("query, title, matches", [
    ("Episode Discussion", "Go-Toubun Episode 5 Discussion", True),  # words ANDed, any order
    ('"Episode Discussion"', "Go-Toubun Episode 5 Discussion", False),  # a phrase keeps its words together
    ('"Episode Discussion"', "Go-Toubun - Episode Discussion 5", True),
    ('"Nakano Miku" OR miku', "Miku at the beach", True),
    ('"Nakano Miku" OR miku', "Mikuru cosplay", False),  # whole words, unlike Reddit's loose search
    ("miku -cosplay", "Miku cosplay", False),
    ('miku -"bad art"', "Miku, bad art", False),
    ("Go-toubun no Hanayome", "Go-Toubun no Hanayome S2", True),  # `no` is a stop word, hyphens split
    ("sisters", "The five sister show", True),  # plurals stem
])
def test_fake_full_text_search_is_close_to_websearch_to_tsquery(query: str, title: str, matches: bool):
    assert websearch_matches(query, title) is matches


def test_fake_reads_arctic_shifts_date_forms():
    assert parse_date("1600000000") == 1_600_000_000
    assert parse_date("1600000000000") == 1_600_000_000
    assert parse_date("2020-09-13") == 1_599_955_200
    assert parse_date("2020-09-13T12:26:40Z") == 1_600_000_000


def test_score_sorted_sources_are_not_served_by_the_archive():
    assert "listing: top" in unsupported_reason(SubredditPosts(subreddit="xx", listing="top"))
    assert "sort: comments" in unsupported_reason(TitleMentions(subreddit="xx", sort="comments"))
    assert unsupported_reason(SubredditPosts(subreddit="xx")) is None
    assert unsupported_reason(CommentLinks(subreddit="xx", query="q", sort="relevance")) is None


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


def test_rate_limiter_spaces_requests_evenly():
    clock = FakeClock()
    limiter = RateLimiter(4.0, clock=clock, sleep=clock.sleep)
    sent = []
    for _ in range(5):
        limiter.acquire()
        sent.append(clock.now)
    assert [round(b - a, 6) for a, b in zip(sent, sent[1:], strict=False)] == [0.25] * 4


def test_rate_limiter_pause_holds_every_holder():
    clock = FakeClock()
    limiter = RateLimiter(10.0, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    limiter.pause_until(clock.now + 3.0)
    waited = limiter.acquire()
    assert waited == pytest.approx(3.0)


def test_rate_limiter_is_shared_between_threads():
    """20 acquisitions from 4 threads at once get 20 distinct slots 20 ms apart. The clock stands still and
    the sleeps are recorded, not slept: a busy machine's scheduling cannot blur what is measured (timestamps
    taken after acquire() moved by a few ms under load)."""
    waits: list[float] = []
    lock = threading.Lock()

    def sleep(seconds: float) -> None:
        with lock:
            waits.append(seconds)

    limiter = RateLimiter(50.0, clock=lambda: 100.0, sleep=sleep)
    start = threading.Barrier(4)

    def worker() -> None:
        start.wait()
        for _ in range(5):
            limiter.acquire()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # the first goes out at once; the other 19 wait for the 19 following slots
    assert sorted(round(w, 6) for w in waits) == [round(0.02 * i, 6) for i in range(1, 20)]


def test_one_shared_limiter_per_service_and_rate():
    assert shared_limiter("unit-test-host", 2.0) is shared_limiter("unit-test-host", 2.0)
    assert shared_limiter("unit-test-host", 2.0) is not shared_limiter("unit-test-other", 2.0)
