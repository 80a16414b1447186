"""The product as people use it: a real Prefect server, a process work pool and worker, `prefect deploy`,
`prefect deployment run 'nightly/nightly-rescrape' --watch` against the fake Reddit serving real faces, and a
real MLflow tracking server holding what the run produced."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from fakes.demo import demo_job_for_images, seed_images
from fakes.reddit import FakeReddit
from tests.scenes import ANIMEFACE, CASCADE

pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.skipif(not (ANIMEFACE / "labels.csv").exists() or not CASCADE.exists(),
                                 reason=f"needs the real faces in {ANIMEFACE} and the cascade at {CASCADE}")]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LABELS = ("hatsune_miku", "suzumiya_haruhi", "shana")
PER_LABEL = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, log: Path, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{url}: the server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer in {seconds} s:\n{log.read_text()[-3000:]}")


def start(args: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT) -> subprocess.Popen:
    handle = log.open("w")
    return subprocess.Popen(args, env=env, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def prefect(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([str(BIN / "prefect"), *args], env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=timeout)
    return result


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("stack")
    images = tmp / "images"
    import csv

    with open(ANIMEFACE / "labels.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["label"] in LABELS]
    for label in LABELS:
        (images / label).mkdir(parents=True)
        for row in [r for r in rows if r["label"] == label][:PER_LABEL]:
            shutil.copy(ANIMEFACE / row["path"], images / label / Path(row["path"]).name)
    job = demo_job_for_images(images, name="animeface")
    job_file = tmp / "animeface.yaml"
    import yaml

    job_file.write_text(yaml.safe_dump(job.model_dump(mode="json", exclude_none=True), sort_keys=False))

    prefect_port, mlflow_port = free_port(), free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("YOTSUBA_", "PREFECT_", "MLFLOW_"))}
    base.update({"PREFECT_HOME": str(tmp / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                 "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5"})
    processes: list[subprocess.Popen] = []
    with FakeReddit() as fake:
        planted = seed_images(fake, job, images)
        try:
            server = start([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                            str(prefect_port)], base, tmp / "prefect-server.log")
            processes.append(server)
            mlflow = start([str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mlflow_port),
                            "--backend-store-uri", f"sqlite:///{tmp / 'mlflow.db'}",
                            "--artifacts-destination", str(tmp / "mlartifacts"), "--workers", "1"],
                           base, tmp / "mlflow-server.log")
            processes.append(mlflow)
            wait_for(f"http://127.0.0.1:{prefect_port}/api/health", server, tmp / "prefect-server.log")
            wait_for(f"http://127.0.0.1:{mlflow_port}/health", mlflow, tmp / "mlflow-server.log")
            env = {**base,
                   "PREFECT_API_URL": f"http://127.0.0.1:{prefect_port}/api",
                   "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
                   "YOTSUBA_APP_DIR": str(ROOT),
                   "YOTSUBA_DATA_DIR": str(tmp / "data"),
                   "YOTSUBA_CASCADE_PATH": str(CASCADE),
                   "YOTSUBA_REDDIT_CLIENT_ID": fake.client_id,
                   "YOTSUBA_REDDIT_CLIENT_SECRET": fake.client_secret,
                   "YOTSUBA_REDDIT_BASE_URL": fake.url,
                   "YOTSUBA_IMGUR_CLIENT_ID": fake.imgur_client_id,
                   "YOTSUBA_IMGUR_API_URL": fake.url,
                   "YOTSUBA_ALLOW_PRIVATE_HOSTS": "true",
                   # a small, quick training: this tests the loop, not the model
                   "YOTSUBA_FACE_SIZE": "64", "YOTSUBA_TRAIN_EPOCHS": "3", "YOTSUBA_TRAIN_MIN_STEPS": "8",
                   "YOTSUBA_TRAIN_BATCH_SIZE": "16",
                   "YOTSUBA_TRAIN_MIN_PER_LABEL": "10", "YOTSUBA_TRAIN_MIN_NEW_FACES": "5",
                   "YOTSUBA_PREPARE_WORKERS": "1"}
            created = prefect("work-pool", "create", "yotsuba", "--type", "process", env=env, timeout=120)
            assert created.returncode == 0, created.stdout + created.stderr
            deployed = prefect("--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml",
                               env=env, timeout=300)
            assert deployed.returncode == 0, deployed.stdout + deployed.stderr
            worker = start([str(BIN / "prefect"), "worker", "start", "--pool", "yotsuba", "--limit", "1"], env,
                           tmp / "worker.log")
            processes.append(worker)
            yield {"env": env, "job_file": job_file, "tmp": tmp, "planted": planted, "fake": fake,
                   "mlflow": env["MLFLOW_TRACKING_URI"], "api": env["PREFECT_API_URL"]}
        finally:
            for process in reversed(processes):  # the worker before the servers
                stop(process)


def run_nightly(stack: dict) -> subprocess.CompletedProcess:
    return prefect("deployment", "run", "nightly/nightly-rescrape", "--param", f"job_file={stack['job_file']}",
                   "--watch", "--watch-timeout", "540", env=stack["env"], timeout=600)


def latest_artifact(stack: dict, key: str) -> str:
    """An artifact of the latest run, read back from the Prefect server as a person's browser would."""
    response = requests.post(f"{stack['api']}/artifacts/latest/filter",
                             json={"artifacts": {"key": {"any_": [key]}}}, timeout=10)
    response.raise_for_status()
    return response.json()[0]["data"]


def nightly_report(stack: dict) -> str:
    return latest_artifact(stack, "animeface-nightly")


def test_nightly_deployment_runs_tracks_and_skips_when_nothing_is_new(stack: dict):
    from mlflow import MlflowClient

    first = run_nightly(stack)
    log = (stack["tmp"] / "worker.log").read_text()
    assert first.returncode == 0, first.stdout + first.stderr + log[-5000:]
    assert "Completed" in first.stdout

    client = MlflowClient(stack["mlflow"])
    experiment = client.get_experiment_by_name("animeface")
    assert experiment is not None, "the nightly run did not create the job's experiment"
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert {"train/loss", "test/acc"} <= set(run.data.metrics)
    # 90 faces leave a validation split under YOTSUBA_TRAIN_MIN_VAL_FACES: it is trained on, and the run says so
    assert run.data.params["val_folded_into_train"] == "True" and "val/loss" not in run.data.metrics
    assert run.data.tags.get("prefect.flow_run_id"), "the MLflow run does not name the Prefect flow run"
    # tight crops, padded and checked by the cascade (87% found), then deduplicated
    assert int(run.data.tags["labelled_faces"]) >= 0.5 * len(LABELS) * PER_LABEL
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"checkpoints", "predictions", "test", "dataset"} <= artifacts
    # no validation split to pick a best epoch by: the weights at the end of the schedule
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")] == ["checkpoints/last.ckpt"]
    grids = [a.path for a in client.list_artifacts(run.info.run_id, "predictions")]
    assert any(path.endswith(".png") for path in grids)
    # Served through the tracking server: the files are in its artifact store, not the worker's data dir.
    assert list((stack["tmp"] / "mlartifacts").rglob("last.ckpt"))
    versions = client.search_model_versions("name='animeface-classifier'")
    assert [int(v.version) for v in versions] == [1]
    assert "train | trained" in nightly_report(stack)
    per_label = {row["label"]: row for row in json.loads(latest_artifact(stack, "animeface-per-label"))}
    assert set(per_label) == set(LABELS)
    assert sum(row["new candidates"] for row in per_label.values()) == sum(stack["planted"].values())
    assert sum(row["labelled faces"] for row in per_label.values()) == int(run.data.tags["labelled_faces"])
    link = latest_artifact(stack, "animeface-mlflow-run")  # the link a person follows from the Prefect UI
    assert f"{stack['mlflow']}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}" in link
    secrets = (stack["env"]["YOTSUBA_REDDIT_CLIENT_SECRET"], stack["env"]["YOTSUBA_IMGUR_CLIENT_ID"])
    assert not any(secret in str(value) for secret in secrets for value in run.data.params.values())

    second = run_nightly(stack)
    assert second.returncode == 0, second.stdout + second.stderr
    report = nightly_report(stack)
    assert "train | skipped" in report and "unchanged" in report, report
    assert len(client.search_runs([experiment.experiment_id])) == 1, "the second run trained again"


def test_the_cron_schedule_has_created_a_scheduled_run(stack: dict):
    deadline = time.monotonic() + 90
    scheduled: list[dict] = []
    while time.monotonic() < deadline and not scheduled:
        deployment = requests.get(f"{stack['api']}/deployments/name/nightly/nightly-rescrape", timeout=10).json()
        scheduled = requests.post(f"{stack['api']}/flow_runs/filter", timeout=10, json={
            "deployments": {"id": {"any_": [deployment["id"]]}},
            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}}).json()
        time.sleep(2)
    assert scheduled, "the scheduler created no run for the nightly cron"
    starts = {run["expected_start_time"][11:16] for run in scheduled}
    assert starts == {"03:00"}, starts  # the cron's 03:00, in UTC as the deployment says


def test_yotsuba_serve_registers_a_scheduled_deployment_and_runs_it(stack: dict):
    """`yotsuba serve`: one process, no work pool or worker, the schedule kept by the server."""
    serve_log = stack["tmp"] / "serve.log"
    server = start([str(BIN / "yotsuba"), "serve", str(stack["job_file"]), "--name", "served-nightly",
                    "--cron", "30 4 * * *", "--timezone", "Europe/Paris"], stack["env"], serve_log)
    try:
        deadline, deployment = time.monotonic() + 120, None
        while time.monotonic() < deadline and deployment is None:
            response = requests.get(f"{stack['api']}/deployments/name/nightly/served-nightly", timeout=10)
            deployment = response.json() if response.status_code == 200 else None
            time.sleep(1)
        assert deployment is not None, serve_log.read_text()[-3000:]
        schedule = deployment["schedules"][0]["schedule"]
        assert (schedule["cron"], schedule["timezone"]) == ("30 4 * * *", "Europe/Paris")
        assert deployment["parameters"] == {"job_file": str(stack["job_file"].resolve())}
        ran = prefect("deployment", "run", "nightly/served-nightly", "--param", "train=false", "--watch",
                      "--watch-timeout", "300", env=stack["env"], timeout=360)
        assert ran.returncode == 0, ran.stdout + serve_log.read_text()[-3000:]
    finally:
        stop(server)
