"""`yotsuba review` as a user starts it: one clear line when it cannot serve."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.reviewing import YOTSUBA

pytestmark = pytest.mark.integration
JOB = "name: t\nlabels:\n  - name: miku\n    sources: [{kind: subreddit_posts, subreddit: Nakano_Miku}]\n"


def review(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    job = tmp_path / "job.yaml"
    job.write_text(JOB)
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOTSUBA_")}
    env["YOTSUBA_DATA_DIR"] = str(tmp_path / "data")
    return subprocess.run([str(YOTSUBA), "review", str(job), *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=60)


def test_review_without_a_catalog_says_what_to_run_first(tmp_path: Path):
    result = review(tmp_path)
    assert result.returncode == 1
    assert "no catalog" in result.stderr and "prepare" in result.stderr and "Traceback" not in result.stderr


def test_review_on_a_taken_port_says_so(tmp_path: Path):
    from tasks import catalog

    catalog.connect(tmp_path / "data" / "catalog.sqlite").close()
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = review(tmp_path, "--port", str(port))
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "--port" in result.stderr
    assert "Traceback" not in result.stderr
