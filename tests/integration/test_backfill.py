"""Backfill from Reddit dump files: the same candidates as the API path (real PRAW against the fake Reddit),
past the 1000-item cap, de-duplicated against the API path, and what a broken dump leaves behind."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fakes.dumps import comment_record, dumps_from_fake, generate_month, submission_record, write_dump
from fakes.reddit import FakeReddit
from flows.backfill import backfill_job
from flows.cli import app
from flows.scrape import scrape_job
from flows.settings import Settings
from tasks import catalog
from tasks.dump import DumpPathError
from tasks.jobs import Job, parse_job
from tasks.links import Skip

pytestmark = pytest.mark.integration
runner = CliRunner()
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "backfill.yaml"

JOB = """
name: gotoubun
labels:
  - name: miku
    aliases: [Nakano Miku]
    sources:
      - {kind: subreddit_posts, subreddit: Nakano_Miku}
      - {kind: title_mentions, subreddit: 5ToubunNoHanayome}
      - {kind: comment_links, subreddit: anime, query: "Go-Toubun Episode Discussion", flair: Episode}
  - name: nino
    sources:
      - {kind: title_mentions, subreddit: 5ToubunNoHanayome}
      - {kind: comment_links, subreddit: anime, query: "Go-Toubun Episode Discussion", flair: Episode}
"""


def job_of(text: str = JOB) -> Job:
    return parse_job(text, "job.yaml")


def candidates(settings: Settings) -> list[tuple]:
    """Every candidate as stored, without the row id and the time it was found."""
    conn = catalog.connect(settings.catalog_path)
    try:
        columns = ", ".join(catalog.CANDIDATE_COLUMNS)
        return [tuple(row) for row in conn.execute(f"SELECT {columns} FROM candidates ORDER BY {columns}")]
    finally:
        conn.close()


def urls(settings: Settings) -> set[str]:
    return {row[catalog.CANDIDATE_COLUMNS.index("url")] for row in candidates(settings)}


def elsewhere(settings: Settings, tmp_path: Path, name: str) -> Settings:
    """The same servers and credentials, another catalog."""
    return settings.model_copy(update={"data_dir": tmp_path / name})


def seed(fake: FakeReddit) -> None:
    """Every kind of post and comment the harvester treats differently."""
    sub = "Nakano_Miku"
    fake.add_post(sub, "Miku in summer", url="https://i.redd.it/summer.jpeg", score=12)
    fake.add_post(sub, "Miku &amp; her headphones", url="https://i.redd.it/amp.png")  # titles come HTML-escaped
    fake.add_post(sub, "posted by a deleted account", url="https://i.redd.it/orphan.jpeg", author=None)
    fake.add_gallery(sub, "Miku set", [
        {"media_id": "g1"}, {"media_id": "gone", "status": "failed"},  # media_metadata holds only a status
        {"media_id": "g2", "mime": "image/png"}, {"media_id": "clip", "e": "RedditVideo", "mime": "video/mp4"}])
    fake.add_gallery(sub, "removed gallery", None)  # gallery_data: null
    fake.add_crosspost(sub, "Miku (xpost)", fake.add_post("pics", "art", url="https://i.redd.it/orig.jpeg"))
    fake.add_post(sub, "album", url="https://imgur.com/a/AlB12")
    fake.add_imgur_album("AlB12", ["https://i.imgur.com/one11.jpg", "https://i.imgur.com/two22.png"])
    fake.add_post(sub, "page", url="https://imgur.com/PaGe1")
    fake.add_imgur_image("PaGe1", "https://i.imgur.com/PaGe1.jpg")
    fake.add_post(sub, "lewd", url="https://i.redd.it/lewd.jpeg", nsfw=True)
    fake.add_post(sub, "a clip", url="https://v.redd.it/clip", is_video=True)
    fake.add_post(sub, "just words", is_self=True, selftext="hello")
    show = "5ToubunNoHanayome"
    fake.add_post(show, "Nakano Miku in her summer outfit", url="https://i.redd.it/alias.jpeg")
    fake.add_post(show, "Nino &amp; Miku", url="https://i.redd.it/both.jpeg")
    fake.add_post(show, "Mikuru cosplay", url="https://i.redd.it/mikuru.jpeg")
    thread = fake.add_post("anime", "Go-Toubun Episode Discussion - Episode 5", is_self=True, flair="Episode")
    top = fake.add_comment(thread, "Best girl: [Miku (summer ver.)](https://i.redd.it/paren.jpeg) and "
                                   "[Nino](https://imgur.com/a/NiNo1)")
    fake.add_imgur_album("NiNo1", ["https://i.imgur.com/nino1.jpg", "https://i.imgur.com/nino2.jpg"])
    for k in range(4):  # more than a comment page: `more` stubs and "continue this thread" on the API path
        reply = fake.add_comment(top, f"[miku #{k}](https://preview.redd.it/r{k}.png?width=640&amp;s=x)")
        fake.add_comment(reply, f"deeper [Nakano Miku](https://i.redd.it/d{k}.jpeg)", author=None)
    gallery = fake.add_gallery("pics", "set", [{"media_id": "ga1"}, {"media_id": "ga2"}])
    fake.add_comment(thread, f"[Nino gallery](https://www.reddit.com/gallery/{gallery['id']})")
    fake.add_comment(thread, "not her: [Mikuru](https://i.redd.it/mikuru2.jpeg), [Miku](https://youtu.be/x)")
    rewatch = fake.add_post("anime", "Go-Toubun Episode Discussion - rewatch", is_self=True, flair="Rewatch")
    fake.add_comment(rewatch, "[Miku](https://i.redd.it/rewatch.jpeg)")


def test_dumps_give_the_same_candidates_as_the_api(fake_reddit: FakeReddit, settings: Settings, tmp_path: Path):
    seed(fake_reddit)
    job = job_of()
    api = scrape_job(settings, job)
    rs, rc = dumps_from_fake(fake_reddit, tmp_path / "dumps")  # comments with only the markdown body, as since 2023
    dump_settings = elsewhere(settings, tmp_path, "from-dumps")

    summary = backfill_job(dump_settings, job, dumps=[str(rs), str(rc)])

    from_api, from_dumps = candidates(settings), candidates(dump_settings)
    assert from_dumps == from_api
    assert len(from_api) == 25 and not summary.errors  # 9 from posts, 3 from titles, 13 from comments
    assert {"https://i.redd.it/g1.jpg", "https://i.redd.it/g2.png", "https://i.redd.it/orig.jpeg",
            "https://i.imgur.com/two22.png", "https://i.redd.it/amp.png", "https://i.redd.it/orphan.jpeg",
            "https://i.redd.it/both.jpeg", "https://i.redd.it/r3.png", "https://i.redd.it/d3.jpeg",
            "https://i.imgur.com/nino2.jpg", "https://i.redd.it/ga2.jpg"} <= urls(dump_settings)
    assert not {"https://i.redd.it/lewd.jpeg", "https://i.redd.it/mikuru.jpeg", "https://i.redd.it/mikuru2.jpeg",
                "https://i.redd.it/rewatch.jpeg"} & urls(dump_settings)
    posts_api, posts_dump = api.sources[0], summary.sources[0]
    assert posts_dump.kind == posts_api.kind == "subreddit_posts"
    assert posts_dump.skipped == posts_api.skipped == {Skip.NSFW: 1, Skip.VIDEO: 2, Skip.SELF_POST: 1,
                                                       Skip.GALLERY_UNAVAILABLE: 1, Skip.GALLERY_ITEM_INVALID: 1}
    assert posts_dump.matched == posts_api.posts_read == 11
    threads = [s for s in summary.sources if s.kind == "comment_links"]
    assert [s.threads for s in threads] == [1, 1] and [s.matched for s in threads] == [11, 11]
    assert threads[0].skipped[Skip.FLAIR] == 1  # the rewatch thread meets the query, not the flair
    assert summary.new_candidates == 25 and summary.known == 0

    again = backfill_job(settings, job, dumps=[str(rs), str(rc)])  # into the API's catalog: all known

    assert again.new_candidates == 0 and candidates(settings) == from_api
    by_kind = {(s.label, s.kind): s.known for s in again.sources}
    assert by_kind[("miku", "subreddit_posts")] == 11  # every post the API read, whatever it yielded
    assert by_kind[("miku", "title_mentions")] == 2 and by_kind[("nino", "title_mentions")] == 1
    assert by_kind[("miku", "comment_links")] == 9 and by_kind[("nino", "comment_links")] == 2  # with candidates


def test_reddits_api_arctic_shift_and_dumps_give_the_same_candidates(fake_reddit: FakeReddit, settings: Settings,
                                                                    arctic_settings: Settings, tmp_path: Path):
    """The three paths that read Reddit hand the same posts and comments to the one Harvester: the same rows."""
    seed(fake_reddit)
    job = job_of()
    api = scrape_job(settings, job)
    archive_settings = elsewhere(arctic_settings, tmp_path, "from-arctic-shift")
    archive = scrape_job(archive_settings, job)
    rs, rc = dumps_from_fake(fake_reddit, tmp_path / "dumps")
    dump_settings = elsewhere(settings, tmp_path, "from-dumps")
    backfill_job(dump_settings, job, dumps=[str(rs), str(rc)])

    assert api.backend == "reddit" and archive.backend == "arctic_shift" and not archive.errors
    from_api = candidates(settings)
    assert len(from_api) == 25
    assert candidates(archive_settings) == from_api == candidates(dump_settings)
    posts_api, posts_archive = api.sources[0], archive.sources[0]
    assert posts_archive.kind == "subreddit_posts" and posts_archive.skipped == posts_api.skipped
    assert posts_archive.posts_read == posts_api.posts_read == 11
    # The searches differ and say so in their counts: the archive's full-text search does not return "Mikuru"
    # for "Miku" (Reddit's does, and the title check drops it), and flair is checked here, not in the query.
    skipped = {(s.label, s.kind): dict(s.skipped) for s in archive.sources}
    assert skipped[("miku", "title_mentions")] == {} and skipped[("miku", "comment_links")][Skip.FLAIR] == 1


def test_backfill_goes_past_the_1000_item_cap(fake_reddit: FakeReddit, settings: Settings, tmp_path: Path):
    for i in range(1100):
        fake_reddit.add_post("Nakano_Miku", f"Miku {i}", url=f"https://i.redd.it/m{i}.png")
    job = job_of("name: gotoubun\nlabels: [{name: miku, sources: [{kind: subreddit_posts, subreddit: nakano_miku}]}]")
    assert scrape_job(settings, job).new_candidates == 1000
    rs, _ = dumps_from_fake(fake_reddit, tmp_path / "dumps")

    summary = backfill_job(settings, job, dumps=[str(rs)])

    assert summary.new_candidates == 100 and summary.known == 1000
    assert len(candidates(settings)) == 1100 == len(urls(settings))
    assert {f"https://i.redd.it/m{i}.png" for i in range(100)} <= urls(settings)  # the oldest, out of the API's reach
    assert scrape_job(settings, job).new_candidates == 0  # and the API path does not take them again
    unchanged = backfill_job(settings, job, dumps=[str(rs)])
    assert unchanged.files[0].status == "unchanged" and unchanged.files[0].lines == 0
    forced = backfill_job(settings, job, dumps=[str(rs)], force=True)
    assert forced.known == 1100 and forced.new_candidates == 0


def image_posts(start: int, count: int) -> list[dict]:
    return [submission_record({"id": f"p{i:04d}", "title": f"Miku {i}", "subreddit": "Nakano_Miku",
                               "url": f"https://i.redd.it/m{i}.png", "author": "[deleted]",
                               "created_utc": 1_600_000_000 + i, "permalink": f"/r/Nakano_Miku/comments/p{i:04d}/"})
            for i in range(start, start + count)]


MIKU_POSTS = "name: gotoubun\nlabels: [{name: miku, sources: [{kind: subreddit_posts, subreddit: Nakano_Miku}]}]"


def test_a_truncated_dump_keeps_what_was_read(settings: Settings, tmp_path: Path):
    info = write_dump(tmp_path / "RS_2019-01.zst", image_posts(0, 3000))
    whole = info.path.read_bytes()
    info.path.write_bytes(whole[: len(whole) // 2])
    later = write_dump(tmp_path / "RS_2019-02.zst", image_posts(5000, 10)).path
    job = job_of(MIKU_POSTS)
    progress = []

    summary = backfill_job(settings, job, progress.append, dumps=[str(tmp_path / "RS_*.zst")])

    broken, good = summary.files
    assert broken.status == "failed" and good.status == "done"  # one broken file does not stop the others
    assert 0 < broken.lines < 3000 and broken.matches == broken.lines
    assert summary.errors == [broken.error]
    assert broken.error.startswith(f"{info.path}:{broken.lines + 1}: ") and "truncated" in broken.error
    assert summary.new_candidates == broken.lines + 10 == len(candidates(settings))
    assert candidates(settings)[broken.lines - 1][catalog.CANDIDATE_COLUMNS.index("author")] is None  # [deleted]
    read = [p.compressed_read for p in progress]
    assert read == sorted(read) and read[-1] == progress[-1].compressed_total == info.path.stat().st_size + \
        later.stat().st_size

    info.path.write_bytes(whole)  # the download completed
    healed = backfill_job(settings, job, dumps=[str(tmp_path / "RS_*.zst")])
    assert [f.status for f in healed.files] == ["done", "unchanged"]
    assert healed.new_candidates == 3000 - broken.lines and healed.known == broken.lines
    assert len(candidates(settings)) == 3010


def test_an_invalid_json_line_stops_its_file_at_that_line(settings: Settings, tmp_path: Path):
    records = [*image_posts(0, 40), b'{"id":"bad","subreddit":"Nakano_Miku","url":"https://i.re', *image_posts(40, 5)]
    path = write_dump(tmp_path / "RS_2019-01.zst", records).path

    summary = backfill_job(settings, job_of(MIKU_POSTS), dumps=[str(path)])

    assert summary.errors == [summary.files[0].error]
    assert summary.files[0].error.startswith(f"{path}:41: invalid JSON")
    assert summary.new_candidates == 40 == len(candidates(settings))


def test_comments_of_later_months_find_threads_of_earlier_runs(settings: Settings, tmp_path: Path):
    """2023-style comments (markdown body only, escaped), in a comment file read by a later run."""
    thread = submission_record({"id": "th1", "title": "Go-Toubun Episode Discussion - Episode 1", "subreddit": "anime",
                                "is_self": True, "link_flair_text": "Episode", "over_18": True,
                                "created_utc": 1_672_531_200, "permalink": "/r/anime/comments/th1/ep1/"})
    rs = write_dump(tmp_path / "RS_2023-01.zst", [thread]).path
    job = job_of(JOB.replace("name: gotoubun", "name: gotoubun\noptions: {nsfw: include}"))
    first = backfill_job(settings, job, dumps=[str(rs)])
    assert [s.threads for s in first.sources if s.kind == "comment_links"] == [1, 1]

    def reply(i: int, body: str, **extra) -> dict:
        return comment_record({"id": f"c{i}", "body": body, "link_id": "t3_th1", "parent_id": "t3_th1",
                               "subreddit": "anime", "created_utc": 1_675_209_600 + i, "author": "fan", **extra})

    rc = write_dump(tmp_path / "RC_2023-02.zst", [
        reply(1, "[Miku &amp; Nino](https://i.redd.it/a.png?x=1&amp;y=2)"),
        reply(2, "[Nino](https://i.redd.it/b.png)", author="[deleted]", body_html=None),
        comment_record({"id": "c3", "body": "[Miku](https://i.redd.it/c.png)", "link_id": "t3_other",
                        "subreddit": "anime"}),
    ]).path

    later = backfill_job(settings, job, dumps=[str(rc)])

    column = catalog.CANDIDATE_COLUMNS.index
    rows = {(r[column("label")], r[column("url")], r[column("author")], r[column("nsfw")], r[column("permalink")])
            for r in candidates(settings)}
    made_up = "https://www.reddit.com/r/anime/comments/th1/_/{}/"  # these comments have no permalink, as old dumps
    assert rows == {("miku", "https://i.redd.it/a.png?x=1&y=2", "fan", 1, made_up.format("c1")),
                    ("nino", "https://i.redd.it/a.png?x=1&y=2", "fan", 1, made_up.format("c1")),
                    ("nino", "https://i.redd.it/b.png", None, 1, made_up.format("c2"))}
    assert later.new_candidates == 3 and later.files[0].matches == 2
    assert backfill_job(settings, job, dumps=[str(rs), str(rc)]).files[1].status == "unchanged"
    # A new thread makes the comment files worth reading again.
    rs2 = write_dump(tmp_path / "RS_2023-02.zst", [{**thread, "id": "th2", "name": "t3_th2"}]).path
    rerun = backfill_job(settings, job, dumps=[str(rs), str(rs2), str(rc)])
    assert [f.status for f in rerun.files] == ["unchanged", "done", "done"] and rerun.known == 3


def test_no_dumps_or_missing_files_are_clear_errors(settings: Settings, tmp_path: Path):
    with pytest.raises(DumpPathError, match="lists no dump files"):
        backfill_job(settings, job_of(MIKU_POSTS))
    with pytest.raises(DumpPathError, match="RS_1999-\\*.zst: no file matches"):
        backfill_job(settings, job_of(MIKU_POSTS), dumps=["RS_1999-*.zst"], base_dir=tmp_path)


# ---------------------------------------------------------------- the command


def write_job(folder: Path, dumps: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "job.yaml"
    path.write_text(MIKU_POSTS + "\ndumps: " + json.dumps(dumps) + "\n")
    return path


def test_cli_backfill_reads_the_jobs_dumps_relative_to_the_job_file(yotsuba_env: dict, tmp_path: Path):
    write_dump(tmp_path / "dumps" / "RS_2019-01.zst", image_posts(0, 25))
    job_file = write_job(tmp_path / "jobs", ["../dumps/RS_*.zst"])

    result = runner.invoke(app, ["backfill", str(job_file), "--json"])

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["new_candidates"] == 25 and summary["files"][0]["status"] == "done"
    assert summary["new_by_label"] == {"miku": {"subreddit_posts": 25}} and summary["lines"] == 25

    table = runner.invoke(app, ["backfill", str(job_file)])
    assert table.exit_code == 0, table.output
    assert "0 new candidates" in table.stdout and "unchanged" in table.stdout


def test_cli_backfill_exits_2_on_a_bad_job_or_missing_dumps(yotsuba_env: dict, tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: Bad Name\nlabels: []\n")
    assert runner.invoke(app, ["backfill", str(bad)]).exit_code == 2

    no_dumps = tmp_path / "plain.yaml"
    no_dumps.write_text(MIKU_POSTS + "\n")
    result = runner.invoke(app, ["backfill", str(no_dumps)])
    assert result.exit_code == 2 and "lists no dump files" in result.stderr

    result = runner.invoke(app, ["backfill", str(no_dumps), "--dump", "nowhere/RC_*.zst"])
    assert result.exit_code == 2
    assert f"{no_dumps}: dumps: nowhere/RC_*.zst: no file matches" in result.stderr


def test_cli_backfill_of_a_corrupt_dump_prints_what_it_kept_and_exits_1(yotsuba_env: dict, tmp_path: Path):
    info = write_dump(tmp_path / "RS_2019-01.zst", image_posts(0, 3000))
    data = bytearray(info.path.read_bytes())
    for k in range(len(data) // 2, len(data) // 2 + 64):
        data[k] ^= 0x5A
    info.path.write_bytes(bytes(data))
    job_file = write_job(tmp_path, ["RS_2019-01.zst"])

    result = runner.invoke(app, ["backfill", str(job_file), "--json"])

    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    kept = summary["new_candidates"]
    assert 0 < kept < 3000 and summary["files"][0]["status"] == "failed"
    assert f"stopped reading {info.path}:{kept + 1}: corrupt zstd data" in result.stderr
    conn = sqlite3.connect(Path(yotsuba_env["YOTSUBA_DATA_DIR"]) / "catalog.sqlite")
    try:
        assert conn.execute("SELECT count(*) FROM candidates").fetchone()[0] == kept
        assert conn.execute("SELECT status, error FROM dump_files").fetchone() == ("failed", summary["errors"][0])
    finally:
        conn.close()


def test_cli_backfill_of_the_shipped_example(yotsuba_env: dict, tmp_path: Path):
    job_file = tmp_path / "backfill.yaml"
    job_file.write_text(EXAMPLE.read_text())
    month = generate_month(tmp_path / "dumps", submissions_bytes=1_000_000, comments_bytes=2_000_000,
                           match_fraction=0.1)

    result = runner.invoke(app, ["backfill", str(job_file), "--json"])

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [f["status"] for f in summary["files"]] == ["done", "done"]
    assert summary["lines"] == month.submissions.lines + month.comments.lines
    new = summary["new_by_label"]
    assert new["miku"]["subreddit_posts"] == month.planted["subreddit_posts"]
    assert min(new["miku"]["comment_links"], new["nino"]["title_mentions"], new["yotsuba"]["comment_links"]) > 0
