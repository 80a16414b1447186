"""The Prefect flows on Prefect's local API: retries on transient errors only, with every attempt counted;
cached detection batches; the Dask task runner giving what the local one gives; the nightly skip rule."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml

from fakes.demo import synthetic_character
from fakes.imagehost import ImageHost, Route
from fakes.reddit import FakeReddit
from flows.download import download_flow
from flows.jobfiles import using_settings
from flows.prepare import prepare_flow_for
from flows.scrape import scrape_flow, split_by_subreddit
from flows.settings import Settings
from tasks import catalog
from tasks.jobs import load_job

pytestmark = pytest.mark.integration


def write_job(tmp_path: Path, labels: list[dict], **options) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({"name": "flows", "options": options, "labels": labels}))
    return path


@pytest.fixture
def quick(settings: Settings) -> Settings:
    return settings.model_copy(update={"task_retries": 2, "task_retry_delay_seconds": 0.0,
                                       "allow_private_hosts": True})


def candidates(settings: Settings) -> list[sqlite3.Row]:
    conn = catalog.connect(settings.catalog_path)
    try:
        return conn.execute("SELECT label, subreddit, url FROM candidates ORDER BY url").fetchall()
    finally:
        conn.close()


def test_split_by_subreddit_keeps_shared_threads_together(tmp_path: Path):
    job = load_job(write_job(tmp_path, [
        {"name": "miku", "sources": [{"kind": "subreddit_posts", "subreddit": "Nakano_Miku"},
                                     {"kind": "comment_links", "subreddit": "anime", "query": "Ep"}]},
        {"name": "nino", "sources": [{"kind": "comment_links", "subreddit": "anime", "query": "Ep"}]},
    ]))
    parts = {part.labels[0].sources[0].subreddit: part for part in split_by_subreddit(job)}
    assert set(parts) == {"Nakano_Miku", "anime"}
    assert [label.name for label in parts["anime"].labels] == ["miku", "nino"]  # one read of each thread
    assert [label.name for label in parts["Nakano_Miku"].labels] == ["miku"]


def test_scrape_retries_a_transient_failure_and_counts_what_every_attempt_found(
        tmp_path: Path, fake_reddit: FakeReddit, quick: Settings):
    for k in range(3):
        fake_reddit.add_post("Nakano_Miku", f"art {k}", url=f"https://i.redd.it/m{k}.jpeg")
        fake_reddit.add_post("NakanoNino", f"art {k}", url=f"https://i.redd.it/n{k}.jpeg")
    # 503 on every try prawcore makes itself (3): the first attempt of r/NakanoNino's task fails
    fake_reddit.inject(r"/r/NakanoNino/new", 503, times=3)
    job_file = write_job(tmp_path, [
        {"name": "miku", "sources": [{"kind": "subreddit_posts", "subreddit": "Nakano_Miku"}]},
        {"name": "nino", "sources": [{"kind": "subreddit_posts", "subreddit": "NakanoNino"},
                                     {"kind": "subreddit_posts", "subreddit": "NoSuchSub"}]},
    ])
    with using_settings(quick):
        summary = scrape_flow(str(job_file))
    by_source = {(s.label, s.subreddit): s for s in summary.sources}
    assert by_source["nino", "NakanoNino"].new_candidates == 3 and by_source["nino", "NakanoNino"].error is None
    assert by_source["miku", "Nakano_Miku"].new_candidates == 3
    assert summary.new_candidates == 6 == len(candidates(quick))
    assert len(fake_reddit.requests_to(r"/r/NakanoNino/new")) == 4  # 3 failed (one attempt), then the retry
    # a subreddit that does not exist is not transient: reported, never retried
    assert "not found" in by_source["nino", "NoSuchSub"].error
    assert len(fake_reddit.requests_to(r"/r/NoSuchSub/")) == 1


def test_download_retries_failed_urls_and_the_summary_counts_both_attempts(
        tmp_path: Path, fake_reddit: FakeReddit, quick: Settings):
    with ImageHost() as host:
        urls = [host.add(f"/ok{k}.png", synthetic_character(k, k)) for k in range(3)]
        urls.append(host.add("/flaky.png", Route(body=synthetic_character(9, 9), content_type="image/png",
                                                 fail_times=1, fail_status=503)))
        urls.append(host.add("/gone.png", Route(status=404)))
        for url in urls:
            fake_reddit.add_post("Nakano_Miku", "art", url=url)
        job_file = write_job(tmp_path, [{"name": "miku", "sources": [
            {"kind": "subreddit_posts", "subreddit": "Nakano_Miku"}]}])
        one_try = quick.model_copy(update={"download_max_attempts": 1})  # the flaky URL fails its first pass
        with using_settings(one_try):
            scrape_flow(str(job_file))
            summary = download_flow(str(job_file))
        assert summary.by_status["downloaded"] == 4 and summary.by_status["not_found"] == 1
        assert summary.by_status["failed"] == 0 and not summary.failed
        assert host.hits["/flaky.png"] == 2 and host.hits["/gone.png"] == 1  # a 404 is final: asked once


def seed_crops(fake: FakeReddit, count: int) -> None:
    for k in range(count):
        url = fake.add_image(f"/i/c{k}.png", synthetic_character(k % 3, k), "image/png")
        fake.add_post("Nakano_Miku", f"art {k}", url=url)


def faces_rows(settings: Settings) -> list[tuple]:
    conn = catalog.connect(settings.catalog_path)
    try:
        return [tuple(row) for row in conn.execute("SELECT sha256, idx, x, y, w, h, hash FROM faces ORDER BY 1, 2")]
    finally:
        conn.close()


def forget_detections(settings: Settings) -> None:
    conn = catalog.connect(settings.catalog_path)
    with catalog.transaction(conn):
        for table in ("dataset", "faces", "detections"):
            conn.execute(f"DELETE FROM {table}")
    conn.close()


def test_a_crash_between_detection_and_recording_reuses_the_cached_batches(
        tmp_path: Path, fake_reddit: FakeReddit, quick: Settings):
    seed_crops(fake_reddit, 6)
    job_file = write_job(tmp_path, [{"name": "miku", "sources": [
        {"kind": "subreddit_posts", "subreddit": "Nakano_Miku"}]}], faces="crops_unchecked")
    local = quick.model_copy(update={"prepare_workers": 1, "prepare_batch_size": 4})
    with using_settings(local):
        scrape_flow(str(job_file))
        download_flow(str(job_file))
        first = prepare_flow_for(local)(str(job_file))
    assert first.processed == 6
    before = faces_rows(local)
    crops = sorted((local.data_dir / "faces").rglob("*.png"))
    written = {path: path.stat().st_mtime_ns for path in crops}
    forget_detections(local)  # as if the run died after detecting, before recording
    with using_settings(local):
        again = prepare_flow_for(local)(str(job_file))
    assert again.processed == 6 and faces_rows(local) == before
    assert {path: path.stat().st_mtime_ns for path in crops} == written, "a cached batch wrote its crops again"

    for path in crops:  # the crops are gone too: the cache must not hand back paths to missing files
        path.unlink()
    forget_detections(local)
    with using_settings(local):
        prepare_flow_for(local)(str(job_file))
    assert all(path.exists() for path in crops)


@pytest.mark.slow
def test_dask_task_runner_gives_what_the_local_runner_gives(tmp_path: Path, fake_reddit: FakeReddit,
                                                            quick: Settings):
    seed_crops(fake_reddit, 8)
    job_file = write_job(tmp_path, [{"name": "miku", "sources": [
        {"kind": "subreddit_posts", "subreddit": "Nakano_Miku"}]}], faces="crops_unchecked")
    results = {}
    for runner in ("local", "dask"):
        # local: three batches through one shared pool of 2 processes; dask: batches over 2 worker processes
        cfg = quick.model_copy(update={"data_dir": tmp_path / runner, "task_runner": runner, "dask_workers": 2,
                                       "prepare_batch_size": 3, "prepare_workers": 2})
        with using_settings(cfg):
            scrape_flow(str(job_file))
            download_flow(str(job_file))
            summary = prepare_flow_for(cfg)(str(job_file))
        assert summary.processed == 8 and summary.faces_found == 8
        results[runner] = [row[:1] + row[2:] for row in faces_rows(cfg)]
    assert results["dask"] == results["local"]


@pytest.mark.slow
def test_summaries_of_retried_tasks_come_back_from_dask_workers(tmp_path: Path, fake_reddit: FakeReddit,
                                                               quick: Settings):
    """The attempts of a retried task run in other processes on Dask: their summary comes back as the task's value
    (it used to travel through a process-global, which left it empty there)."""
    from flows.runners import task_runner

    for k in range(3):
        fake_reddit.add_post("Nakano_Miku", f"art {k}", url=f"https://i.redd.it/m{k}.jpeg")
        fake_reddit.add_post("NakanoNino", f"art {k}", url=f"https://i.redd.it/n{k}.jpeg")
    fake_reddit.inject(r"/r/NakanoNino/new", 503, times=3)  # the first attempt of r/NakanoNino's task fails
    job_file = write_job(tmp_path, [
        {"name": "miku", "sources": [{"kind": "subreddit_posts", "subreddit": "Nakano_Miku"}]},
        {"name": "nino", "sources": [{"kind": "subreddit_posts", "subreddit": "NakanoNino"}]},
    ])
    cfg = quick.model_copy(update={"task_runner": "dask", "dask_workers": 2})
    with using_settings(cfg):
        summary = scrape_flow.with_options(task_runner=task_runner(cfg))(str(job_file))
    by_source = {(s.label, s.subreddit): s for s in summary.sources}
    assert summary.new_candidates == 6 == len(candidates(cfg))
    assert by_source["nino", "NakanoNino"].new_candidates == 3 and by_source["nino", "NakanoNino"].error is None
    assert len(fake_reddit.requests_to(r"/r/NakanoNino/new")) == 4  # two attempts, both counted
