"""Unit tests for tasks.jobs: job files (YAML, JSON, the reference project's JSON), validation, build_job."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tasks.jobs import (
    CommentLinks,
    Job,
    JobFileError,
    Listing,
    NsfwPolicy,
    SearchSort,
    SubredditPosts,
    TimeFilter,
    TitleMentions,
    build_job,
    load_job,
    parse_job,
    source_key,
)

JOB_YAML = """\
name: quints
description: The five Nakano sisters
options:
  nsfw: exclude
  max_posts_per_source: 500
labels:
  - name: nakano_miku
    aliases: [Miku, Miku Nakano]
    sources:
      - kind: subreddit_posts
        subreddit: r/MikuNakano
        listing: top
        time_filter: year
        flairs: [Fanart]
        limit: 200
      - kind: title_mentions
        subreddit: /r/5ToubunNoHanayome
      - kind: comment_links
        subreddit: 5ToubunNoHanayome
        query: "Daily Quintuplets Discussion"
        flair: Discussion
        replace_more_limit: 8
  - name: nakano_nino
    aliases: [Nino]
    sources:
      - kind: title_mentions
        subreddit: 5ToubunNoHanayome
        query: 'title:"Nino"'
        sort: top
"""

JOB_DATA: dict[str, Any] = yaml.safe_load(JOB_YAML)


def _problems(text: str, path: str = "job.yaml") -> list[str]:
    with pytest.raises(JobFileError) as info:
        parse_job(text, path)
    assert info.value.path == path
    assert info.value.problems, "a JobFileError must say what is wrong"
    return info.value.problems


def _modified(change: Callable[[dict[str, Any]], None]) -> str:
    data = copy.deepcopy(JOB_DATA)
    change(data)
    return yaml.safe_dump(data, sort_keys=False)


# ---------------------------------------------------------------- valid jobs


def test_yaml_job_loads_with_every_field() -> None:
    job = parse_job(JOB_YAML, "quints.yaml")
    assert job.name == "quints"
    assert job.description == "The five Nakano sisters"
    assert job.options.nsfw == NsfwPolicy.exclude
    assert job.options.max_posts_per_source == 500
    assert [label.name for label in job.labels] == ["nakano_miku", "nakano_nino"]
    miku = job.label("nakano_miku")
    assert miku.names == ["nakano_miku", "Miku", "Miku Nakano"]
    posts, mentions, threads = miku.sources
    assert posts == SubredditPosts(
        subreddit="MikuNakano", listing=Listing.top, time_filter=TimeFilter.year, flairs=["Fanart"], limit=200
    )
    assert mentions == TitleMentions(subreddit="5ToubunNoHanayome")
    assert threads == CommentLinks(
        subreddit="5ToubunNoHanayome", query="Daily Quintuplets Discussion", flair="Discussion", replace_more_limit=8
    )
    nino_source = job.label("nakano_nino").sources[0]
    assert isinstance(nino_source, TitleMentions)
    assert nino_source.query == 'title:"Nino"'
    assert nino_source.sort == SearchSort.top
    assert [(label.name, source.kind) for label, source in job.iter_sources()] == [
        ("nakano_miku", "subreddit_posts"),
        ("nakano_miku", "title_mentions"),
        ("nakano_miku", "comment_links"),
        ("nakano_nino", "title_mentions"),
    ]
    with pytest.raises(KeyError):
        job.label("nakano_ichika")


def test_yaml_and_json_load_equal(tmp_path: Path) -> None:
    yaml_file = tmp_path / "quints.yaml"
    json_file = tmp_path / "quints.json"
    yaml_file.write_text(JOB_YAML, encoding="utf-8")
    json_file.write_text(json.dumps(JOB_DATA, indent=2), encoding="utf-8")
    assert load_job(yaml_file) == load_job(json_file)
    assert load_job(json_file) == parse_job(JOB_YAML)


def test_json_without_json_suffix_is_read_as_yaml() -> None:
    assert parse_job(json.dumps(JOB_DATA), "job.txt") == parse_job(JOB_YAML)


@pytest.mark.parametrize("subreddit", ["r/MikuNakano", "/r/MikuNakano", "R/MikuNakano", " r/MikuNakano ", "MikuNakano"])
def test_subreddit_prefix_stripped(subreddit: str) -> None:
    source = SubredditPosts(subreddit=subreddit)
    assert source.subreddit == "MikuNakano"


def test_defaults() -> None:
    job = parse_job("name: x\nlabels:\n  - name: a\n    sources:\n      - {kind: subreddit_posts, subreddit: abc}\n")
    assert job.options.nsfw == NsfwPolicy.exclude
    assert job.options.max_posts_per_source == 1000
    source = job.labels[0].sources[0]
    assert isinstance(source, SubredditPosts)
    assert (source.listing, source.time_filter, source.flairs, source.limit) == (Listing.new, TimeFilter.all, [], None)
    assert job.labels[0].aliases == []


@pytest.mark.parametrize("dump", ["to_yaml", "to_json"])
def test_dump_round_trips(dump: str) -> None:
    job = parse_job(JOB_YAML)
    text = getattr(job, dump)()
    path = "job.json" if dump == "to_json" else "job.yaml"
    assert parse_job(text, path) == job


def test_dump_leaves_out_defaults_but_keeps_kind() -> None:
    data = parse_job(JOB_YAML).to_data()
    assert "options" in data and "nsfw" not in data["options"]  # default left out
    assert data["labels"][0]["sources"][1] == {"kind": "title_mentions", "subreddit": "5ToubunNoHanayome"}
    assert data["labels"][0]["sources"][0]["subreddit"] == "MikuNakano"  # the r/ prefix is gone


def test_dump_round_trips_with_non_default_options() -> None:
    job = build_job(name="quints", labels=["nakano_miku"], show="5ToubunNoHanayome", nsfw="only")
    assert parse_job(job.to_yaml()) == job
    assert parse_job(job.to_json(), "job.json").options.nsfw == NsfwPolicy.only


# ---------------------------------------------------------------- invalid jobs


def _set_source(index: int, **values: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d["labels"][0]["sources"][index].update(values)


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        pytest.param(
            _set_source(0, kind="subreddit_post"),
            "labels[0].sources[0]",
            "unknown source kind 'subreddit_post'; expected one of subreddit_posts, title_mentions, comment_links",
            id="unknown-kind",
        ),
        pytest.param(
            lambda d: d["labels"][0]["sources"][0].pop("kind"),
            "labels[0].sources[0]",
            "a source needs `kind`",
            id="missing-kind",
        ),
        pytest.param(
            _set_source(1, subreddit="anime memes!"),
            "labels[0].sources[1].subreddit",
            "'anime memes!' is not a subreddit name",
            id="bad-subreddit",
        ),
        pytest.param(
            _set_source(1, subreddit="a"),
            "labels[0].sources[1].subreddit",
            "'a' is not a subreddit name (2-21 letters",
            id="short-subreddit",
        ),
        pytest.param(
            _set_source(0, flair=["Fanart"]),  # typo: subreddit_posts has `flairs`
            "labels[0].sources[0].flair",
            "unknown field (check its spelling)",
            id="unknown-source-field",
        ),
        pytest.param(
            lambda d: d.update(lables=[]),
            "lables",
            "unknown field (check its spelling)",
            id="unknown-top-field",
        ),
        pytest.param(
            _set_source(2, limit=1001),
            "labels[0].sources[2].limit",
            "less than or equal to 1000",
            id="limit-over-reddit-cap",
        ),
        pytest.param(_set_source(2, limit=0), "labels[0].sources[2].limit", "greater than or equal to 1", id="limit-0"),
        pytest.param(
            lambda d: d["options"].update(max_posts_per_source=5000),
            "options.max_posts_per_source",
            "less than or equal to 1000",
            id="option-over-cap",
        ),
        pytest.param(lambda d: d.update(labels=[]), "labels", "at least 1 item", id="no-labels"),
        pytest.param(lambda d: d.pop("labels"), "labels", "Field required", id="labels-missing"),
        pytest.param(
            lambda d: d["labels"][1]["aliases"].append("miku"),
            "job",
            "name 'miku' belongs to both 'nakano_miku' and 'nakano_nino'",
            id="alias-shared",
        ),
        pytest.param(
            lambda d: d["labels"][1]["aliases"].append("Nakano-Miku"),
            "job",
            "name 'Nakano-Miku' belongs to both 'nakano_miku' and 'nakano_nino'",
            id="alias-equals-other-label",
        ),
        pytest.param(
            lambda d: d["labels"].append({"name": "nakano_miku", "aliases": ["Mikuchan"]}),
            "job",
            "label 'nakano_miku' is defined twice",
            id="label-defined-twice",
        ),
        pytest.param(
            lambda d: d["labels"].append({"name": "nakano_nino"}),
            "job",
            "label 'nakano_nino' is defined twice",
            id="label-defined-twice-after",
        ),
        pytest.param(
            lambda d: [label.update(sources=[]) for label in d["labels"]],
            "job",
            "no label has a source",
            id="no-sources",
        ),
        pytest.param(
            lambda d: d["labels"][0].update(name="Nakano Miku"),
            "labels[0].name",
            "'Nakano Miku' is not a label name",
            id="label-with-space",
        ),
        pytest.param(lambda d: d.update(name="Quints!"), "name", "'Quints!' is not a job name", id="bad-job-name"),
        pytest.param(
            _set_source(2, query=""), "labels[0].sources[2].query", "at least 1 character", id="empty-thread-query"
        ),
        pytest.param(
            lambda d: d["options"].update(nsfw="sometimes"),
            "options.nsfw",
            "'exclude', 'include' or 'only'",
            id="bad-nsfw",
        ),
    ],
)
def test_invalid_job(change: Callable[[dict[str, Any]], None], field: str, reason: str) -> None:
    problems = _problems(_modified(change))
    assert any(p.startswith(f"{field}: ") and reason in p for p in problems), problems


def test_several_problems_are_all_reported() -> None:
    def change(d: dict[str, Any]) -> None:
        d["labels"][0]["sources"][0]["subreddit"] = "no way"
        d["labels"][0]["sources"][1]["sortt"] = "new"

    problems = _problems(_modified(change))
    assert any(p.startswith("labels[0].sources[0].subreddit: ") for p in problems), problems
    assert "labels[0].sources[1].sortt: unknown field (check its spelling)" in problems


def test_invalid_yaml_names_the_line() -> None:
    text = "name: quints\nlabels:\n  - name: nakano_miku\n   sources: []\n"
    problems = _problems(text)
    assert len(problems) == 1
    assert problems[0].startswith("file: invalid YAML at line 4 ")


def test_invalid_json_names_the_line() -> None:
    problems = _problems('{\n  "name": "quints",\n  "labels": [\n}\n', "job.json")
    assert len(problems) == 1
    assert problems[0].startswith("file: invalid JSON at line 4 ")


@pytest.mark.parametrize("text", ["", "   \n\n", "# just a comment\n", "null\n"])
def test_empty_file(text: str) -> None:
    problems = _problems(text)
    assert len(problems) == 1
    assert problems[0].startswith("file: is empty")


@pytest.mark.parametrize(("text", "type_name"), [("- a\n- b\n", "list"), ("just a string\n", "str"), ("42\n", "int")])
def test_top_level_not_a_mapping(text: str, type_name: str) -> None:
    assert _problems(text) == [f"file: a job is a mapping at the top level, got {type_name}"]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(JobFileError) as info:
        load_job(path)
    assert info.value.problems == ["file: not found"]
    assert info.value.path == str(path)
    assert str(path) in str(info.value)


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(JobFileError) as info:
        load_job(path)
    assert info.value.problems[0].startswith("file: cannot be read")


def test_error_message_lists_every_problem() -> None:
    error = JobFileError("job.yaml", ["a: one", "b: two"])
    assert str(error) == "job.yaml: a: one; b: two"


# ---------------------------------------------------------------- source_key


def test_source_key_stable_when_limit_changes() -> None:
    base = CommentLinks(subreddit="5ToubunNoHanayome", query="Daily thread", flair="Discussion")
    raised = CommentLinks(subreddit="5ToubunNoHanayome", query="Daily thread", flair="Discussion", limit=500)
    assert source_key("nakano_miku", base) == source_key("nakano_miku", raised)
    posts = SubredditPosts(subreddit="MikuNakano", limit=10)
    assert source_key("nakano_miku", posts) == source_key("nakano_miku", SubredditPosts(subreddit="MikuNakano"))


def test_source_key_stable_across_calls_and_subreddit_case() -> None:
    key = source_key("nakano_miku", SubredditPosts(subreddit="MikuNakano"))
    assert key == source_key("nakano_miku", SubredditPosts(subreddit="r/mikunakano"))
    assert key.startswith("subreddit_posts:mikunakano:")
    assert len(key.rsplit(":", 1)[1]) == 10


def test_source_key_differs_across_labels_subreddits_and_settings() -> None:
    source = TitleMentions(subreddit="5ToubunNoHanayome")
    keys = {
        source_key("nakano_miku", source),
        source_key("nakano_nino", source),
        source_key("nakano_miku", TitleMentions(subreddit="Anime")),
        source_key("nakano_miku", TitleMentions(subreddit="5ToubunNoHanayome", query="Miku")),
        source_key("nakano_miku", TitleMentions(subreddit="5ToubunNoHanayome", sort=SearchSort.top)),
        source_key("nakano_miku", SubredditPosts(subreddit="5ToubunNoHanayome")),
        source_key("nakano_miku", SubredditPosts(subreddit="5ToubunNoHanayome", listing=Listing.hot)),
        source_key("nakano_miku", CommentLinks(subreddit="5ToubunNoHanayome", query="Daily")),
        source_key("nakano_miku", CommentLinks(subreddit="5ToubunNoHanayome", query="Daily", flair="Discussion")),
    }
    assert len(keys) == 9


def test_source_key_time_filter_only_counts_for_top_listing() -> None:
    new_all = SubredditPosts(subreddit="MikuNakano", listing=Listing.new)
    new_week = SubredditPosts(subreddit="MikuNakano", listing=Listing.new, time_filter=TimeFilter.week)
    top_all = SubredditPosts(subreddit="MikuNakano", listing=Listing.top)
    top_week = SubredditPosts(subreddit="MikuNakano", listing=Listing.top, time_filter=TimeFilter.week)
    assert source_key("m", new_all) == source_key("m", new_week)
    assert source_key("m", top_all) != source_key("m", top_week)


# ---------------------------------------------------------------- the reference project's JSON


def _legacy(jobs: list[dict[str, Any]], labels: list[str] | None = None) -> str:
    return json.dumps({"labels": labels if labels is not None else ["nakano_miku", "nakano_nino"], "jobs": jobs})


def test_legacy_comment_links() -> None:
    text = _legacy([
        {
            "TYPE": "comment_links",
            "SUBREDDIT": "5ToubunNoHanayome",
            "SEARCH_QUERY": "Daily Quintuplets Discussion",
            "THREAD_FLAIR": "Discussion",
            "LABEL": "nakano_miku",
        }
    ])
    job = parse_job(text, "sessions/My Session.json")
    assert job.name == "my-session"
    assert [label.name for label in job.labels] == ["nakano_miku", "nakano_nino"]
    assert job.label("nakano_miku").sources == [
        CommentLinks(subreddit="5ToubunNoHanayome", query="Daily Quintuplets Discussion", flair="Discussion")
    ]
    assert job.label("nakano_miku").aliases == []
    assert job.label("nakano_nino").sources == []


def test_legacy_subreddit_posts_without_query() -> None:
    text = _legacy([
        {"TYPE": "subreddit_posts", "SUBREDDIT": "r/MikuNakano", "SEARCH_QUERY": None, "THREAD_FLAIR": "Fanart",
         "LABEL": "nakano_miku"},
        {"TYPE": "subreddit_posts", "SUBREDDIT": "NinoNakano", "SEARCH_QUERY": None, "THREAD_FLAIR": None,
         "LABEL": "nakano_nino"},
    ])
    job = parse_job(text, "session.json")
    assert job.label("nakano_miku").sources == [SubredditPosts(subreddit="MikuNakano", flairs=["Fanart"])]
    assert job.label("nakano_nino").sources == [SubredditPosts(subreddit="NinoNakano")]


def test_legacy_subreddit_posts_with_query_becomes_title_mentions_and_alias() -> None:
    text = _legacy([
        {"TYPE": "subreddit_posts", "SUBREDDIT": "5ToubunNoHanayome", "SEARCH_QUERY": "Nino",
         "THREAD_FLAIR": "Fanart", "LABEL": "nakano_nino"},
        {"TYPE": "subreddit_posts", "SUBREDDIT": "anime", "SEARCH_QUERY": "Nino", "THREAD_FLAIR": None,
         "LABEL": "nakano_nino"},
        {"TYPE": "subreddit_posts", "SUBREDDIT": "5ToubunNoHanayome", "SEARCH_QUERY": "Nakano Miku",
         "THREAD_FLAIR": None, "LABEL": "nakano_miku"},
    ])
    job = parse_job(text, "session.json")
    nino = job.label("nakano_nino")
    assert nino.sources == [
        TitleMentions(subreddit="5ToubunNoHanayome", query="Nino", flairs=["Fanart"]),
        TitleMentions(subreddit="anime", query="Nino"),
    ]
    assert nino.aliases == ["Nino"]  # once, though two jobs used it
    miku = job.label("nakano_miku")
    assert miku.sources == [TitleMentions(subreddit="5ToubunNoHanayome", query="Nakano Miku")]
    assert miku.aliases == []  # "Nakano Miku" is the label itself, spelled differently


def test_legacy_values_as_lists_are_zipped() -> None:
    text = _legacy([
        {"TYPE": "subreddit_posts", "SUBREDDIT": ["MikuNakano", "NinoNakano"], "SEARCH_QUERY": None,
         "THREAD_FLAIR": "Fanart", "LABEL": ["nakano_miku", "nakano_nino"]},
        {"TYPE": "comment_links", "SUBREDDIT": "5ToubunNoHanayome", "SEARCH_QUERY": "Daily thread",
         "THREAD_FLAIR": None, "LABEL": ["nakano_miku", "nakano_nino"]},
    ])
    job = parse_job(text, "session.json")
    assert job.label("nakano_miku").sources == [
        SubredditPosts(subreddit="MikuNakano", flairs=["Fanart"]),
        CommentLinks(subreddit="5ToubunNoHanayome", query="Daily thread"),
    ]
    assert job.label("nakano_nino").sources == [
        SubredditPosts(subreddit="NinoNakano", flairs=["Fanart"]),
        CommentLinks(subreddit="5ToubunNoHanayome", query="Daily thread"),
    ]


def test_legacy_label_missing_from_labels_list_is_added() -> None:
    text = _legacy(
        [{"TYPE": "subreddit_posts", "SUBREDDIT": "ItsukiNakano", "SEARCH_QUERY": None, "LABEL": "nakano_itsuki"}],
        labels=[],
    )
    job = parse_job(text, "session.json")
    assert [label.name for label in job.labels] == ["nakano_itsuki"]


def test_legacy_converted_job_round_trips() -> None:
    text = _legacy([
        {"TYPE": "subreddit_posts", "SUBREDDIT": "5ToubunNoHanayome", "SEARCH_QUERY": "Nino", "LABEL": "nakano_nino"},
    ])
    job = parse_job(text, "session.json")
    assert parse_job(job.to_yaml()) == job


@pytest.mark.parametrize(
    ("jobs", "expected"),
    [
        pytest.param(
            [
                {"TYPE": "subreddit_posts", "SUBREDDIT": "MikuNakano", "LABEL": "nakano_miku"},
                {"TYPE": "image_posts", "SUBREDDIT": "MikuNakano", "LABEL": "nakano_miku"},
            ],
            "jobs[1].TYPE: 'image_posts' is not subreddit_posts or comment_links",
            id="bad-type",
        ),
        pytest.param(
            [{"TYPE": "comment_links", "SUBREDDIT": "5ToubunNoHanayome", "SEARCH_QUERY": None, "LABEL": "nakano_miku"}],
            "jobs[0].SEARCH_QUERY: comment_links needs a search query",
            id="comment-links-without-query",
        ),
        pytest.param(
            [{"TYPE": "subreddit_posts", "LABEL": "nakano_miku"}],
            "jobs[0]: missing keys ['SUBREDDIT']",
            id="missing-key",
        ),
        pytest.param(
            [{"TYPE": "subreddit_posts", "SUBREDDIT": "MikuNakano", "LABEL": "nakano_miku", "LIMIT": 5}],
            "jobs[0]: unknown keys ['LIMIT']",
            id="unknown-key",
        ),
        pytest.param(
            [{"TYPE": "subreddit_posts", "SUBREDDIT": "MikuNakano", "LABEL": "nakano_miku"}, "oops"],
            "jobs[1]: expected a mapping",
            id="not-a-mapping",
        ),
    ],
)
def test_legacy_problems(jobs: list[Any], expected: str) -> None:
    assert expected in _problems(_legacy(jobs), "session.json")


def test_legacy_bad_subreddit_is_reported_by_the_schema() -> None:
    text = _legacy([{"TYPE": "subreddit_posts", "SUBREDDIT": "not a sub", "LABEL": "nakano_miku"}])
    problems = _problems(text, "session.json")
    assert any(p.startswith("labels[0].sources[0].subreddit: 'not a sub' is not a subreddit name") for p in problems)


# ---------------------------------------------------------------- build_job


def test_build_job_every_source_kind() -> None:
    job = build_job(
        name="quints",
        labels=["nakano_miku", "nakano_nino"],
        aliases=[("nakano_miku", "Miku"), ("nakano_nino", "Nino"), ("nakano_miku", "Miku Nakano")],
        character_subs=[("nakano_miku", "r/MikuNakano")],
        show="5ToubunNoHanayome",
        thread_query="Daily Quintuplets Discussion",
        thread_flair="Discussion",
        nsfw="include",
    )
    assert isinstance(job, Job)
    assert job.name == "quints"
    assert job.options.nsfw == NsfwPolicy.include
    miku, nino = job.labels
    assert miku.aliases == ["Miku", "Miku Nakano"]
    assert nino.aliases == ["Nino"]
    threads = CommentLinks(subreddit="5ToubunNoHanayome", query="Daily Quintuplets Discussion", flair="Discussion")
    assert miku.sources == [
        SubredditPosts(subreddit="MikuNakano"),
        TitleMentions(subreddit="5ToubunNoHanayome"),
        threads,
    ]
    assert nino.sources == [TitleMentions(subreddit="5ToubunNoHanayome"), threads]
    assert parse_job(job.to_yaml()) == job


def test_build_job_thread_sub_without_show() -> None:
    job = build_job(name="quints", labels=["nakano_miku"], thread_query="Daily thread", thread_sub="anime")
    assert job.labels[0].sources == [CommentLinks(subreddit="anime", query="Daily thread")]
    assert job.options.nsfw == NsfwPolicy.exclude


def test_build_job_character_subs_only() -> None:
    job = build_job(
        name="quints",
        labels=["nakano_miku", "nakano_nino"],
        character_subs=[("nakano_miku", "MikuNakano"), ("nakano_miku", "Miku"), ("nakano_nino", "NinoNakano")],
    )
    miku_subs = [SubredditPosts(subreddit="MikuNakano"), SubredditPosts(subreddit="Miku")]
    assert job.label("nakano_miku").sources == miku_subs
    assert job.label("nakano_nino").sources == [SubredditPosts(subreddit="NinoNakano")]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param(
            {"aliases": [("nakano_ichika", "Ichika")], "show": "5ToubunNoHanayome"},
            "--alias nakano_ichika=Ichika: 'nakano_ichika' is not one of the labels",
            id="alias-unknown-label",
        ),
        pytest.param(
            {"character_subs": [("nakano_ichika", "IchikaNakano")]},
            "--character-sub nakano_ichika=IchikaNakano: 'nakano_ichika' is not one of the labels",
            id="character-sub-unknown-label",
        ),
        pytest.param({}, "no sources: give --show, --thread-query or --character-sub", id="no-sources"),
        pytest.param(
            {"thread_query": "Daily thread"},
            "--thread-query needs --thread-sub or --show (the subreddit of the threads)",
            id="thread-query-without-subreddit",
        ),
    ],
)
def test_build_job_errors(kwargs: dict[str, Any], expected: str) -> None:
    with pytest.raises(JobFileError) as info:
        build_job(name="quints", labels=["nakano_miku"], **kwargs)
    assert expected in info.value.problems


def test_build_job_schema_errors_are_job_file_errors() -> None:
    with pytest.raises(JobFileError) as info:
        build_job(name="Quints", labels=["nakano_miku", "nakano_miku"], show="5ToubunNoHanayome")
    assert any(p.startswith("name: 'Quints' is not a job name") for p in info.value.problems), info.value.problems
    with pytest.raises(JobFileError) as info:
        build_job(name="quints", labels=["nakano_miku", "nakano_miku"], show="5ToubunNoHanayome")
    assert info.value.problems == ["job: label 'nakano_miku' is defined twice"]


def test_legacy_lists_of_different_lengths_are_an_error_not_a_silent_drop():
    import json

    from tasks.jobs import JobFileError, parse_job

    legacy = {"labels": ["a", "b"], "jobs": [{"TYPE": "subreddit_posts", "SUBREDDIT": ["sub_a", "sub_b", "sub_c"],
                                              "SEARCH_QUERY": None, "THREAD_FLAIR": None, "LABEL": ["a", "b"]}]}
    with pytest.raises(JobFileError) as caught:
        parse_job(json.dumps(legacy), "old.json")
    assert any(p.startswith("jobs[0]:") and "different lengths [2, 3]" in p for p in caught.value.problems)


# ---------------------------------------------------------------- hostile and malformed files (issue 14)

ALIAS_BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9) if prev else ', '.join(['lol'] * 9)}]\n"
    for prev, name in zip([None, *"abcdefgh"], "abcdefghi", strict=True)
)


def test_yaml_alias_bomb_is_refused_before_expanding() -> None:
    # 9 levels of 9 aliases: 9**9 (387 million) strings once expanded, from 354 bytes
    assert len(ALIAS_BOMB) < 400
    problems = _problems(ALIAS_BOMB)
    assert len(problems) == 1 and "aliases (*name) expand to more than 100,000 values" in problems[0]


def test_yaml_recursive_alias_is_refused() -> None:
    assert _problems("name: x\nlabels: &l [*l]\n") == [
        "file: an alias (*name) refers to the value that contains it"]


def test_yaml_aliases_within_the_bound_still_work() -> None:
    text = ("name: x\nlabels:\n  - {name: a, sources: &src [{kind: subreddit_posts, subreddit: abc}]}\n"
            "  - {name: b, sources: *src}\n")
    job = parse_job(text)
    assert job.label("b").sources == job.label("a").sources == [SubredditPosts(subreddit="abc")]


@pytest.mark.parametrize(
    ("labels", "label", "expected"),
    [
        pytest.param(5, "miku", "labels: a list of label names, got int 5", id="labels-number"),
        pytest.param("miku", "miku", 'labels: a list of label names, got str "miku"', id="labels-string"),
        pytest.param(["miku", None], "miku", "labels: a list of label names, got list", id="labels-null-item"),
        pytest.param(["miku"], None, "jobs[0].LABEL: a label name (or a list of them), got null", id="label-null"),
        pytest.param(["miku"], ["miku", None], "jobs[0].LABEL: a label name (or a list of them), got null",
                     id="label-list-with-null"),
        pytest.param(["miku"], "  ", 'jobs[0].LABEL: a label name (or a list of them), got str "  "',
                     id="label-blank"),
    ],
)
def test_legacy_malformed_labels_are_problems_not_labels(labels: Any, label: Any, expected: str) -> None:
    entry = {"TYPE": "subreddit_posts", "SUBREDDIT": "Nakano_Miku", "SEARCH_QUERY": None, "THREAD_FLAIR": None,
             "LABEL": label}
    if isinstance(label, list):
        entry["SUBREDDIT"] = ["Nakano_Miku", "Nakano_Miku"]
    problems = _problems(json.dumps({"labels": labels, "jobs": [entry]}), "old.json")
    assert len(problems) == 1 and problems[0].startswith(expected), problems
