"""Scraping with real PRAW against the fake Reddit + Imgur server."""

from __future__ import annotations

import sqlite3

import pytest
from pydantic import SecretStr

from fakes.reddit import FakeReddit
from flows.scrape import scrape_job
from flows.settings import Settings
from tasks import catalog
from tasks.jobs import parse_job
from tasks.links import Skip
from tasks.reddit import RedditAuthFailed

pytestmark = pytest.mark.integration


def job_of(yaml_text: str):
    return parse_job(yaml_text, "job.yaml")


def rows(settings: Settings, label: str | None = None) -> list[sqlite3.Row]:
    conn = catalog.connect(settings.catalog_path)
    try:
        query = "SELECT * FROM candidates" + (" WHERE label = ?" if label else "") + " ORDER BY id"
        return conn.execute(query, (label,) if label else ()).fetchall()
    finally:
        conn.close()


MIKU_POSTS = """
name: gotoubun
labels:
  - name: miku
    aliases: [Nakano Miku]
    sources:
      - {kind: subreddit_posts, subreddit: Nakano_Miku}
"""


def test_subreddit_posts_paginates_over_pages_and_records_provenance(fake_reddit: FakeReddit, settings: Settings):
    for i in range(250):
        fake_reddit.add_post("Nakano_Miku", f"Miku fan art #{i}", url=f"https://i.redd.it/miku{i}.jpeg",
                             author=f"artist{i % 7}", score=i)

    summary = scrape_job(settings, job_of(MIKU_POSTS))

    assert summary.new_candidates == 250
    pages = fake_reddit.requests_to(r"^/r/Nakano_Miku/new$")
    assert len(pages) == 3  # 100 + 100 + 50
    assert pages[1].query["after"] and pages[2].query["after"] != pages[1].query["after"]
    found = rows(settings)
    assert {r["url"] for r in found} == {f"https://i.redd.it/miku{i}.jpeg" for i in range(250)}
    newest = max(found, key=lambda r: r["created_utc"])
    assert newest["url"] == "https://i.redd.it/miku249.jpeg"
    assert newest["text"] == "Miku fan art #249"
    assert newest["author"] == "artist4" and newest["score"] == 249
    assert newest["label"] == "miku" and newest["source_kind"] == "subreddit_posts"
    assert newest["subreddit"] == "Nakano_Miku" and newest["comment_id"] == ""
    assert newest["permalink"].startswith("https://www.reddit.com/r/Nakano_Miku/comments/")


def test_listing_stops_at_reddits_1000_item_cap(fake_reddit: FakeReddit, settings: Settings):
    for i in range(1050):
        fake_reddit.add_post("Nakano_Miku", f"Miku {i}", url=f"https://i.redd.it/m{i}.png")

    summary = scrape_job(settings, job_of(MIKU_POSTS))

    assert summary.new_candidates == 1000
    assert len(fake_reddit.requests_to(r"^/r/Nakano_Miku/new$")) == 10


def test_rerun_yields_nothing_new_and_stops_at_first_seen_post(fake_reddit: FakeReddit, settings: Settings):
    for i in range(150):
        fake_reddit.add_post("Nakano_Miku", f"Miku {i}", url=f"https://i.redd.it/m{i}.jpeg")
    job = job_of(MIKU_POSTS)
    assert scrape_job(settings, job).new_candidates == 150
    fake_reddit.requests.clear()

    again = scrape_job(settings, job)

    assert again.new_candidates == 0
    assert again.sources[0].stopped_at_seen and again.sources[0].posts_read == 0
    assert len(fake_reddit.requests_to(r"^/r/Nakano_Miku/new$")) == 1  # the first page only

    fake_reddit.add_post("Nakano_Miku", "Miku new", url="https://i.redd.it/fresh.jpeg")
    third = scrape_job(settings, job)
    assert third.new_candidates == 1 and third.sources[0].posts_read == 1
    assert len(rows(settings)) == 151


def test_interrupted_pass_is_completed_by_the_next_run(fake_reddit: FakeReddit, settings: Settings):
    """A pass that fails half-way keeps what it stored, and the next run goes past those posts."""
    for i in range(250):
        fake_reddit.add_post("Nakano_Miku", f"Miku {i}", url=f"https://i.redd.it/m{i}.jpeg")
    job = job_of(MIKU_POSTS)
    original_page = fake_reddit.page

    def failing_after_first_page(items, kind, query):
        if query.get("after"):
            raise RuntimeError("server broke mid-listing")
        return original_page(items, kind, query)

    fake_reddit.page = failing_after_first_page  # type: ignore[method-assign]
    broken = scrape_job(settings.model_copy(update={"reddit_max_rate_limit_waits": 0}), job)
    assert broken.sources[0].error and broken.new_candidates == 100

    fake_reddit.page = original_page  # type: ignore[method-assign]
    healed = scrape_job(settings, job)
    assert healed.new_candidates == 150 and not healed.sources[0].error
    assert len(rows(settings)) == 250


def test_flair_filter_and_nsfw_policy(fake_reddit: FakeReddit, settings: Settings):
    fake_reddit.add_post("Nakano_Miku", "fan art", url="https://i.redd.it/a.jpeg", flair="Fanart")
    fake_reddit.add_post("Nakano_Miku", "meme", url="https://i.redd.it/b.jpeg", flair="Meme")
    fake_reddit.add_post("Nakano_Miku", "lewd", url="https://i.redd.it/c.jpeg", flair="Fanart", nsfw=True)
    job = job_of("""
name: gotoubun
labels:
  - name: miku
    sources: [{kind: subreddit_posts, subreddit: Nakano_Miku, flairs: [fanart]}]
""")
    summary = scrape_job(settings, job)
    assert [r["url"] for r in rows(settings)] == ["https://i.redd.it/a.jpeg"]
    assert summary.skipped[Skip.FLAIR] == 1 and summary.skipped[Skip.NSFW] == 1


def test_title_mentions_checks_the_title_and_accepts_aliases(fake_reddit: FakeReddit, settings: Settings):
    sub = "5ToubunNoHanayome"
    fake_reddit.add_post(sub, "Nakano Miku in her summer outfit", url="https://i.redd.it/alias.jpeg")
    fake_reddit.add_post(sub, "[Fanart] miku!", url="https://i.redd.it/label.png")
    fake_reddit.add_post(sub, "Mikuru cosplay", url="https://i.redd.it/mikuru.jpeg")  # search finds, title check drops
    fake_reddit.add_post(sub, "Nino and Itsuki", url="https://i.redd.it/other.jpeg")
    job = job_of(f"""
name: gotoubun
labels:
  - name: miku
    aliases: [Nakano Miku]
    sources: [{{kind: title_mentions, subreddit: {sub}}}]
""")
    summary = scrape_job(settings, job)

    assert {r["url"] for r in rows(settings)} == {"https://i.redd.it/alias.jpeg", "https://i.redd.it/label.png"}
    assert summary.skipped[Skip.TITLE_NO_MATCH] == 1
    search = fake_reddit.requests_to(rf"^/r/{sub}/search$")[0]
    assert search.query["q"] == ['title:"Nakano Miku" OR title:"miku"']
    assert search.query["sort"] == ["new"] and search.query["restrict_sr"]


def test_galleries_keep_gallery_order_and_skip_invalid_items(fake_reddit: FakeReddit, settings: Settings):
    fake_reddit.add_gallery("Nakano_Miku", "Miku set", [
        {"media_id": "first"}, {"media_id": "broken", "status": "failed"},
        {"media_id": "second", "mime": "image/png"}, {"media_id": "clip", "e": "RedditVideo", "mime": "video/mp4"},
        {"media_id": "third"},
    ])
    fake_reddit.add_gallery("Nakano_Miku", "removed gallery", None)
    summary = scrape_job(settings, job_of(MIKU_POSTS))

    found = rows(settings)
    assert [(r["url"], r["position"]) for r in found] == [
        ("https://i.redd.it/first.jpg", 0), ("https://i.redd.it/second.png", 1), ("https://i.redd.it/third.jpg", 2)]
    assert len({r["post_id"] for r in found}) == 1
    assert summary.skipped[Skip.GALLERY_ITEM_INVALID] == 1
    assert summary.skipped[Skip.VIDEO] == 1
    assert summary.skipped[Skip.GALLERY_UNAVAILABLE] == 1


def test_crossposts_and_imgur_links_resolve(fake_reddit: FakeReddit, settings: Settings):
    original = fake_reddit.add_post("anime", "art", url="https://i.redd.it/orig.jpeg")
    fake_reddit.add_crosspost("Nakano_Miku", "Miku (xpost)", original)
    fake_reddit.add_post("Nakano_Miku", "album", url="https://imgur.com/a/AlB12")
    fake_reddit.add_post("Nakano_Miku", "page", url="https://imgur.com/PaGe1")
    fake_reddit.add_post("Nakano_Miku", "gone", url="https://imgur.com/a/GoNe1")
    fake_reddit.add_post("Nakano_Miku", "direct", url="https://i.imgur.com/DiRe1.png")
    fake_reddit.add_post("Nakano_Miku", "elsewhere", url="https://pbs.example.org/media/x.webp?name=large")
    fake_reddit.add_post("Nakano_Miku", "a blog", url="https://example.org/blog/post")
    fake_reddit.add_imgur_album("AlB12", ["https://i.imgur.com/one11.jpg", "https://i.imgur.com/two22.png"])
    fake_reddit.add_imgur_image("PaGe1", "https://i.imgur.com/PaGe1.jpg")

    summary = scrape_job(settings, job_of(MIKU_POSTS))

    assert {r["url"] for r in rows(settings)} == {
        "https://i.redd.it/orig.jpeg", "https://i.imgur.com/one11.jpg", "https://i.imgur.com/two22.png",
        "https://i.imgur.com/PaGe1.jpg", "https://i.imgur.com/DiRe1.png",
        "https://pbs.example.org/media/x.webp?name=large",
    }
    assert summary.skipped == {Skip.IMGUR_NOT_FOUND: 1, Skip.NOT_AN_IMAGE_LINK: 1}
    album = [r for r in rows(settings) if "one11" in r["url"] or "two22" in r["url"]]
    assert [r["position"] for r in album] == [0, 1]


def test_imgur_without_client_id_is_counted_not_fetched(fake_reddit: FakeReddit, settings: Settings):
    fake_reddit.add_post("Nakano_Miku", "album", url="https://imgur.com/a/AlB12")
    fake_reddit.add_post("Nakano_Miku", "direct", url="https://i.imgur.com/DiRe1.png")
    fake_reddit.add_imgur_album("AlB12", ["https://i.imgur.com/one11.jpg"])

    summary = scrape_job(settings.model_copy(update={"imgur_client_id": None}), job_of(MIKU_POSTS))

    assert [r["url"] for r in rows(settings)] == ["https://i.imgur.com/DiRe1.png"]
    assert summary.skipped[Skip.IMGUR_NO_CLIENT_ID] == 1
    assert fake_reddit.requests_to(r"^/3/") == []


THREADS = """
name: gotoubun
labels:
  - name: miku
    aliases: [Nakano Miku]
    sources: [{kind: comment_links, subreddit: anime, query: "Go-Toubun Episode Discussion", flair: Episode}]
  - name: nino
    sources: [{kind: comment_links, subreddit: anime, query: "Go-Toubun Episode Discussion", flair: Episode}]
"""


def build_thread(fake: FakeReddit) -> dict:
    thread = fake.add_post("anime", "Go-Toubun Episode Discussion - Episode 5", is_self=True, flair="Episode")
    top = fake.add_comment(thread, "Best girl: [Miku (summer ver.)](https://i.redd.it/paren.jpeg) and "
                                   "[Nino](https://imgur.com/a/NiNo1)")
    for k in range(6):  # more than comments_per_level: a `more` stub, and deep chains: "continue this thread"
        reply = fake.add_comment(top, f"[miku #{k}](https://preview.redd.it/r{k}.png?width=640&amp;s=x)")
        deep = fake.add_comment(reply, f"deeper [Nakano Miku](https://i.redd.it/d{k}.jpeg)")
        fake.add_comment(deep, f"deepest [miku](https://i.redd.it/e{k}.jpeg)")
    fake.add_comment(thread, "not her: [Mikuru](https://i.redd.it/mikuru.jpeg), [source](https://i.redd.it/s.jpeg)")
    fake.add_comment(thread, "no markdown here", body_html=(
        '&lt;div class="md"&gt;&lt;p&gt;&lt;a href="https://i.redd.it/html.jpeg?a=1&amp;amp;b=2"&gt;'
        'Miku&lt;/a&gt;&lt;/p&gt;&lt;/div&gt;'))
    fake.add_comment(thread, "[Miku](https://www.youtube.com/watch?v=abc)", author=None)
    fake.add_imgur_album("NiNo1", ["https://i.imgur.com/nino1.jpg", "https://i.imgur.com/nino2.jpg"])
    fake.add_post("anime", "Go-Toubun Episode Discussion - rewatch", is_self=True, flair="Rewatch")
    return thread


def test_comment_links_reads_the_whole_tree_once_for_all_labels(fake_reddit: FakeReddit, settings: Settings):
    thread = build_thread(fake_reddit)

    summary = scrape_job(settings, job_of(THREADS))

    miku = {r["url"] for r in rows(settings, "miku")}
    assert miku == {
        "https://i.redd.it/paren.jpeg", "https://i.redd.it/html.jpeg?a=1&b=2",
        *(f"https://i.redd.it/r{k}.png" for k in range(6)),
        *(f"https://i.redd.it/d{k}.jpeg" for k in range(6)),
        *(f"https://i.redd.it/e{k}.jpeg" for k in range(6)),
    }
    assert {r["url"] for r in rows(settings, "nino")} == {"https://i.imgur.com/nino1.jpg",
                                                          "https://i.imgur.com/nino2.jpg"}
    paren = next(r for r in rows(settings, "miku") if r["url"].endswith("paren.jpeg"))
    assert paren["text"] == "Miku (summer ver.)" and paren["post_id"] == thread["id"] and paren["comment_id"]
    assert fake_reddit.requests_to(r"^/api/morechildren$"), "the tree had `more` stubs to expand"
    assert fake_reddit.requests_to(r"^/comments/\w+/_/\w+$"), "and 'continue this thread' links"
    assert len(fake_reddit.requests_to(rf"^/comments/{thread['id']}$")) == 1  # one read serves both labels
    read = {r.path.split("/")[2] for r in fake_reddit.requests_to(r"^/comments/")}
    assert read == {thread["id"]}  # the thread with another flair was never read
    assert 'flair:"Episode"' in fake_reddit.requests_to(r"^/r/anime/search$")[0].query["q"][0]
    assert summary.skipped[Skip.NOT_AN_IMAGE_LINK] == 1  # the youtube link named Miku


def test_replace_more_limit_bounds_the_expansion(fake_reddit: FakeReddit, settings: Settings):
    build_thread(fake_reddit)
    job = job_of(THREADS.replace("flair: Episode}", "flair: Episode, replace_more_limit: 0}"))
    scrape_job(settings, job)
    assert not fake_reddit.requests_to(r"^/api/morechildren$")
    assert 0 < len(rows(settings, "miku")) < 19


def test_grown_thread_is_read_again_and_only_new_links_are_added(fake_reddit: FakeReddit, settings: Settings):
    thread = build_thread(fake_reddit)
    job = job_of(THREADS)
    first = scrape_job(settings, job).new_candidates
    again = scrape_job(settings, job)
    assert again.new_candidates == 0 and len(fake_reddit.requests_to(rf"^/comments/{thread['id']}$")) == 1

    fake_reddit.add_comment(thread, "new one: [Nino](https://i.redd.it/nino-late.jpeg)")
    grown = scrape_job(settings, job)

    assert grown.new_candidates == 1
    assert len(rows(settings)) == first + 1
    assert "https://i.redd.it/nino-late.jpeg" in {r["url"] for r in rows(settings, "nino")}


def test_links_to_reddit_galleries_in_comments_are_followed(fake_reddit: FakeReddit, settings: Settings):
    gallery = fake_reddit.add_gallery("pics", "set", [{"media_id": "ga1"}, {"media_id": "ga2"}])
    thread = fake_reddit.add_post("anime", "Go-Toubun Episode Discussion", is_self=True, flair="Episode")
    fake_reddit.add_comment(thread, f"[Nino gallery](https://www.reddit.com/gallery/{gallery['id']})")
    scrape_job(settings, job_of(THREADS))
    assert [r["url"] for r in rows(settings, "nino")] == ["https://i.redd.it/ga1.jpg", "https://i.redd.it/ga2.jpg"]


def test_429_is_waited_out_and_503_retried(fake_reddit: FakeReddit, settings: Settings):
    for i in range(120):
        fake_reddit.add_post("Nakano_Miku", f"Miku {i}", url=f"https://i.redd.it/m{i}.jpeg")
    fake_reddit.inject(r"^/r/Nakano_Miku/new$", 429, times=1, headers={"Retry-After": "1"})
    fake_reddit.inject(r"^/r/Nakano_Miku/new$", 503, times=1)

    summary = scrape_job(settings, job_of(MIKU_POSTS))

    assert summary.new_candidates == 120 and not summary.errors
    assert summary.rate_limited == 1
    statuses = [r.status for r in fake_reddit.requests_to(r"^/r/Nakano_Miku/new$")]
    assert statuses[:3] == [429, 503, 200] and statuses.count(200) == 2


def test_persistent_429_fails_the_source_after_bounded_waits(fake_reddit: FakeReddit, settings: Settings):
    fake_reddit.add_post("Nakano_Miku", "Miku", url="https://i.redd.it/m.jpeg")
    fake_reddit.inject(r"^/r/Nakano_Miku/new$", 429, times=100, headers={"Retry-After": "0"})
    summary = scrape_job(settings.model_copy(update={"reddit_max_rate_limit_waits": 2}), job_of(MIKU_POSTS))
    assert summary.sources[0].error and "TooManyRequests" in summary.sources[0].error
    assert len(fake_reddit.requests_to(r"^/r/Nakano_Miku/new$")) == 3


def test_unknown_subreddit_fails_only_its_source(fake_reddit: FakeReddit, settings: Settings):
    fake_reddit.add_post("Nakano_Miku", "Miku", url="https://i.redd.it/m.jpeg")
    job = job_of("""
name: gotoubun
labels:
  - name: miku
    sources:
      - {kind: subreddit_posts, subreddit: NoSuchSub}
      - {kind: subreddit_posts, subreddit: Nakano_Miku}
""")
    summary = scrape_job(settings, job)
    assert summary.new_candidates == 1
    assert summary.sources[0].error and "not found" in summary.sources[0].error
    assert not summary.sources[1].error


def test_candidate_cap_per_source(fake_reddit: FakeReddit, settings: Settings):
    for i in range(30):
        fake_reddit.add_post("Nakano_Miku", f"Miku {i}", url=f"https://i.redd.it/m{i}.jpeg")
    job = job_of(MIKU_POSTS.replace("name: gotoubun", "name: gotoubun\noptions: {max_candidates_per_source: 10}"))
    summary = scrape_job(settings, job)
    assert summary.new_candidates == 10 and summary.sources[0].cap_reached


def test_wrong_credentials_fail_clearly(fake_reddit: FakeReddit, settings: Settings):
    fake_reddit.add_post("Nakano_Miku", "Miku", url="https://i.redd.it/m.jpeg")
    bad = settings.model_copy(update={"reddit_client_secret": SecretStr("wrong-secret")})
    with pytest.raises(RedditAuthFailed, match="refused the credentials") as caught:
        scrape_job(bad, job_of(MIKU_POSTS))
    assert "wrong-secret" not in str(caught.value)
    assert fake_reddit.requests_to(r"^/r/") == []  # stopped before reading anything
