"""When the MLflow or Prefect server the settings name is down, a run stops at once with a message that
says which, where and what to do, and what is already stored stays as it was."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from fakes.reddit import FakeReddit

pytestmark = pytest.mark.integration
YOTSUBA = Path(sys.executable).parent / "yotsuba"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("YOTSUBA_", "MLFLOW_"))}
    full_env.pop("PREFECT_API_URL", None)
    full_env.update(env)
    return subprocess.run([str(YOTSUBA), *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=300)


@pytest.fixture
def job_file(tmp_path: Path, fake_reddit: FakeReddit) -> Path:
    fake_reddit.add_post("Nakano_Miku", "art", url="https://i.redd.it/a.jpeg")
    path = tmp_path / "job.yaml"
    path.write_text("name: t\nlabels:\n  - name: miku\n"
                    "    sources: [{kind: subreddit_posts, subreddit: Nakano_Miku}]\n")
    return path


def snapshot(data_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(data_dir)): p.read_bytes() for p in sorted(data_dir.rglob("*"))
            if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


def test_mlflow_down_stops_the_nightly_run_before_scraping_and_keeps_what_is_stored(
        tmp_path: Path, fake_reddit: FakeReddit, job_file: Path, yotsuba_env: dict[str, str]):
    first = run_cli("scrape", str(job_file), env=yotsuba_env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    data_dir = Path(yotsuba_env["YOTSUBA_DATA_DIR"])
    before = snapshot(data_dir)
    listing_requests = len(fake_reddit.requests_to(r"/r/Nakano_Miku/"))
    fake_reddit.add_post("Nakano_Miku", "new art", url="https://i.redd.it/b.jpeg")

    port = closed_port()
    down = {**yotsuba_env, "MLFLOW_TRACKING_URI": f"http://alice:hunter2@127.0.0.1:{port}"}
    result = run_cli("run", str(job_file), env=down, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    assert f"MLflow tracking server at http://127.0.0.1:{port} cannot be reached" in message
    assert "MLFLOW_TRACKING_URI" in message and "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    assert len(fake_reddit.requests_to(r"/r/Nakano_Miku/")) == listing_requests, "it scraped before checking"
    assert snapshot(data_dir) == before
    conn = sqlite3.connect(data_dir / "catalog.sqlite")
    assert conn.execute("SELECT COUNT(*) FROM candidates").fetchone()[0] == 1
    conn.close()


def test_prefect_server_down_stops_every_flow_command_with_a_clear_message(
        tmp_path: Path, fake_reddit: FakeReddit, job_file: Path, yotsuba_env: dict[str, str]):
    port = closed_port()
    down = {**yotsuba_env, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}
    for command in ("run", "scrape", "prepare"):
        result = run_cli(command, str(job_file), env=down, cwd=tmp_path)
        assert result.returncode == 1, (command, result.stdout + result.stderr)
        message = " ".join(result.stderr.split())
        assert f"Prefect server at http://127.0.0.1:{port}/api (PREFECT_API_URL) cannot be reached" in message
        assert "Traceback" not in result.stderr
    assert not fake_reddit.requests_to(r"/r/"), "a command reached Reddit with no Prefect server to report to"
    assert not Path(yotsuba_env["YOTSUBA_DATA_DIR"]).exists()


def test_a_local_tracking_store_needs_no_server():
    from flows.preflight import check_mlflow

    check_mlflow("sqlite:////nonexistent/dir/mlflow.db")  # created on first use: nothing to check
    check_mlflow("file:///tmp/mlruns")
