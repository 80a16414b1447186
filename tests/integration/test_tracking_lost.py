"""A real `mlflow server` killed in the middle of training: the run fails within seconds with one line, the
checkpoint stays on disk, and the run is marked FAILED once the server answers again."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from flows.libraries import MLFLOW_ENVIRONMENT
from flows.settings import Settings
from models.training import TrackingLost, mark_orphaned_runs_failed, train
from tests.integration.test_orchestration import BIN, free_port, start, stop, wait_for
from tests.integration.test_train import animeface_records, needs_animeface
from tests.scenes import ANIMEFACE

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def mlflow_server(tmp: Path, port: int, log: str):
    process = start([str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
                     "--backend-store-uri", f"sqlite:///{tmp / 'server.db'}", "--artifacts-destination",
                     str(tmp / "server-artifacts"), "--workers", "1"], dict(os.environ), tmp / log)
    wait_for(f"http://127.0.0.1:{port}/health", process, tmp / log)
    return process


@needs_animeface
def test_a_tracking_server_dying_mid_training_fails_fast_and_keeps_the_checkpoint(tmp_path: Path,
                                                                                   monkeypatch: pytest.MonkeyPatch):
    for key, value in MLFLOW_ENVIRONMENT.items():  # what the CLI and the flows set at the edge
        monkeypatch.setenv(key, value)
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = mlflow_server(tmp_path, port, "server-1.log")
    work = tmp_path / "work"
    config = dataclasses.replace(Settings(_env_file=None).train_config(), face_size=32, min_steps=2000, epochs=1,
                                 accelerator="cpu", min_per_label=5, min_test_faces=1)
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["result"] = train("lost", ANIMEFACE, animeface_records(labels=3, per_label=15), config, uri,
                                      "d" * 64, work_dir=work)
        except BaseException as exc:  # noqa: BLE001 - the test inspects whatever came out
            outcome["error"] = exc
        outcome["ended"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    try:
        thread.start()
        deadline = time.monotonic() + 600
        while not list(work.glob("checkpoints/lost/*/last.ckpt")) and thread.is_alive():
            assert time.monotonic() < deadline, "no checkpoint after 10 minutes"
            time.sleep(0.5)
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        killed = time.monotonic()
        thread.join(timeout=300)
        assert not thread.is_alive(), "training still hangs 5 minutes after the tracking server died"
    finally:
        stop(server)

    error = outcome.get("error")
    assert isinstance(error, TrackingLost), outcome
    assert outcome["ended"] - killed < 120  # bounded retries: seconds, where the defaults took 12.6 minutes
    message = str(error)
    assert "\n" not in message and "stopped answering during training" in message
    kept = Path(message.split("the checkpoint is kept in ")[1].split(";")[0])
    assert kept.exists() and kept.stat().st_size > 1_000_000  # a ResNet18's weights
    assert "the next `yotsuba train` marks the run FAILED" in message

    server = mlflow_server(tmp_path, port, "server-2.log")
    try:
        import mlflow
        from mlflow import MlflowClient

        run_id = kept.parent.name
        assert MlflowClient(uri).get_run(run_id).info.status == "RUNNING"
        mlflow.set_tracking_uri(uri)
        assert mark_orphaned_runs_failed(work, "lost") == [run_id]  # what the next training run does first
        assert MlflowClient(uri).get_run(run_id).info.status == "FAILED"
        assert kept.exists() and not (kept.parent / "RUN_NOT_ENDED").exists()
    finally:
        stop(server)
