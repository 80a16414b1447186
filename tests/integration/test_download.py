"""The downloader against a fault-injecting image host on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fakes.imagehost import ImageHost, Route
from flows.settings import Settings
from tasks import catalog
from tasks.catalog import Candidate
from tasks.download import download_job
from tasks.store import ImageStore
from tests.imaging import decompression_bomb_png, image_bytes, imgur_removed_png

pytestmark = pytest.mark.integration

SHIPPED = Settings(_env_file=None).download_config()  # the defaults that ship: the Settings fields
FAST = dataclasses.replace(SHIPPED, concurrency=8, read_timeout=1.0, connect_timeout=2.0, max_attempts=3,
                           backoff_base=0.01, max_backoff=2.0, allow_private_hosts=True)


@pytest.fixture
def host():
    with ImageHost() as image_host:
        yield image_host


@pytest.fixture
def conn(tmp_path: Path):
    connection = catalog.connect(tmp_path / "data" / "catalog.sqlite")
    yield connection
    connection.close()


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "data")


def add_candidates(conn: sqlite3.Connection, urls: list[str], label: str = "miku", job: str = "t") -> None:
    with catalog.transaction(conn):
        catalog.insert_candidates(conn, [
            Candidate(job=job, label=label, source_kind="subreddit_posts", source_key="k", subreddit="s",
                      post_id=f"p{i}", url=url) for i, url in enumerate(urls)])


def status_of(conn: sqlite3.Connection, url: str) -> sqlite3.Row:
    return conn.execute(
        "SELECT d.* FROM downloads d JOIN candidates c ON c.id = d.candidate_id WHERE c.url = ? ORDER BY c.id",
        (url,)).fetchone()


def test_downloads_into_content_addressed_store(host: ImageHost, conn, store: ImageStore):
    jpeg, png = image_bytes("JPEG", seed=1), image_bytes("PNG", seed=2)
    urls = [host.add("/a.jpg", jpeg), host.add("/b.png", png), host.add("/same-as-a.jpg", jpeg)]
    add_candidates(conn, urls)
    add_candidates(conn, [urls[0]], label="nino")  # the same URL found for another label

    summary = download_job(conn, store, "t", FAST)

    assert summary.by_status == {"downloaded": 2, "duplicate": 1, "already_had": 1}
    assert host.hits["/a.jpg"] == 1  # one request however many candidates share the URL
    files = store.files()
    assert len(files) == 2
    for path in files:
        assert path.name == f"{hashlib.sha256(path.read_bytes()).hexdigest()}{path.suffix}"
    row, twin = status_of(conn, urls[0]), status_of(conn, urls[2])
    assert {row["status"], twin["status"]} == {"downloaded", "duplicate"}  # whichever landed first stored it
    assert row["sha256"] == twin["sha256"] and row["http_status"] == 200
    image = conn.execute("SELECT * FROM images WHERE sha256 = ?", (row["sha256"],)).fetchone()
    assert (image["width"], image["height"], image["format"], image["ext"]) == (64, 48, "JPEG", "jpg")
    assert image["bytes"] == len(jpeg)
    assert store.path_for(row["sha256"], "jpg").read_bytes() == jpeg


def test_rerun_fetches_nothing_again(host: ImageHost, conn, store: ImageStore):
    add_candidates(conn, [host.add("/a.jpg", image_bytes(seed=1))])
    download_job(conn, store, "t", FAST)
    again = download_job(conn, store, "t", FAST)
    assert again.urls == 0 and sum(again.by_status.values()) == 0
    assert host.hits["/a.jpg"] == 1


def test_429_with_retry_after_is_honoured(host: ImageHost, conn, store: ImageStore):
    url = host.add("/limited.jpg", Route(body=image_bytes(seed=4), fail_times=1, fail_status=429, retry_after="1"))
    add_candidates(conn, [url])
    started = time.monotonic()
    summary = download_job(conn, store, "t", FAST)
    assert summary.by_status["downloaded"] == 1
    assert time.monotonic() - started >= 1.0  # it waited what the server asked
    assert host.hits["/limited.jpg"] == 2 and status_of(conn, url)["attempts"] == 2


def test_flapping_503_then_success(host: ImageHost, conn, store: ImageStore):
    url = host.add("/flaps.png", Route(body=image_bytes("PNG", seed=5), fail_times=2, fail_status=503))
    add_candidates(conn, [url])
    assert download_job(conn, store, "t", FAST).by_status["downloaded"] == 1
    assert host.hits["/flaps.png"] == 3


def test_persistent_503_fails_and_is_retried_next_run(host: ImageHost, conn, store: ImageStore):
    route = Route(body=image_bytes(seed=6), fail_times=3, fail_status=503)
    url = host.add("/down.jpg", route)
    add_candidates(conn, [url])
    first = download_job(conn, store, "t", FAST)
    assert first.by_status == {"failed": 1} and first.failed == {"http_503": 1}
    second = download_job(conn, store, "t", FAST)
    assert second.by_status == {"downloaded": 1}
    assert status_of(conn, url)["attempts"] == 4


def test_connection_reset_mid_body_is_retried(host: ImageHost, conn, store: ImageStore):
    data = image_bytes("PNG", size=(300, 300), seed=7)
    url = host.add("/reset.png", Route(body=data, content_type="image/png", reset_after=len(data) // 3,
                                       reset_times=1))
    add_candidates(conn, [url])
    summary = download_job(conn, store, "t", FAST)
    assert summary.by_status == {"downloaded": 1}
    assert host.hits["/reset.png"] == 2
    assert store.files()[0].read_bytes() == data


def test_body_slower_than_read_timeout_is_retried_then_fails(host: ImageHost, conn, store: ImageStore):
    data = image_bytes(seed=8)
    once = host.add("/slow-once.jpg", Route(body=data, stall_seconds=2.0, stall_times=1))
    always = host.add("/slow.jpg", Route(body=image_bytes(seed=9), stall_seconds=2.0))
    add_candidates(conn, [once, always])
    summary = download_job(conn, store, "t", FAST)
    assert status_of(conn, once)["status"] == "downloaded"
    assert status_of(conn, always)["status"] == "failed" and status_of(conn, always)["reason"] == "timeout"
    assert summary.failed == {"timeout": 1}


@pytest.mark.parametrize(
    ("route", "status", "reason"),
    [
        (Route(body=b"<!DOCTYPE html><html><body>Image not available</body></html>", content_type="text/html"),
         "rejected", "not_an_image"),
        (Route(body=image_bytes("JPEG", size=(200, 200), seed=10)[:1500]), "rejected", "truncated"),
        (Route(body=b""), "rejected", "empty"),
        (Route(body=b"x" * 100, declared_length=50 * 1024 * 1024), "rejected", "too_large"),
        (Route(body=decompression_bomb_png(), content_type="image/png"), "rejected", "decompression_bomb"),
        (Route(status=404), "not_found", None),
        (Route(status=410), "not_found", None),
        (Route(status=403), "rejected", "forbidden"),
    ],
    ids=["html-200", "truncated-jpeg", "zero-bytes", "content-length-over-cap", "decompression-bomb", "404",
         "410", "403"],
)
def test_bad_answers_are_rejected_and_nothing_is_stored(host: ImageHost, conn, store: ImageStore, route: Route,
                                                        status: str, reason: str | None):
    url = host.add("/bad", route)
    add_candidates(conn, [url])
    summary = download_job(conn, store, "t", FAST)
    row = status_of(conn, url)
    assert (row["status"], row["reason"]) == (status, reason)
    assert row["sha256"] is None and store.files() == []
    assert host.hits["/bad"] == 1  # none of these is retried
    if status == "rejected":
        assert summary.rejected == {reason: 1}


def test_streaming_cap_without_content_length(host: ImageHost, conn, store: ImageStore):
    big = image_bytes("PNG", size=(400, 400), seed=11)
    url = host.add("/big.png", Route(body=big, chunked=True))
    add_candidates(conn, [url])
    small = host.add("/small.png", Route(body=image_bytes("PNG", seed=15), chunked=True))
    add_candidates(conn, [small])
    download_job(conn, store, "t", dataclasses.replace(FAST, max_bytes=len(big) // 2))
    assert status_of(conn, url)["reason"] == "too_large"
    assert status_of(conn, small)["status"] == "downloaded"


def test_redirect_to_imgur_removed_placeholder_counts_as_removed(host: ImageHost, conn, store: ImageStore):
    host.add("/removed.png", Route(body=imgur_removed_png(), content_type="image/png"))
    url = host.add("/deleted.jpg", Route(redirect_to="/removed.png"))
    add_candidates(conn, [url])
    summary = download_job(conn, store, "t", FAST)
    assert summary.by_status == {"removed": 1}
    assert store.files() == [] and host.hits["/removed.png"] == 0


def test_redirects_are_followed_up_to_five(host: ImageHost, conn, store: ImageStore):
    host.add("/final.jpg", image_bytes(seed=12))
    for hop in range(5):
        host.add(f"/hop{hop}", Route(redirect_to=f"/hop{hop + 1}" if hop < 4 else "/final.jpg"))
    ok = f"{host.url}/hop0"
    loop = host.add("/loop-a", Route(redirect_to="/loop-b"))
    host.add("/loop-b", Route(redirect_to="/loop-a"))
    add_candidates(conn, [ok, loop])
    download_job(conn, store, "t", FAST)
    assert status_of(conn, ok)["status"] == "downloaded" and status_of(conn, ok)["final_url"].endswith("/final.jpg")
    assert (status_of(conn, loop)["status"], status_of(conn, loop)["reason"]) == ("rejected", "too_many_redirects")
    assert host.hits["/loop-a"] + host.hits["/loop-b"] == 6


def test_private_addresses_are_refused_unless_allowed(host: ImageHost, conn, store: ImageStore):
    data = image_bytes(seed=13)
    literal = host.add("/private.jpg", data)
    by_name = literal.replace("127.0.0.1", "localhost")
    add_candidates(conn, [literal, by_name, "ftp://example.org/x.jpg"])
    strict = dataclasses.replace(FAST, allow_private_hosts=False)
    summary = download_job(conn, store, "t", strict)
    assert summary.rejected == {"private_host": 2, "bad_scheme": 1}
    assert host.hits["/private.jpg"] == 0  # refused before any connection
    assert status_of(conn, by_name)["reason"] == "private_host"


def test_credentials_in_urls_never_reach_the_log(host: ImageHost, conn, store: ImageStore,
                                                 caplog: pytest.LogCaptureFixture):
    host.add("/x.jpg", Route(body=image_bytes(seed=14), fail_times=10, fail_status=503))
    url = f"http://user:hunter2@127.0.0.1:{host.port}/x.jpg"
    add_candidates(conn, [url])
    with caplog.at_level("DEBUG"):
        download_job(conn, store, "t", FAST)
    assert "hunter2" not in caplog.text
    assert "giving up" in caplog.text


def test_credentials_in_urls_are_never_stored(host: ImageHost, conn, store: ImageStore, tmp_path: Path):
    """`user:password@` of a link is stripped before the catalog stores it: the candidate's URL and permalink,
    the final URL after a redirect, the error text (issue 14, item 13)."""
    final = host.add("/final.jpg", image_bytes(seed=15))
    host.add("/moved.jpg", Route(redirect_to=final.replace("http://", "http://carol:hunter3@")))
    moved = f"http://alice:hunter2@127.0.0.1:{host.port}/moved.jpg"
    failing = host.add("/down.jpg", Route(body=b"", fail_times=10, fail_status=503)).replace(
        "http://", "http://dave:hunter4@")
    with catalog.transaction(conn):
        catalog.insert_candidates(conn, [
            Candidate(job="t", label="miku", source_kind="comment_links", source_key="k", subreddit="s", post_id="p",
                      url=url, comment_id=f"c{i}", permalink=f"https://erin:hunter5@www.reddit.com/r/s/comments/p/{i}")
            for i, url in enumerate([moved, failing])])
    summary = download_job(conn, store, "t", FAST)
    assert summary.by_status == {"downloaded": 1, "failed": 1}
    assert host.hits["/moved.jpg"] == 1 and host.hits["/final.jpg"] == 1  # fetched without the password
    row = conn.execute("SELECT c.url, c.permalink, d.final_url FROM candidates c JOIN downloads d "
                       "ON d.candidate_id = c.id WHERE d.status = 'downloaded'").fetchone()
    assert tuple(row) == (f"http://127.0.0.1:{host.port}/moved.jpg",
                          "https://www.reddit.com/r/s/comments/p/0", final)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    stored = b"".join(path.read_bytes() for path in (tmp_path / "data").glob("catalog.sqlite*"))
    assert b"hunter" not in stored and b"alice" not in stored and b"erin" not in stored


@pytest.mark.slow
def test_sigkill_mid_download_then_resume(host: ImageHost, tmp_path: Path):
    """Kill a real `yotsuba download` with SIGKILL half-way; the rerun fetches only the rest."""
    host.latency = 0.15
    images = {f"/img/{i}.jpg": image_bytes("JPEG", size=(120, 120), seed=100 + i) for i in range(80)}
    urls = [host.add(path, data) for path, data in images.items()]
    data_dir = tmp_path / "data"
    conn = catalog.connect(data_dir / "catalog.sqlite")
    add_candidates(conn, urls, job="killjob")
    job_file = tmp_path / "job.yaml"
    job_file.write_text("name: killjob\nlabels:\n  - name: miku\n"
                        "    sources: [{kind: subreddit_posts, subreddit: x_y}]\n")
    env = {**os.environ, "YOTSUBA_DATA_DIR": str(data_dir), "YOTSUBA_ALLOW_PRIVATE_HOSTS": "true",
           "YOTSUBA_DOWNLOAD_CONCURRENCY": "4"}
    yotsuba = [str(Path(sys.executable).parent / "yotsuba"), "download", str(job_file), "--json"]

    # its own process group: the kill takes the command and the Prefect API it started, as a crash would
    process = subprocess.Popen(yotsuba, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    deadline = time.monotonic() + 60
    while conn.execute("SELECT COUNT(*) FROM downloads").fetchone()[0] < 20:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)
    done_before = {row[0] for row in conn.execute(
        "SELECT c.url FROM downloads d JOIN candidates c ON c.id = d.candidate_id WHERE d.status = 'downloaded'")}
    assert 20 <= len(done_before) < 80

    store = ImageStore(data_dir)
    for path in store.files():  # the store holds only whole files, each named by its content
        assert path.stem == hashlib.sha256(path.read_bytes()).hexdigest()
    hits_before = dict(host.hits)

    rerun = subprocess.run(yotsuba, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert tuple(conn.execute("SELECT COUNT(*), COUNT(DISTINCT candidate_id) FROM downloads").fetchone()) == (80, 80)
    assert conn.execute("SELECT COUNT(*) FROM downloads WHERE status = 'downloaded'").fetchone()[0] == 80
    for url in done_before:  # nothing completed is fetched again
        path = "/" + url.split("/", 3)[3]
        assert host.hits[path] == hits_before[path] == 1
    assert len(store.files()) == 80
    assert not list((data_dir / "tmp").glob("*.part"))
    conn.close()


# ---------------------------------------------------------------- deadlines, bad hosts, limits (issue 14)


def test_a_dripping_host_meets_the_total_deadline(host: ImageHost, conn, store: ImageStore):
    """One byte every 20 ms never trips the 1 s read timeout; 6 KB would take 2 minutes. The deadline (2 s
    here, every attempt included) ends it, and the URL stays `failed`: retried on the next run."""
    dripping = host.add("/drip.jpg", Route(body=image_bytes(seed=40, size=(160, 120)), drip_seconds=0.02))
    fine = host.add("/fine.jpg", image_bytes(seed=41))
    add_candidates(conn, [dripping, fine])
    started = time.monotonic()
    summary = download_job(conn, store, "t", dataclasses.replace(FAST, total_timeout=2.0))
    elapsed = time.monotonic() - started
    assert len(image_bytes(seed=40, size=(160, 120))) > 2000
    assert summary.by_status == {"downloaded": 1, "failed": 1} and summary.failed == {"deadline": 1}
    row = status_of(conn, dripping)
    assert (row["status"], row["reason"], row["attempts"]) == ("failed", "deadline", 1)
    assert row["error"] == "not done within 2 s, all attempts included"
    assert 2.0 <= elapsed < 8.0  # without the deadline: 40 s and more


def test_the_deadline_covers_retries_and_back_offs(host: ImageHost, conn, store: ImageStore):
    # every answer a 503 that asks for a 1 s wait: 3 attempts would take 2 s of waiting alone
    flaky = host.add("/flaky.jpg", Route(body=image_bytes(seed=42), fail_times=100, retry_after="1"))
    add_candidates(conn, [flaky])
    started = time.monotonic()
    download_job(conn, store, "t", dataclasses.replace(FAST, total_timeout=1.5))
    assert time.monotonic() - started < 5.0  # without it: 3 attempts and 2 waits of 1 s
    row = status_of(conn, flaky)
    assert (row["status"], row["reason"], row["attempts"]) == ("failed", "deadline", 2)


def test_invalid_numeric_hosts_are_a_final_rejection(host: ImageHost, conn, store: ImageStore):
    """`0`, `127.1`, `2130706433` or `999.1.1.1` are not addresses (and not names): rejected at once, never
    retried, even where private hosts are allowed (where `0` would reach 0.0.0.0)."""
    host.add("/x.jpg", image_bytes(seed=43))
    port = host.port
    bad = [f"http://0:{port}/x.jpg", f"http://127.1:{port}/x.jpg", f"http://2130706433:{port}/x.jpg",
           "http://999.1.1.1/x.jpg", f"http://0x7f.0.0.1:{port}/x.jpg", f"http://0.0.0.0:{port}/x.jpg",
           f"http://[::]:{port}/x.jpg"]
    add_candidates(conn, bad)
    summary = download_job(conn, store, "t", FAST)
    assert summary.by_status == {"rejected": len(bad)} and summary.rejected == {"bad_url": len(bad)}
    assert host.hits["/x.jpg"] == 0
    for url in bad:
        row = status_of(conn, url)
        assert (row["status"], row["attempts"]) == ("rejected", 1), url
    assert download_job(conn, store, "t", FAST).urls == 0  # a verdict: not tried again


@pytest.mark.parametrize(("per_host", "expected_total"), [(None, None), (3, 6)], ids=["shipped", "per-host-3"])
def test_concurrency_and_per_host_limits_are_what_the_settings_say(tmp_path: Path, per_host, expected_total):
    """Two hosts (127.0.0.1 and 127.0.0.2) answering after 150 ms; the host records the most requests in
    flight at once, overall and per host. With the shipped settings (16 in all, 8 per host) both limits are
    reached and never passed."""
    config = dataclasses.replace(SHIPPED, allow_private_hosts=True)
    if per_host is not None:
        config = dataclasses.replace(config, per_host=per_host)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for variable, value in (("CONCURRENCY", SHIPPED.concurrency), ("PER_HOST", SHIPPED.per_host)):
        assert f"| `YOTSUBA_DOWNLOAD_{variable}` | {value} |" in readme  # one default, and README says it
    with ImageHost(latency=0.15, addresses=("127.0.0.1", "127.0.0.2")) as two_hosts:
        urls = []
        for i in range(48):
            path = f"/c{i}.jpg"
            two_hosts.routes[path] = Route(body=image_bytes(seed=200 + i, size=(32, 32)))
            urls.append(two_hosts.url_on(("127.0.0.1", "127.0.0.2")[i % 2]) + path)
        conn = catalog.connect(tmp_path / "data" / "catalog.sqlite")
        add_candidates(conn, urls)
        summary = download_job(conn, ImageStore(tmp_path / "data"), "t", config)
        conn.close()
    assert summary.by_status == {"downloaded": 48}
    assert dict(two_hosts.max_in_flight_by_host) == {"127.0.0.1": config.per_host, "127.0.0.2": config.per_host}
    assert two_hosts.max_in_flight == (expected_total or config.concurrency)
