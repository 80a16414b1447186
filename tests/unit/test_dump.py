"""Unit tests for tasks.dump: streaming dump files, the pre-filter, errors with file and line, paths, queries."""

from __future__ import annotations

import io
import json
from pathlib import Path

import orjson
import pytest
import zstandard

from fakes.dumps import write_dump
from tasks.dump import (
    COMMENTS,
    SUBMISSIONS,
    DumpError,
    DumpPathError,
    FileProgress,
    LineFilter,
    dump_kind,
    normalise_comment,
    normalise_post,
    query_matches,
    resolve_dumps,
    scan,
    sniff_kind,
)


def post(i: int, subreddit: str = "Nakano_Miku", **extra) -> dict:
    return {"id": f"p{i}", "subreddit": subreddit, "title": f"post {i}", "created_utc": 1_600_000_000 + i, **extra}


def comment(i: int, thread: str, subreddit: str = "anime", **extra) -> dict:
    return {"id": f"c{i}", "subreddit": subreddit, "link_id": f"t3_{thread}", "body": f"comment {i}", **extra}


def read_all(path: Path, line_filter: LineFilter | None,
             progress: FileProgress | None = None) -> list[tuple[int, dict]]:
    return list(scan(path, line_filter, progress or FileProgress(path)))


def test_dumps_need_the_long_window_and_scan_reads_them(tmp_path: Path):
    path = write_dump(tmp_path / "RS_2019-01.zst", [post(i) for i in range(10)]).path
    with pytest.raises(zstandard.ZstdError, match="too much memory"):
        zstandard.ZstdDecompressor().stream_reader(io.BytesIO(path.read_bytes())).read(100)
    found = read_all(path, LineFilter(["Nakano_Miku"]))
    assert [(line, record["id"]) for line, record in found] == [(i + 1, f"p{i}") for i in range(10)]


def test_scan_streams_block_by_block_with_exact_line_numbers(tmp_path: Path):
    # ~6 MB of lines from other subreddits, every 997th line ours: many blocks, line numbers counted across them.
    records = [post(i, "Nakano_Miku" if i % 997 == 0 else "pics", selftext=f"{i} " * 150) for i in range(10_000)]
    info = write_dump(tmp_path / "RS_2019-01.zst", records)
    progress = FileProgress(info.path)
    blocks: list[int] = []
    found = list(scan(info.path, LineFilter(["nakano_miku"]), progress, on_block=lambda: blocks.append(progress.read)))
    assert [(line, record["id"]) for line, record in found] == [(i + 1, f"p{i}") for i in range(0, 10_000, 997)]
    assert len(blocks) > 5 and blocks == sorted(blocks)  # never loaded whole: block by block, as it is read
    assert progress.read == info.compressed_bytes and progress.bytes == info.bytes
    assert progress.lines == 10_000 and progress.matches == len(found)


def test_prefilter_any_case_spaced_json_and_no_false_matches(tmp_path: Path):
    ours = {"id": "a", "subreddit": "NAKANO_MIKU", "title": "shouting"}
    spaced = json.dumps({"id": "b", "subreddit": "Nakano_Miku", "title": "spaces"}).encode()  # `": "` separators
    crosspost = {"id": "c", "subreddit": "pics", "crosspost_parent_list": [{"subreddit": "Nakano_Miku"}]}
    quoted = {"id": "d", "subreddit": "pics", "selftext": 'text with "subreddit":"Nakano_Miku" in it'}
    prefix = {"id": "e", "subreddit": "Nakano_Miku_fans"}
    path = write_dump(tmp_path / "RS_2019-01.zst", [ours, spaced, crosspost, quoted, prefix]).path
    assert [r["id"] for _, r in read_all(path, LineFilter(["nakano_miku"]))] == ["a", "b"]


def test_comment_filter_keeps_the_threads_comments_only(tmp_path: Path):
    records = [comment(1, "t1"), comment(2, "other"), comment(3, "t1", subreddit="pics"), comment(4, "t2"),
               comment(5, "t1", subreddit="Anime")]
    path = write_dump(tmp_path / "RC_2019-01.zst", records).path
    found = read_all(path, LineFilter(["anime"], threads={"t1", "t2"}))
    assert [r["id"] for _, r in found] == ["c1", "c4", "c5"]


def test_several_frames_and_a_last_line_without_newline(tmp_path: Path):
    info = write_dump(tmp_path / "RS_2019-01.zst", [post(i) for i in range(3000)], frame_bytes=20_000)
    assert len(read_all(info.path, LineFilter(["nakano_miku"]))) == 3000
    raw = tmp_path / "RS_2019-02.zst"
    raw.write_bytes(zstandard.ZstdCompressor().compress(orjson.dumps(post(1)) + b"\n" + orjson.dumps(post(2))))
    assert [r["id"] for _, r in read_all(raw, LineFilter(["nakano_miku"]))] == ["p1", "p2"]


def test_plain_ndjson_files_are_read_too(tmp_path: Path):
    path = tmp_path / "Nakano_Miku_submissions.ndjson"
    path.write_bytes(b"".join(orjson.dumps(post(i)) + b"\n" for i in range(5)))
    assert len(read_all(path, LineFilter(["Nakano_Miku"]))) == 5
    assert dump_kind(path) == SUBMISSIONS


def test_truncated_file_names_file_and_line_after_yielding_what_came_before(tmp_path: Path):
    info = write_dump(tmp_path / "RS_2019-01.zst", [post(i, selftext=f"{i} " * 300) for i in range(5000)])
    data = info.path.read_bytes()
    info.path.write_bytes(data[: len(data) // 2])
    progress = FileProgress(info.path)
    got = []
    with pytest.raises(DumpError) as caught:
        for line, record in scan(info.path, LineFilter(["nakano_miku"]), progress):
            got.append((line, record["id"]))
    error = caught.value
    assert 0 < len(got) < 5000 and got == [(i + 1, f"p{i}") for i in range(len(got))]
    assert error.path == str(info.path) and error.line == len(got) + 1  # the first line it could not finish
    assert str(error).startswith(f"{info.path}:{len(got) + 1}: ") and "truncated" in str(error)


def test_corrupt_bytes_are_an_error_naming_the_file(tmp_path: Path):
    info = write_dump(tmp_path / "RS_2019-01.zst", [post(i, selftext=f"{i} " * 300) for i in range(5000)])
    data = bytearray(info.path.read_bytes())
    for k in range(len(data) // 2, len(data) // 2 + 64):
        data[k] ^= 0x5A
    info.path.write_bytes(bytes(data))
    got = []
    with pytest.raises(DumpError, match=rf"^{info.path}:\d+: corrupt zstd data") as caught:
        for _, record in scan(info.path, LineFilter(["nakano_miku"]), FileProgress(info.path)):
            got.append(record["id"])
    assert caught.value.line == len(got) + 1 and got == [f"p{i}" for i in range(len(got))]


def test_invalid_json_line_stops_the_file_at_its_line(tmp_path: Path):
    broken_theirs = b'{"id": "x", "subreddit": "pics", "title": "never parsed'  # ruled out by the pre-filter
    broken_ours = b'{"id":"y","subreddit":"Nakano_Miku","title":"cut off'
    records = [post(0), broken_theirs, post(2), broken_ours, post(4)]
    path = write_dump(tmp_path / "RS_2019-01.zst", records).path
    got = []
    with pytest.raises(DumpError) as caught:
        for line, record in scan(path, LineFilter(["nakano_miku"]), FileProgress(path)):
            got.append((line, record["id"]))
    assert got == [(1, "p0"), (3, "p2")]
    assert caught.value.line == 4 and str(caught.value).startswith(f"{path}:4: invalid JSON")


def test_lines_that_are_not_objects_are_skipped_and_counted(tmp_path: Path):
    records = [post(0), b'["subreddit", {"subreddit":"Nakano_Miku"}]', b"", post(3)]
    path = write_dump(tmp_path / "RS_2019-01.zst", records).path
    progress = FileProgress(path)
    assert [r["id"] for _, r in read_all(path, LineFilter(["Nakano_Miku"]), progress)] == ["p0", "p3"]
    assert progress.skipped_lines == 1 and progress.lines == 4


def test_kind_from_the_name_or_the_first_record(tmp_path: Path):
    assert dump_kind("RS_2019-01.zst") == SUBMISSIONS and dump_kind("RC_2023-02.zst") == COMMENTS
    assert dump_kind("Nakano_Miku_comments.zst") == COMMENTS and dump_kind("anime_submissions.zst") == SUBMISSIONS
    assert dump_kind("march.zst") is None
    comments = write_dump(tmp_path / "march.zst", [comment(1, "t1")]).path
    posts = write_dump(tmp_path / "april.zst", [post(1)]).path
    assert sniff_kind(comments) == COMMENTS and sniff_kind(posts) == SUBMISSIONS


def test_resolve_dumps_globs_relative_to_a_folder_each_file_once(tmp_path: Path):
    for name in ("RS_2019-02.zst", "RS_2019-01.zst", "RC_2019-01.zst"):
        (tmp_path / name).write_bytes(b"")
    found = resolve_dumps(["RS_*.zst", str(tmp_path / "RS_2019-01.zst"), "RC_2019-01.zst"], base_dir=tmp_path)
    assert [p.name for p in found] == ["RS_2019-01.zst", "RS_2019-02.zst", "RC_2019-01.zst"]
    with pytest.raises(DumpPathError) as caught:
        resolve_dumps(["RS_1999-*.zst", "missing.zst", "RS_2019-01.zst"], base_dir=tmp_path)
    assert len(caught.value.problems) == 2
    assert caught.value.problems[0].startswith("RS_1999-*.zst: no file matches")
    assert caught.value.problems[1].startswith("missing.zst: no such file")


THREAD = {"title": "Go-Toubun no Hanayome - Episode 5 Discussion", "selftext": "Spoilers &amp; more",
          "link_flair_text": "Episode", "author": "AutoLovepon", "subreddit": "anime", "domain": "self.anime"}


@pytest.mark.parametrize(("query", "expected"), [
    ("Go-toubun no Hanayome Episode Discussion", True),  # every word, any order, punctuation aside
    ("gotoubun episode discussion", False),  # a whole word, not part of one
    ('title:"Hanayome - Episode"', True),
    ('title:"Episode Hanayome"', False),  # a phrase keeps its order
    ('"spoilers & more"', True),  # the text unescaped
    ("Episode flair:Episode", True),
    ('flair:"Rewatch"', False),
    ("Hanayome -Rewatch", True),
    ("Hanayome NOT Episode", False),
    ("Kaguya OR Hanayome", True),
    ("Kaguya OR Oshi", False),
    ("author:autolovepon subreddit:Anime", True),
    ("Hanayome nsfw:no", True),  # fields it does not know hold for every post
])
def test_query_matches_like_reddit_search(query: str, expected: bool):
    assert query_matches(query, THREAD) is expected


def test_normalise_old_dump_fields():
    data = normalise_post({"id": 123, "subreddit": "x", "created_utc": "1500000000", "score": "7"})
    assert data["id"] == "123" and data["created_utc"] == 1.5e9 and data["score"] == 7
    old = normalise_comment({"id": "c1", "link_id": "t3_abc", "subreddit": "anime", "created_utc": 1})
    assert old["permalink"] == "/r/anime/comments/abc/_/c1/" and old["created_utc"] == 1.0
