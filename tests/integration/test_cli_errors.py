"""What a person sees when something goes wrong: one line and an exit code (2: bad input, 1: failed),
through the installed `yotsuba` in a subprocess; `-v` adds the traceback (issue 14, item 14)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from fakes.imagehost import ImageHost, jpeg_bytes
from tasks import catalog
from tasks.catalog import Candidate
from tests.imaging import image_bytes

pytestmark = pytest.mark.integration
YOTSUBA = Path(sys.executable).parent / "yotsuba"
JOB = "name: t\nlabels:\n  - name: miku\n    sources: [{kind: subreddit_posts, subreddit: x_y}]\n"


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, wrap: list[str] | None = None,
            timeout: float = 180) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("YOTSUBA_")}
    full_env.update(env or {})
    return subprocess.run([*(wrap or []), str(YOTSUBA), *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd, timeout=timeout)


def one_line(result: subprocess.CompletedProcess, code: int) -> str:
    """The error as printed: exactly one line on stderr, no traceback, the exit code."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def job(tmp_path: Path) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(JOB)
    return path


def in_own_mount(directory: Path, size: str, read_only: bool = False, copy_from: Path | None = None) -> list[str]:
    """A command prefix that runs in a user and mount namespace where `directory` is a tmpfs of `size`
    (filled from `copy_from`, then remounted read-only if asked): a real full disk or read-only file system
    without root. Skips where the kernel does not allow unprivileged namespaces."""
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no unprivileged mount namespaces here: {probe.stderr.decode().strip()}")
    directory.mkdir(parents=True, exist_ok=True)
    script = f'mount -t tmpfs -o size={size} tmpfs "{directory}"'
    if copy_from is not None:
        script += f' && cp -a "{copy_from}/." "{directory}/"'
    if read_only:
        script += f' && mount -o remount,ro "{directory}"'
    return ["unshare", "-rm", "sh", "-c", script + ' && exec "$@"', "sh"]


# ---------------------------------------------------------------- bad input: exit 2


@pytest.mark.parametrize(
    ("legacy", "expected"),
    [
        pytest.param({"labels": 5}, "labels: a list of label names, got int 5", id="labels-number"),
        pytest.param({"labels": "miku"}, 'labels: a list of label names, got str "miku"', id="labels-string"),
        pytest.param({"labels": ["miku"], "LABEL": None}, "jobs[0].LABEL: a label name (or a list of them), got null",
                     id="label-null"),
    ],
)
def test_legacy_json_job_with_malformed_labels(tmp_path: Path, legacy: dict, expected: str):
    entry = {"TYPE": "subreddit_posts", "SUBREDDIT": "Nakano_Miku", "SEARCH_QUERY": None, "THREAD_FLAIR": None,
             "LABEL": legacy.pop("LABEL", "miku")}
    path = tmp_path / "old.json"
    path.write_text(json.dumps({**legacy, "jobs": [entry]}))
    assert one_line(run_cli("job", "validate", str(path), cwd=tmp_path), 2) == f"{path}: {expected}"


def test_yaml_alias_bomb_job_file(tmp_path: Path):
    levels = "".join(f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True))
    path = tmp_path / "bomb.yaml"
    path.write_text("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + levels)
    line = one_line(run_cli("job", "validate", str(path), cwd=tmp_path, timeout=30), 2)
    assert line.startswith(f"{path}: file: its aliases (*name) expand to more than 100,000 values")


def test_dotenv_that_is_not_utf8(tmp_path: Path, job: Path):
    (tmp_path / ".env").write_bytes(b"YOTSUBA_TRAIN_EPOCHS=3\nYOTSUBA_DATA_DIR=caf\xe9\n")
    line = one_line(run_cli("download", str(job), cwd=tmp_path), 2)
    assert line == ".env: not UTF-8 text (byte 0xe9 on line 2); save it as UTF-8"


def test_unknown_model_uri_one_line_and_traceback_with_v(tmp_path: Path):
    picture = tmp_path / "p.png"
    picture.write_bytes(image_bytes("PNG"))
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    args = ("predict", "--model", "models:/nobody-classifier@champion", str(picture))
    line = one_line(run_cli(*args, cwd=tmp_path, env=env), 2)
    assert line.startswith("cannot load model models:/nobody-classifier@champion")
    assert "nobody-classifier" in line and "not found" in line
    verbose = run_cli("-v", *args, cwd=tmp_path, env=env)
    assert verbose.returncode == 2 and "Traceback (most recent call last)" in verbose.stderr
    assert verbose.stderr.strip().splitlines()[-1] == line


@pytest.mark.parametrize("command", ["predict", "evaluate", "suggest"])
def test_passwords_in_the_tracking_uri_are_not_printed(tmp_path: Path, job: Path, command: str):
    picture = tmp_path / "holdout" / "miku" / "p.png"
    picture.parent.mkdir(parents=True)
    picture.write_bytes(image_bytes("PNG"))
    args = {"predict": ["predict", "--model", "models:/t-classifier@champion", str(picture)],
            "evaluate": ["evaluate", "--model", "models:/t-classifier@champion", str(tmp_path / "holdout")],
            "suggest": ["--data-dir", str(tmp_path / "data"), "suggest", str(job)]}[command]
    # a server that is not there: MLflow's error names the URI it tried
    env = {"MLFLOW_TRACKING_URI": "http://alice:hunter2@127.0.0.1:9/", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
           "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}
    line = one_line(run_cli(*args, cwd=tmp_path, env=env), 2)
    assert line.startswith("cannot load model models:/t-classifier@champion (tracking: http://127.0.0.1:9/)")
    verbose = run_cli("-v", *args, cwd=tmp_path, env=env)  # the traceback too, redacted the same way
    assert verbose.returncode == 2 and "Traceback (most recent call last)" in verbose.stderr
    assert "hunter2" not in verbose.stderr and "alice" not in verbose.stderr


# ---------------------------------------------------------------- failures: exit 1


def test_corrupt_catalog(tmp_path: Path, job: Path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "catalog.sqlite").write_bytes(b"this is not SQLite, " * 100)
    line = one_line(run_cli("--data-dir", str(data), "suggest", str(job), cwd=tmp_path), 1)
    assert line.startswith(f"the catalog {data / 'catalog.sqlite'} is damaged (file is not a database)")


def test_catalog_from_a_newer_yotsuba(tmp_path: Path, job: Path):
    data = tmp_path / "data"
    conn = catalog.connect(data / "catalog.sqlite")
    conn.execute(f"PRAGMA user_version = {len(catalog.MIGRATIONS) + 3}")
    conn.close()
    line = one_line(run_cli("--data-dir", str(data), "suggest", str(job), cwd=tmp_path), 1)
    assert line == (f"the catalog's schema version {len(catalog.MIGRATIONS) + 3} is newer than this yotsuba's "
                    f"({len(catalog.MIGRATIONS)}): upgrade yotsuba")


def test_read_only_data_directory(tmp_path: Path, job: Path):
    data = tmp_path / "data"
    wrap = in_own_mount(data, "1m", read_only=True)
    line = one_line(run_cli("--data-dir", str(data), "suggest", str(job), cwd=tmp_path, wrap=wrap), 1)
    assert line.startswith(f"the catalog {data / 'catalog.sqlite'} cannot be written")
    assert "is the data directory writable?" in line


def test_empty_dataset(tmp_path: Path, job: Path):
    line = one_line(run_cli("--data-dir", str(tmp_path / "data"), "train", str(job), cwd=tmp_path), 1)
    assert line == ("the job t has no labelled faces to train on yet: run scrape, download and prepare first "
                    "(yotsuba run does all three)")


@pytest.mark.slow
def test_disk_full_while_downloading(tmp_path: Path, job: Path):
    """A real full disk: the data directory is a 2 MB tmpfs, the images 12 x ~300 KB."""
    prepared = tmp_path / "prepared"
    with ImageHost() as host:
        urls = [host.add(f"/{i}.jpg", jpeg_bytes(i, size=300_000)) for i in range(12)]
        conn = catalog.connect(prepared / "catalog.sqlite")
        with catalog.transaction(conn):
            catalog.insert_candidates(conn, [
                Candidate(job="t", label="miku", source_kind="subreddit_posts", source_key="k", subreddit="x_y",
                          post_id=f"p{i}", url=url) for i, url in enumerate(urls)])
        conn.close()
        data = tmp_path / "data"
        wrap = in_own_mount(data, "2m", copy_from=prepared)
        env = {"YOTSUBA_ALLOW_PRIVATE_HOSTS": "true", "YOTSUBA_TASK_RETRIES": "0"}
        result = run_cli("--data-dir", str(data), "download", str(job), cwd=tmp_path, env=env, wrap=wrap)
    line = one_line(result, 1)  # the store's write or the catalog's, whichever meets the full disk first
    assert line.startswith(("the disk is full", "the catalog cannot be written (database or disk is full)"))
    shutil.rmtree(prepared)


def test_bad_setting_is_one_line_per_problem(tmp_path: Path, job: Path):
    result = run_cli("download", str(job), cwd=tmp_path, env={"YOTSUBA_DOWNLOAD_CONCURRENCY": "0"})
    line = one_line(result, 2)
    assert line.startswith("setting YOTSUBA_DOWNLOAD_CONCURRENCY: Input should be greater than or equal to 1")


def test_sqlite_error_class_is_not_swallowed():
    # a bug (not a user-facing failure) keeps its traceback: only known failures are mapped
    from flows.cli import user_facing

    assert user_facing(sqlite3.IntegrityError("UNIQUE constraint failed")) is None
    assert user_facing(KeyError("x")) is None
