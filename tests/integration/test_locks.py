"""One run of a job at a time (issue 14, item 7): a lock per job under the data directory, tried with real
processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fakes.imagehost import ImageHost
from tasks import catalog
from tasks.catalog import Candidate
from tasks.locks import JobLocked, job_lock, lock_path, read_holder
from tests.imaging import image_bytes

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
YOTSUBA = Path(sys.executable).parent / "yotsuba"

HOLD = """
import sys, time
from pathlib import Path
from tasks.locks import job_lock
with job_lock(Path(sys.argv[1]), sys.argv[2]):
    print("held", flush=True)
    time.sleep(600)
"""


def hold_lock(data_dir: Path, job: str) -> subprocess.Popen:
    """Another process that takes the job's lock and keeps it."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(data_dir), job], stdout=subprocess.PIPE, text=True,
                               cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def test_a_second_process_is_refused_naming_the_first_and_a_dead_holder_is_taken_over(tmp_path: Path):
    holder = hold_lock(tmp_path, "miku")
    try:
        with pytest.raises(JobLocked) as refused, job_lock(tmp_path, "miku"):
            pass
        message = str(refused.value)
        first = f"another run of job miku is in progress (pid {holder.pid} on {socket.gethostname()}, started "
        assert message.startswith(first)
        assert "command: -c " in message and str(lock_path(tmp_path, "miku").resolve()) in message
        with job_lock(tmp_path, "nino"):  # another job is not held up
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    assert read_holder(lock_path(tmp_path, "miku"))["pid"] == holder.pid  # the dead run's name is still there
    with job_lock(tmp_path, "miku"):  # ...but its lock died with it
        assert read_holder(lock_path(tmp_path, "miku"))["pid"] == os.getpid()
        with job_lock(tmp_path, "miku"):  # the same run takes it again (a flow and its subflows)
            pass
        assert read_holder(lock_path(tmp_path, "miku"))["pid"] == os.getpid()  # still held after the inner block
    assert read_holder(lock_path(tmp_path, "miku")) == {}  # released: no holder to name


@pytest.mark.slow
def test_two_downloads_of_one_job_fetch_each_url_once(tmp_path: Path):
    """Two real `yotsuba download` of the same job at once: the second stops with one line naming the first
    (which took over a lock left by a killed run), and every URL is fetched once."""
    data_dir = tmp_path / "data"
    job_file = tmp_path / "job.yaml"
    job_file.write_text("name: t\nlabels:\n  - name: miku\n    sources: [{kind: subreddit_posts, subreddit: x_y}]\n")
    stale = hold_lock(data_dir, "t")
    stale.send_signal(signal.SIGKILL)
    stale.wait(10)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("YOTSUBA_")}, "YOTSUBA_DATA_DIR": str(data_dir),
           "YOTSUBA_ALLOW_PRIVATE_HOSTS": "true", "YOTSUBA_DOWNLOAD_CONCURRENCY": "2",
           "YOTSUBA_DOWNLOAD_READ_TIMEOUT": "300"}
    with ImageHost() as host:
        urls = [host.add(f"/{i}.jpg", image_bytes(seed=300 + i)) for i in range(24)]
        host.paused = True  # the first run's requests wait until the second has come and gone
        conn = catalog.connect(data_dir / "catalog.sqlite")
        with catalog.transaction(conn):
            catalog.insert_candidates(conn, [
                Candidate(job="t", label="miku", source_kind="subreddit_posts", source_key="k", subreddit="x_y",
                          post_id=f"p{i}", url=url) for i, url in enumerate(urls)])
        first = subprocess.Popen([str(YOTSUBA), "download", str(job_file), "--json"], env=env, cwd=tmp_path,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while host.in_flight < 1:  # the first is fetching: it holds the lock
            assert time.monotonic() < deadline and first.poll() is None, first.stderr.read() if first.stderr else ""
            time.sleep(0.05)
        second = subprocess.run([str(YOTSUBA), "download", str(job_file), "--json"], env=env, cwd=tmp_path,
                                capture_output=True, text=True, timeout=120)
        host.paused = False
        out, errors = first.communicate(timeout=120)
        conn.close()
    assert first.returncode == 0, errors
    assert json.loads(out)["candidates"]["downloaded"] == 24
    assert second.returncode == 1 and second.stdout == ""
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert lines[0].startswith(f"another run of job t is in progress (pid {first.pid} on {socket.gethostname()}, "
                               "started ")
    assert f"command: yotsuba download {job_file} --json)" in lines[0]
    assert sorted(host.hits.values()) == [1] * 24


def _children(pid: int) -> dict[int, str]:
    """The processes whose parent is `pid`: {pid: command line}."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_prefect_local_api_dies_with_a_sigkilled_cli(tmp_path: Path):
    """SIGKILL the `yotsuba` process alone (not its group: a crash, the OOM killer) in the middle of a run:
    the local Prefect API server it started stops too, instead of running on for good (issue 14, item 12)."""
    data_dir = tmp_path / "data"
    job_file = tmp_path / "job.yaml"
    job_file.write_text("name: t\nlabels:\n  - name: miku\n    sources: [{kind: subreddit_posts, subreddit: x_y}]\n")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("YOTSUBA_", "PREFECT_API_URL"))},
           "YOTSUBA_DATA_DIR": str(data_dir), "YOTSUBA_ALLOW_PRIVATE_HOSTS": "true",
           "YOTSUBA_DOWNLOAD_CONCURRENCY": "1"}
    with ImageHost(latency=0.5) as host:
        urls = [host.add(f"/{i}.jpg", image_bytes(seed=400 + i)) for i in range(40)]
        conn = catalog.connect(data_dir / "catalog.sqlite")
        with catalog.transaction(conn):
            catalog.insert_candidates(conn, [
                Candidate(job="t", label="miku", source_kind="subreddit_posts", source_key="k", subreddit="x_y",
                          post_id=f"p{i}", url=url) for i, url in enumerate(urls)])
        cli = subprocess.Popen([str(YOTSUBA), "download", str(job_file)], env=env, cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        servers: list[int] = []
        try:
            deadline = time.monotonic() + 120
            while conn.execute("SELECT COUNT(*) FROM downloads").fetchone()[0] < 1:  # the flow is running
                assert time.monotonic() < deadline and cli.poll() is None
                time.sleep(0.05)
            servers = [pid for pid, command in _children(cli.pid).items() if "uvicorn" in command]
            assert len(servers) == 1, _children(cli.pid)  # Prefect's local API, started by the CLI
            os.kill(cli.pid, signal.SIGKILL)
            cli.wait(10)
            deadline = time.monotonic() + 15
            while _alive(servers[0]) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not _alive(servers[0]), "the local API outlived the CLI that started it"
        finally:
            conn.close()
            for pid in servers:
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
            if cli.poll() is None:
                cli.kill()
