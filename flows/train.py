"""The train stage: the wiring from settings, the `train` flow, and the nightly rule for when to train."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, task

from flows.artifacts import train_artifacts
from flows.jobfiles import load_job_for_flow, one_run_per_job
from flows.settings import Settings
from models.data import DatasetTooSmall, FaceRecord
from models.training import TrainResult, train
from tasks import catalog
from tasks.corrections import in_effect, last_id
from tasks.jobs import Job
from tasks.prepare import dataset_digest, job_images, labelled_faces, restore_face_files
from tasks.redact import redact


def train_job(settings: Settings, job: Job, **overrides: Any) -> TrainResult:
    """Train on the job's clean labelled faces and track the run in MLflow."""
    config = dataclasses.replace(settings.train_config(), **overrides)
    conn = catalog.connect(settings.catalog_path)
    try:
        restore_face_files(conn, settings.data_dir, job_images(conn, job), settings.face_params())  # derived files
        records = [FaceRecord(path, label, sha) for path, label, sha in labelled_faces(conn, job.name)]
        digest = dataset_digest(conn, job.name)
        corrections, last_correction = len(in_effect(conn, job.name)), last_id(conn, job.name)
    finally:
        conn.close()
    if not records:
        raise DatasetTooSmall(f"the job {job.name} has no labelled faces to train on yet: run scrape, download and "
                              "prepare first (yotsuba run does all three)")
    review = redact(settings.review_link(job.name))
    pictures = sorted((settings.data_dir / "datasets" / job.name).glob("*.png"))
    report = settings.data_dir / "datasets" / job.name / "report.json"
    return train(job.name, settings.data_dir, records, config, settings.tracking_uri(), digest,
                 dataset_pictures=[*pictures, *([report] if report.exists() else [])],
                 extra_params={**settings_params(settings), "review_corrections": corrections},
                 # which corrections the run saw (all up to this id), and the run's description in the MLflow UI
                 # links to the suspects
                 extra_tags={"review_url": review, "review_last_correction": str(last_correction),
                             "mlflow.note.content": f"Likely label errors in this dataset: [{review}]({review})"})


def settings_params(settings: Settings) -> dict[str, str]:
    """Every non-secret setting, for MLflow params: what a person needs to reproduce the run."""
    secret = {"reddit_client_id", "reddit_client_secret", "reddit_user_agent", "imgur_client_id",
              "mlflow_tracking_uri", "mlflow_ui_url", "dask_address", "review_url"}  # URLs can carry a password
    return {f"setting.{key}": str(value) for key, value in settings.model_dump().items()
            if key not in secret and not key.startswith("train_")}


def run_url(settings: Settings, result: TrainResult) -> str:
    from tasks.redact import redact

    return f"{redact(settings.mlflow_ui())}/#/experiments/{result.experiment_id}/runs/{result.run_id}"


@dataclass
class TrainDecision:
    train: bool
    reason: str
    labelled_faces: int
    new_faces: int
    last_run_id: str | None = None


def last_training(tracking_uri: str, job: str) -> dict[str, str] | None:
    """Tags of the job's newest finished training run, or None when it has never been trained."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(job)
    if experiment is None:
        return None
    runs = client.search_runs([experiment.experiment_id], filter_string="attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return {"run_id": runs[0].info.run_id, **runs[0].data.tags} if runs else None


def decide_training(settings: Settings, job: Job) -> TrainDecision:
    """Train when at least `train_min_new_faces` labelled faces arrived since the last run (all of them
    count for a first run), or corrections were made on the review page since, and the dataset did change."""
    conn = catalog.connect(settings.catalog_path)
    try:
        per_label = Counter(label for _, label, _ in labelled_faces(conn, job.name))
        digest = dataset_digest(conn, job.name)
        last_correction = last_id(conn, job.name)
    finally:
        conn.close()
    faces = sum(per_label.values())
    short = {label.name: per_label.get(label.name, 0) for label in job.labels
             if per_label.get(label.name, 0) < settings.train_min_per_label}
    if short:
        listed = ", ".join(f"{name} {count}" for name, count in sorted(short.items()))
        return TrainDecision(False, f"too few labelled faces for {listed} (each label needs "
                                    f"{settings.train_min_per_label}, YOTSUBA_TRAIN_MIN_PER_LABEL)", faces, 0)
    need = settings.train_min_new_faces
    last = last_training(settings.tracking_uri(), job.name)
    if last is None:
        if faces >= max(need, 1):
            return TrainDecision(True, f"first training run: {faces} labelled faces", faces, faces)
        return TrainDecision(False, f"not trained yet, and only {faces} labelled faces (need {need}, "
                                    "YOTSUBA_TRAIN_MIN_NEW_FACES)", faces, faces)
    before = int(last.get("labelled_faces", "0") or 0)
    new = max(0, faces - before)
    if last.get("dataset_digest") == digest:
        return TrainDecision(False, f"the dataset is unchanged since run {last['run_id']} ({faces} labelled "
                                    "faces)", faces, 0, last["run_id"])
    if new < need and last_correction > int(last.get("review_last_correction", "0") or 0):
        return TrainDecision(True, f"corrections from the review page since run {last['run_id']} ({faces} labelled "
                                   "faces)", faces, new, last["run_id"])
    if new < need:
        return TrainDecision(False, f"{new} new labelled faces since run {last['run_id']} ({before} -> {faces}); "
                                    f"training needs {need} (YOTSUBA_TRAIN_MIN_NEW_FACES)", faces, new, last["run_id"])
    return TrainDecision(True, f"{new} new labelled faces since run {last['run_id']} ({before} -> {faces})",
                         faces, new, last["run_id"])


@task(task_run_name="train {job.name}")
def train_model(settings: Settings, job: Job, overrides: dict[str, Any]) -> TrainResult:
    """Not retried: a failed training run is a bug or bad data to look at, not a flaky network."""
    return train_job(settings, job, **overrides)


def run_train(settings: Settings, job: Job, overrides: dict[str, Any] | None = None) -> TrainResult:
    result = train_model(settings, job, overrides or {})
    train_artifacts(job.name, result, run_url(settings, result))
    return result


def train_summary(result: TrainResult, url: str) -> dict[str, Any]:
    return {"run_id": result.run_id, "run_url": url, "model_uri": result.model_uri,
            "registered_version": result.registered_version, "champion": result.champion,
            "champion_reason": result.champion_reason,
            "metrics": {k: round(v, 4) for k, v in sorted(result.metrics.items())}, "splits": result.splits,
            "seconds": round(result.seconds, 1)}


@flow(name="train", log_prints=True)
@one_run_per_job
def train_flow(job_file: str, epochs: int | None = None) -> TrainResult:
    """Train a ResNet18 on the job's clean labelled faces; track the run and the model in MLflow."""
    from flows.preflight import check_mlflow

    settings, job = load_job_for_flow(Path(job_file))
    check_mlflow(settings.tracking_uri(), settings.server_check_timeout)
    return run_train(settings, job, {"epochs": epochs} if epochs else {})
