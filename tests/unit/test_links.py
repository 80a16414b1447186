"""Unit tests for tasks.links: comment links, name matching, URL classification, post resolution, Imgur."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tasks.links import (
    ImageRef,
    ImgurRef,
    Link,
    NameMatcher,
    RedditPostRef,
    Skip,
    classify_url,
    extract_links,
    imgur_api_path,
    parse_html_links,
    parse_imgur_response,
    parse_markdown_links,
    resolve_post,
)

# ---------------------------------------------------------------- markdown links


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param("[Miku](https://i.redd.it/a.jpeg)", [Link("Miku", "https://i.redd.it/a.jpeg")], id="simple"),
        pytest.param(
            "[Miku (summer ver.)](https://i.redd.it/a.jpeg)",
            [Link("Miku (summer ver.)", "https://i.redd.it/a.jpeg")],
            id="parentheses-in-text",
        ),
        pytest.param(
            "see [Miku](https://en.wikipedia.org/wiki/Miku_(singer)) here",
            [Link("Miku", "https://en.wikipedia.org/wiki/Miku_(singer)")],
            id="balanced-parentheses-in-url",
        ),
        pytest.param(
            "[Miku [best girl] Nakano](https://i.redd.it/b.png)",
            [Link("Miku [best girl] Nakano", "https://i.redd.it/b.png")],
            id="nested-brackets-in-text",
        ),
        pytest.param('[x](https://a.example/b.png "title")', [Link("x", "https://a.example/b.png")], id="title"),
        pytest.param("[x](https://a.example/b.png 'title')", [Link("x", "https://a.example/b.png")], id="title-single"),
        pytest.param("[x](<https://a.example/b.png>)", [Link("x", "https://a.example/b.png")], id="angle-brackets"),
        pytest.param(
            "[x](<https://a.example/my pic.png>)", [Link("x", "https://a.example/my pic.png")], id="angle-with-space"
        ),
        pytest.param("[x](  https://a.example/b.png  )", [Link("x", "https://a.example/b.png")], id="padded-url"),
        pytest.param(
            "[x](https://a.example/b.png?w=1&amp;h=2)", [Link("x", "https://a.example/b.png?w=1&h=2")], id="amp-entity"
        ),
        pytest.param(
            r"[x](https://a.example/nakano\_miku.png)",
            [Link("x", "https://a.example/nakano_miku.png")],
            id="escaped-underscore-in-url",
        ),
        pytest.param(
            r"[x](https://a.example/Miku\(1\).png)", [Link("x", "https://a.example/Miku(1).png")], id="escaped-parens"
        ),
        pytest.param("[**Miku**](https://i.redd.it/a.jpeg)", [Link("Miku", "https://i.redd.it/a.jpeg")], id="bold"),
        pytest.param(
            "[*Miku* ~~Nakano~~ `x`](https://i.redd.it/a.jpeg)",
            [Link("Miku Nakano x", "https://i.redd.it/a.jpeg")],
            id="emphasis-strike-code",
        ),
        pytest.param("[__Miku__](https://i.redd.it/a.jpeg)", [Link("Miku", "https://i.redd.it/a.jpeg")], id="strong"),
        pytest.param(
            "[Nakano_Miku](https://i.redd.it/a.jpeg)",
            [Link("Nakano_Miku", "https://i.redd.it/a.jpeg")],
            id="intraword-underscore-is-text",
        ),
        pytest.param(
            r"[Nakano\_Miku](https://i.redd.it/a.jpeg)",
            [Link("Nakano_Miku", "https://i.redd.it/a.jpeg")],
            id="escaped-underscore-in-text",
        ),
        pytest.param(
            "[  Miku\n  Nakano ](https://i.redd.it/a.jpeg)",
            [Link("Miku Nakano", "https://i.redd.it/a.jpeg")],
            id="whitespace-collapsed",
        ),
        pytest.param("[](https://i.redd.it/a.jpeg)", [Link("", "https://i.redd.it/a.jpeg")], id="empty-text"),
    ],
)
def test_parse_markdown_links(body: str, expected: list[Link]) -> None:
    assert parse_markdown_links(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(r"\[Miku](https://i.redd.it/a.jpeg)", id="escaped-bracket"),
        pytest.param("[Miku] (https://i.redd.it/a.jpeg)", id="space-before-paren"),
        pytest.param("[Miku]\n(https://i.redd.it/a.jpeg)", id="newline-before-paren"),
        pytest.param("[Miku](https://i.redd.it/a.jpeg", id="unclosed-paren"),
        pytest.param("[Miku](  )", id="empty-url"),
        pytest.param("just [brackets] and (parens)", id="no-link"),
        pytest.param("https://i.redd.it/a.jpeg", id="bare-url"),
        pytest.param("", id="empty"),
    ],
)
def test_parse_markdown_links_finds_nothing(body: str) -> None:
    assert parse_markdown_links(body) == []


def test_escaped_bracket_does_not_hide_a_later_link() -> None:
    body = r"\[OC] Miku: [full size](https://i.redd.it/a.jpeg)"
    assert parse_markdown_links(body) == [Link("full size", "https://i.redd.it/a.jpeg")]


def test_several_links_in_one_body_in_order() -> None:
    body = (
        "Here you go:\n\n"
        "* [Miku](https://i.redd.it/m.jpeg)\n"
        "* [Nino](https://i.imgur.com/AbC12de.png) and [Itsuki](https://imgur.com/a/XyZ98)\n"
        "\nsource: [pixiv](https://www.pixiv.net/en/artworks/123)"
    )
    assert parse_markdown_links(body) == [
        Link("Miku", "https://i.redd.it/m.jpeg"),
        Link("Nino", "https://i.imgur.com/AbC12de.png"),
        Link("Itsuki", "https://imgur.com/a/XyZ98"),
        Link("pixiv", "https://www.pixiv.net/en/artworks/123"),
    ]


def test_links_never_span_a_blank_line() -> None:
    body = "[Miku is\n\nthe best](https://i.redd.it/a.jpeg)\n\n[Nino](https://i.redd.it/n.jpeg)"
    assert parse_markdown_links(body) == [Link("Nino", "https://i.redd.it/n.jpeg")]


def test_url_cannot_span_a_blank_line() -> None:
    assert parse_markdown_links("[Miku](https://i.redd.it/a.jpeg\n\n)") == []


def test_unbalanced_bracket_in_one_paragraph_does_not_swallow_the_next() -> None:
    body = "[unclosed bracket\n\n[Nino](https://i.redd.it/n.jpeg)"
    assert parse_markdown_links(body) == [Link("Nino", "https://i.redd.it/n.jpeg")]


# ---------------------------------------------------------------- HTML links

ESCAPED_BODY_HTML = (
    '&lt;div class="md"&gt;&lt;p&gt;&lt;a href="https://i.redd.it/x.jpeg"&gt;Miku&lt;/a&gt;&lt;/p&gt;&lt;/div&gt;'
)


def test_parse_html_links_on_reddit_escaped_body_html() -> None:
    assert parse_html_links(ESCAPED_BODY_HTML) == [Link("Miku", "https://i.redd.it/x.jpeg")]


def test_parse_html_links_escaped_amp_and_text_entities() -> None:
    # Reddit escapes the HTML once more: the href's `&amp;` arrives as `&amp;amp;`.
    body_html = (
        '&lt;div class="md"&gt;&lt;p&gt;&lt;a href="https://example.com/a.png?w=1&amp;amp;h=2"&gt;'
        "Miku &amp;amp; Nino&lt;/a&gt; &amp;lt;3&lt;/p&gt;&lt;/div&gt;"
    )
    assert parse_html_links(body_html) == [Link("Miku & Nino", "https://example.com/a.png?w=1&h=2")]


def test_parse_html_links_on_plain_html() -> None:
    body_html = (
        '<div class="md"><p><a href="https://example.com/a.png?w=1&amp;h=2">Miku <em>Nakano</em></a>'
        ' and <a href="https://i.redd.it/n.png">\n  Nino\n</a></p></div>'
    )
    assert parse_html_links(body_html) == [
        Link("Miku Nakano", "https://example.com/a.png?w=1&h=2"),
        Link("Nino", "https://i.redd.it/n.png"),
    ]


def test_parse_html_links_ignores_anchor_without_href() -> None:
    body_html = '<p><a name="top">top</a><a href="https://i.redd.it/n.png">Nino</a></p>'
    assert parse_html_links(body_html) == [Link("Nino", "https://i.redd.it/n.png")]


def test_parse_html_links_does_not_turn_escaped_text_into_links() -> None:
    # A comment that *talks about* HTML: in plain body_html the tag is text, not a link.
    body_html = '<div class="md"><p>&lt;a href="https://evil.example/x.png"&gt;hi&lt;/a&gt;</p></div>'
    assert parse_html_links(body_html) == []


@pytest.mark.parametrize("body_html", ["", '<div class="md"><p>no links</p></div>'])
def test_parse_html_links_without_links(body_html: str) -> None:
    assert parse_html_links(body_html) == []


# ---------------------------------------------------------------- extract_links


def test_extract_links_merges_markdown_and_html_once_per_url() -> None:
    body = "[Miku](https://i.redd.it/m.jpeg) [Nino](https://i.redd.it/n.jpeg?a=1&amp;b=2)"
    body_html = (
        '<div class="md"><p><a href="https://i.redd.it/m.jpeg">Miku</a> '
        '<a href="https://i.redd.it/n.jpeg?a=1&amp;b=2">Nino</a> '
        '<a href="https://i.redd.it/i.jpeg">https://i.redd.it/i.jpeg</a></p></div>'
    )
    links = extract_links(body, body_html)
    assert links == [
        Link("Miku", "https://i.redd.it/m.jpeg"),
        Link("Nino", "https://i.redd.it/n.jpeg?a=1&b=2"),
        Link("https://i.redd.it/i.jpeg", "https://i.redd.it/i.jpeg"),  # a bare URL: only body_html has it
    ]
    assert len({link.url for link in links}) == len(links)


def test_extract_links_same_url_after_markdown_escapes() -> None:
    # Reddit's editor writes `\_` in the markdown; body_html has the real URL. One link, not two.
    body = r"[Miku](https://example.com/nakano\_miku.png)"
    body_html = '<p><a href="https://example.com/nakano_miku.png">Miku</a></p>'
    assert extract_links(body, body_html) == [Link("Miku", "https://example.com/nakano_miku.png")]


def test_extract_links_html_text_fills_empty_markdown_text() -> None:
    body = "[](https://i.redd.it/m.jpeg)"
    body_html = '<p><a href="https://i.redd.it/m.jpeg">Miku</a></p>'
    assert extract_links(body, body_html) == [Link("Miku", "https://i.redd.it/m.jpeg")]


def test_extract_links_markdown_text_wins_when_present() -> None:
    body = "[Miku](https://i.redd.it/m.jpeg)"
    body_html = '<p><a href="https://i.redd.it/m.jpeg">something else</a></p>'
    assert extract_links(body, body_html) == [Link("Miku", "https://i.redd.it/m.jpeg")]


def test_extract_links_either_side_may_be_missing() -> None:
    assert extract_links(None, ESCAPED_BODY_HTML) == [Link("Miku", "https://i.redd.it/x.jpeg")]
    assert extract_links("[Miku](https://i.redd.it/x.jpeg)", None) == [Link("Miku", "https://i.redd.it/x.jpeg")]
    assert extract_links(None, None) == []


# ---------------------------------------------------------------- NameMatcher


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Miku", True),
        ("MIKU", True),
        ("miku", True),
        ("Miku's art", True),
        ("[OC] miku!", True),
        ("Hatsune Miku in a yukata", True),
        ("(Miku)", True),
        ("Miku-chan", True),
        ("Mikuru", False),
        ("amiku", False),
        ("Miku2", False),
        ("Nino", False),
        ("", False),
        (None, False),
    ],
)
def test_name_matcher_word_boundaries_any_case(text: str | None, expected: bool) -> None:
    assert NameMatcher(["Miku"]).matches(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Nakano Miku", True),
        ("nakano-miku", True),
        ("NAKANO_MIKU", True),
        ("Nakano  Miku fanart", True),
        ("nakano miku!", True),
        ("NakanoMiku", False),
        ("Nakano", False),
        ("Miku Nakano", False),
    ],
)
def test_name_matcher_separators_interchangeable(text: str, expected: bool) -> None:
    assert NameMatcher(["nakano_miku"]).matches(text) is expected


def test_name_matcher_label_with_spaces_matches_underscored_text() -> None:
    assert NameMatcher(["Nakano Miku"]).matches("nakano_miku")


def test_name_matcher_several_names() -> None:
    matcher = NameMatcher(["nakano_miku", "Miku", "Third Sister"])
    assert matcher.matches("Miku in summer")
    assert matcher.matches("the third-sister")
    assert matcher.matches("Nakano Miku")
    assert not matcher.matches("Nakano Nino")
    assert not matcher.matches("third")


def test_name_matcher_names_with_regex_characters() -> None:
    matcher = NameMatcher(["C.C."])
    assert matcher.matches("C.C. eating pizza")
    assert not matcher.matches("CxCx eating pizza")


def test_name_matcher_unescapes_html_entities() -> None:
    assert NameMatcher(["Miku"]).matches("Nino &amp; Miku")
    assert NameMatcher(["Miku"]).matches("Miku&#39;s birthday")
    assert NameMatcher(["Nino Nakano"]).matches("Nino&nbsp;Nakano")
    assert not NameMatcher(["amp"]).matches("Nino &amp; Miku")


@pytest.mark.parametrize("names", [[], ["  "], ["_"], ["-"]])
def test_name_matcher_without_names_matches_nothing(names: list[str]) -> None:
    matcher = NameMatcher(names)
    assert not matcher.matches("[OC] some art!")
    assert not matcher.matches("Miku")


def test_name_matcher_search_query() -> None:
    matcher = NameMatcher(["nakano_miku", "Miku", "Nakano-Miku"])
    assert matcher.search_query() == 'title:"Miku" OR title:"Nakano Miku" OR title:"nakano miku"'
    assert NameMatcher(["Miku"]).search_query() == 'title:"Miku"'


# ---------------------------------------------------------------- classify_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://i.redd.it/abc123def.jpeg", ImageRef("https://i.redd.it/abc123def.jpeg")),
        ("https://i.redd.it/abc123def.png", ImageRef("https://i.redd.it/abc123def.png")),
        ("https://i.redd.it/abc123def.webp", ImageRef("https://i.redd.it/abc123def.webp")),
        (
            "https://preview.redd.it/abc123def.jpg?width=640&crop=smart&auto=webp&s=deadbeef",
            ImageRef("https://i.redd.it/abc123def.jpg"),
        ),
        (
            "https://preview.redd.it/abc123def.png?width=640&amp;format=png&amp;auto=webp&amp;s=x",
            ImageRef("https://i.redd.it/abc123def.png"),
        ),
        ("https://i.imgur.com/AbC12de.jpg", ImageRef("https://i.imgur.com/AbC12de.jpg")),
        ("https://i.imgur.com/AbC12de.png?1", ImageRef("https://i.imgur.com/AbC12de.png")),
        ("https://i.imgur.com/AbC12de.gifv", ImageRef("https://i.imgur.com/AbC12de.gif")),
        ("https://i.imgur.com/AbC12de", ImgurRef("image", "AbC12de", "https://i.imgur.com/AbC12de")),
        ("https://imgur.com/AbC12de", ImgurRef("image", "AbC12de", "https://imgur.com/AbC12de")),
        ("https://m.imgur.com/AbC12de", ImgurRef("image", "AbC12de", "https://m.imgur.com/AbC12de")),
        ("https://imgur.com/AbC12de.png", ImageRef("https://i.imgur.com/AbC12de.png")),
        ("https://imgur.com/a/AbC12", ImgurRef("album", "AbC12", "https://imgur.com/a/AbC12")),
        ("https://imgur.com/a/AbC12/", ImgurRef("album", "AbC12", "https://imgur.com/a/AbC12/")),
        (
            "https://imgur.com/a/some-title-AbC12",
            ImgurRef("album", "AbC12", "https://imgur.com/a/some-title-AbC12"),
        ),
        ("https://imgur.com/gallery/AbC12de", ImgurRef("gallery", "AbC12de", "https://imgur.com/gallery/AbC12de")),
        (
            "https://imgur.com/gallery/miku-fan-art-AbC12de",
            ImgurRef("gallery", "AbC12de", "https://imgur.com/gallery/miku-fan-art-AbC12de"),
        ),
        ("https://v.redd.it/abc123def", Skip.VIDEO),
        ("https://example.com/clip.mp4", Skip.VIDEO),
        ("https://example.com/clip.WEBM?x=1", Skip.VIDEO),
        ("https://i.imgur.com/AbC12de.mp4", Skip.VIDEO),
        ("ftp://example.com/miku.png", Skip.UNSUPPORTED_SCHEME),
        ("mailto:someone@example.com", Skip.UNSUPPORTED_SCHEME),
        ("/r/5ToubunNoHanayome", Skip.UNSUPPORTED_SCHEME),
        ("https://example.com/art/miku.png", ImageRef("https://example.com/art/miku.png")),
        ("https://example.com/art/miku.JPG?size=large", ImageRef("https://example.com/art/miku.JPG?size=large")),
        ("https://example.com/art/miku", Skip.NOT_AN_IMAGE_LINK),
        ("https://www.pixiv.net/en/artworks/123", Skip.NOT_AN_IMAGE_LINK),
        ("https://imgur.com/", Skip.NOT_AN_IMAGE_LINK),
        ("https://imgur.com/user/someone/posts", Skip.NOT_AN_IMAGE_LINK),
        ("https://www.reddit.com/r/5ToubunNoHanayome/", Skip.NOT_AN_IMAGE_LINK),
        ("<https://i.redd.it/abc123def.png>", ImageRef("https://i.redd.it/abc123def.png")),
        ("  https://i.redd.it/abc123def.png  ", ImageRef("https://i.redd.it/abc123def.png")),
        ("https://example.com/a.png?w=1&amp;h=2", ImageRef("https://example.com/a.png?w=1&h=2")),
    ],
)
def test_classify_url(url: str, expected: ImageRef | ImgurRef | str) -> None:
    assert classify_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "https://www.reddit.com/gallery/abc123",
        "https://redd.it/abc123",
        "https://redd.it/abc123/",
        "https://www.reddit.com/r/x/comments/abc123/title/",
        "https://old.reddit.com/r/5ToubunNoHanayome/comments/abc123/miku_fanart/",
        "https://reddit.com/comments/abc123",
        "https://www.reddit.com/r/x/comments/abc123/title/def456/",  # a comment permalink: its post
        "https://www.reddit.com/user/some-artist/comments/abc123/miku/",
        "https://www.reddit.com/u/artist/comments/abc123/",
    ],
)
def test_classify_url_reddit_post_links(url: str) -> None:
    assert classify_url(url) == RedditPostRef("abc123", url.strip())


# ---------------------------------------------------------------- resolve_post


def _image_post(**extra: Any) -> dict[str, Any]:
    post = {
        "id": "p1abcd",
        "title": "Miku in summer [OC]",
        "is_self": False,
        "is_video": False,
        "post_hint": "image",
        "url": "https://i.redd.it/abc123def.jpeg",
        "url_overridden_by_dest": "https://i.redd.it/abc123def.jpeg",
    }
    post.update(extra)
    return post


def _meta(media_id: str, mime: str = "image/jpg", **extra: Any) -> dict[str, Any]:
    ext = mime.rsplit("/", 1)[-1]
    meta = {
        "status": "valid",
        "e": "Image",
        "m": mime,
        "id": media_id,
        "s": {"y": 1200, "x": 900, "u": f"https://preview.redd.it/{media_id}.{ext}?width=900&amp;format=pjpg&amp;s=x"},
        "p": [],
    }
    meta.update(extra)
    return meta


def _gallery_post(media_ids: list[str], metadata: dict[str, Any], **extra: Any) -> dict[str, Any]:
    post = {
        "id": "g1abcd",
        "title": "Miku gallery",
        "is_self": False,
        "is_video": False,
        "is_gallery": True,
        "url": "https://www.reddit.com/gallery/g1abcd",
        "url_overridden_by_dest": "https://www.reddit.com/gallery/g1abcd",
        "gallery_data": {"items": [{"media_id": m, "id": 1000 + i} for i, m in enumerate(media_ids)]},
        "media_metadata": metadata,
    }
    post.update(extra)
    return post


def test_resolve_post_plain_image() -> None:
    result = resolve_post(_image_post())
    assert result.refs == [ImageRef("https://i.redd.it/abc123def.jpeg", 0)]
    assert result.skipped == Counter()


def test_resolve_post_prefers_url_overridden_by_dest() -> None:
    post = _image_post(url="https://www.reddit.com/r/x/comments/p1abcd/t/", url_overridden_by_dest="https://i.redd.it/z.png")
    assert resolve_post(post).refs == [ImageRef("https://i.redd.it/z.png", 0)]


def test_resolve_post_gallery_follows_gallery_data_order() -> None:
    # media_metadata is a dict in a different order from gallery_data.items (the poster's order).
    metadata = {"mmmm3": _meta("mmmm3"), "mmmm1": _meta("mmmm1"), "mmmm2": _meta("mmmm2")}
    result = resolve_post(_gallery_post(["mmmm2", "mmmm3", "mmmm1"], metadata))
    assert result.refs == [
        ImageRef("https://i.redd.it/mmmm2.jpg", 0),
        ImageRef("https://i.redd.it/mmmm3.jpg", 1),
        ImageRef("https://i.redd.it/mmmm1.jpg", 2),
    ]
    assert result.skipped == Counter()


def test_resolve_post_gallery_skips_invalid_and_video_items_positions_over_kept_only() -> None:
    metadata = {
        "okay1": _meta("okay1", "image/png"),
        "fail1": {"status": "failed"},
        "vid01": {"status": "valid", "e": "RedditVideo", "dashUrl": "https://v.redd.it/x/DASH", "isGif": False},
        "okay2": _meta("okay2", "image/jpeg"),
        "unpro": {"status": "unprocessed", "e": "Image", "m": "image/jpg"},
        "okay3": _meta("okay3", "image/jpg"),
    }
    media_ids = ["fail1", "okay1", "vid01", "gone1", "okay2", "unpro", "okay3"]  # gone1: no metadata at all
    result = resolve_post(_gallery_post(media_ids, metadata))
    assert result.refs == [
        ImageRef("https://i.redd.it/okay1.png", 0),
        ImageRef("https://i.redd.it/okay2.jpg", 1),
        ImageRef("https://i.redd.it/okay3.jpg", 2),
    ]
    assert [ref.position for ref in result.refs] == [0, 1, 2]
    assert result.skipped == Counter({Skip.GALLERY_ITEM_INVALID: 3, Skip.VIDEO: 1})


@pytest.mark.parametrize(
    ("mime", "ext"),
    [("image/png", "png"), ("image/jpg", "jpg"), ("image/jpeg", "jpg"), ("image/gif", "gif"), ("image/webp", "webp")],
)
def test_resolve_post_gallery_extension_from_mime(mime: str, ext: str) -> None:
    result = resolve_post(_gallery_post(["media1"], {"media1": _meta("media1", mime)}))
    assert result.refs == [ImageRef(f"https://i.redd.it/media1.{ext}", 0)]


def test_resolve_post_gallery_unknown_mime_uses_source_url() -> None:
    meta = _meta("media1", "image/heic")
    meta["s"] = {"u": "https://preview.redd.it/media1.jpg?width=900&amp;s=x"}
    result = resolve_post(_gallery_post(["media1"], {"media1": meta}))
    assert result.refs == [ImageRef("https://i.redd.it/media1.jpg", 0)]


@pytest.mark.parametrize("gallery_data", [None, {}, {"items": []}])
def test_resolve_post_gallery_unavailable(gallery_data: Any) -> None:
    post = _gallery_post([], {}, gallery_data=gallery_data, media_metadata=None)
    result = resolve_post(post)
    assert result.refs == []
    assert result.skipped == Counter({Skip.GALLERY_UNAVAILABLE: 1})


def test_resolve_post_gallery_data_without_is_gallery_is_still_a_gallery() -> None:
    post = _gallery_post(["media1"], {"media1": _meta("media1")})
    del post["is_gallery"]
    assert resolve_post(post).refs == [ImageRef("https://i.redd.it/media1.jpg", 0)]


def test_resolve_post_crosspost_uses_the_original() -> None:
    original = _gallery_post(["media2", "media1"], {"media1": _meta("media1"), "media2": _meta("media2", "image/png")})
    crosspost = {
        "id": "x1abcd",
        "is_self": False,
        "is_video": False,
        "url": "https://www.reddit.com/r/other/comments/g1abcd/miku_gallery/",
        "crosspost_parent": "t3_g1abcd",
        "crosspost_parent_list": [original],
    }
    result = resolve_post(crosspost)
    assert result.refs == [ImageRef("https://i.redd.it/media2.png", 0), ImageRef("https://i.redd.it/media1.jpg", 1)]
    assert result.skipped == Counter()


def test_resolve_post_crosspost_of_image() -> None:
    crosspost = {
        "id": "x1abcd",
        "is_self": False,
        "url": "https://www.reddit.com/r/other/comments/p1abcd/t/",
        "crosspost_parent_list": [_image_post(url_overridden_by_dest=None, url="https://i.redd.it/orig.png")],
    }
    assert resolve_post(crosspost).refs == [ImageRef("https://i.redd.it/orig.png", 0)]


def test_resolve_post_video() -> None:
    post = _image_post(
        is_video=True,
        post_hint="hosted:video",
        url="https://v.redd.it/abc123def",
        url_overridden_by_dest="https://v.redd.it/abc123def",
        media={"reddit_video": {"fallback_url": "https://v.redd.it/abc123def/DASH_720.mp4"}},
    )
    result = resolve_post(post)
    assert result.refs == []
    assert result.skipped == Counter({Skip.VIDEO: 1})


def test_resolve_post_self_post() -> None:
    post = {
        "id": "s1abcd",
        "is_self": True,
        "is_video": False,
        "selftext": "Which quint is best? [Miku](https://i.redd.it/m.jpeg)",
        "url": "https://www.reddit.com/r/5ToubunNoHanayome/comments/s1abcd/which_quint/",
    }
    result = resolve_post(post)
    assert result.refs == []
    assert result.skipped == Counter({Skip.SELF_POST: 1})


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://www.reddit.com/gallery/abc123", Skip.GALLERY_UNAVAILABLE),
        ("https://www.reddit.com/r/x/comments/abc123/title/", Skip.REDDIT_POST_LINK),
        ("https://www.youtube.com/watch?v=abc", Skip.NOT_AN_IMAGE_LINK),
        ("https://example.com/clip.mp4", Skip.VIDEO),
    ],
)
def test_resolve_post_link_posts_that_are_not_images(url: str, reason: str) -> None:
    result = resolve_post(_image_post(url=url, url_overridden_by_dest=url))
    assert result.refs == []
    assert result.skipped == Counter({reason: 1})


def test_resolve_post_imgur_album_link() -> None:
    url = "https://imgur.com/a/AbC12"
    result = resolve_post(_image_post(url=url, url_overridden_by_dest=url))
    assert result.refs == [ImgurRef("album", "AbC12", url)]


# ---------------------------------------------------------------- Imgur API


ALBUM = ImgurRef("album", "AbC12", "https://imgur.com/a/AbC12")
GALLERY = ImgurRef("gallery", "AbC12de", "https://imgur.com/gallery/AbC12de")
IMAGE = ImgurRef("image", "AbC12de", "https://imgur.com/AbC12de")


def test_imgur_api_path() -> None:
    assert imgur_api_path(ALBUM) == "/3/album/AbC12/images"
    assert imgur_api_path(GALLERY) == "/3/gallery/AbC12de"
    assert imgur_api_path(IMAGE) == "/3/image/AbC12de"


def test_parse_imgur_album_in_order_without_videos() -> None:
    payload = {
        "data": [
            {"id": "i1aaaaa", "link": "https://i.imgur.com/i1aaaaa.jpg", "type": "image/jpeg", "animated": False},
            {"id": "vvvvvvv", "link": "https://i.imgur.com/vvvvvvv.mp4", "type": "video/mp4", "animated": True},
            {"id": "ggggggg", "link": "https://i.imgur.com/ggggggg.gif", "type": "image/gif", "animated": True},
            {"id": "nolink1"},
            {"id": "i2bbbbb", "link": "https://i.imgur.com/i2bbbbb.png", "type": "image/png", "animated": False},
        ],
        "success": True,
        "status": 200,
    }
    assert parse_imgur_response(ALBUM, payload) == [
        ImageRef("https://i.imgur.com/i1aaaaa.jpg", 0),
        ImageRef("https://i.imgur.com/ggggggg.gif", 1),
        ImageRef("https://i.imgur.com/i2bbbbb.png", 2),
    ]


def test_parse_imgur_gallery_that_is_an_album() -> None:
    payload = {
        "data": {
            "id": "AbC12de",
            "is_album": True,
            "images": [
                {"link": "https://i.imgur.com/x1xxxxx.png", "type": "image/png"},
                {"link": "https://i.imgur.com/x2xxxxx.jpg", "type": "image/jpeg"},
            ],
        }
    }
    assert parse_imgur_response(GALLERY, payload) == [
        ImageRef("https://i.imgur.com/x1xxxxx.png", 0),
        ImageRef("https://i.imgur.com/x2xxxxx.jpg", 1),
    ]


def test_parse_imgur_gallery_of_one_image() -> None:
    payload = {"data": {"id": "AbC12de", "is_album": False, "link": "https://i.imgur.com/AbC12de.jpg"}}
    assert parse_imgur_response(GALLERY, payload) == [ImageRef("https://i.imgur.com/AbC12de.jpg", 0)]


def test_parse_imgur_single_image() -> None:
    payload = {"data": {"id": "AbC12de", "link": "https://i.imgur.com/AbC12de.png", "type": "image/png"}}
    assert parse_imgur_response(IMAGE, payload) == [ImageRef("https://i.imgur.com/AbC12de.png", 0)]


def test_parse_imgur_single_video_is_left_out() -> None:
    payload = {"data": {"link": "https://i.imgur.com/AbC12de.mp4", "type": "video/mp4", "animated": True}}
    assert parse_imgur_response(IMAGE, payload) == []


@pytest.mark.parametrize(
    ("ref", "payload"),
    [
        (IMAGE, {}),
        (IMAGE, {"data": None}),
        (ALBUM, {"data": None}),
        (ALBUM, {"data": {"error": "Unable to find an album with the id, AbC12"}}),
        (GALLERY, {"data": {"is_album": True}}),
        (GALLERY, {"data": []}),
    ],
)
def test_parse_imgur_missing_data(ref: ImgurRef, payload: dict[str, Any]) -> None:
    assert parse_imgur_response(ref, payload) == []


def test_titled_preview_maps_to_the_media_id_original():
    from tasks.links import ImageRef, classify_url

    url = "https://preview.redd.it/miku-in-summer-v0-abc123xyz.png?width=640&format=png&auto=webp&s=1"
    assert classify_url(url) == ImageRef("https://i.redd.it/abc123xyz.png")
