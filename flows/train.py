"""The train stage: the wiring from settings, the `train` flow, and the nightly rule for when to train."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, task

from flows.artifacts import train_artifacts
from flows.jobfiles import load_job_for_flow, one_run_per_job
from flows.libraries import configure_libraries
from flows.settings import Settings
from models.data import DatasetTooSmall
from models.training import TrainResult, train
from tasks import catalog
from tasks.dataset import DatasetView, dataset_view
from tasks.jobs import Job
from tasks.prepare import job_images, restore_face_files
from tasks.redact import redact


def train_job(settings: Settings, job: Job, **overrides: Any) -> TrainResult:
    """Train on the job's clean labelled faces, under the job file's current labels; track it in MLflow."""
    config = dataclasses.replace(settings.train_config(), **overrides)
    view = read_dataset(settings, job, restore=True)
    if not view.records:
        raise DatasetTooSmall(f"the job {job.name} has no labelled faces to train on yet: run scrape, download and "
                              "prepare first (yotsuba run does all three)")
    review = redact(settings.review_link(job.name))
    pictures = sorted((settings.data_dir / "datasets" / job.name).glob("*.png"))
    report = settings.data_dir / "datasets" / job.name / "report.json"
    return train(job.name, settings.data_dir, view.records, config, settings.tracking_uri(), view.digest,
                 dataset_pictures=[*pictures, *([report] if report.exists() else [])],
                 extra_params={**settings_params(settings), "review_corrections": view.corrections},
                 labels=[label.name for label in job.labels], dataset_notes=view.notes(),
                 # which corrections the run saw (all up to this id), and the run's description in the MLflow UI
                 # links to the suspects
                 extra_tags={"review_url": review, "review_last_correction": str(view.last_correction),
                             "mlflow.note.content": f"Likely label errors in this dataset: [{review}]({review})"})


def read_dataset(settings: Settings, job: Job, restore: bool = False) -> DatasetView:
    """The dataset view (tasks.dataset.dataset_view). With `restore`, face crops missing from disk are cut again
    from the stored images first (derived files: training reads them)."""
    conn = catalog.connect(settings.catalog_path)
    try:
        if restore:
            restore_face_files(conn, settings.data_dir, job_images(conn, job), settings.face_params())
        return dataset_view(conn, job)
    finally:
        conn.close()


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
    count for a first run), or corrections were made on the review page since, and the dataset did change.
    Labels under the minimum are left out of training, not a reason to skip it, unless fewer than two labels
    have enough faces."""
    view = read_dataset(settings, job)
    last_correction = view.last_correction
    faces = len(view.records)
    enough = [name for name, count in view.per_label.items() if count >= settings.train_min_per_label]
    short = {name: count for name, count in view.per_label.items() if count < settings.train_min_per_label}
    listed = ", ".join(f"{name} {count}" for name, count in sorted(short.items()))
    if len(enough) < 2:
        return TrainDecision(False, f"too few labelled faces for {listed} (each label needs "
                                    f"{settings.train_min_per_label}, YOTSUBA_TRAIN_MIN_PER_LABEL; a model needs "
                                    "two such labels)", faces, 0)
    left_out = f"; left out, too few faces: {listed}" if short else ""
    need = settings.train_min_new_faces
    last = last_training(settings.tracking_uri(), job.name)
    if last is None:
        if faces >= max(need, 1):
            return TrainDecision(True, f"first training run: {faces} labelled faces{left_out}", faces, faces)
        return TrainDecision(False, f"not trained yet, and only {faces} labelled faces (need {need}, "
                                    "YOTSUBA_TRAIN_MIN_NEW_FACES)", faces, faces)
    before = int(last.get("labelled_faces", "0") or 0)
    new = max(0, faces - before)
    if last.get("dataset_digest") == view.digest:
        return TrainDecision(False, f"the dataset is unchanged since run {last['run_id']} ({faces} labelled "
                                    "faces)", faces, 0, last["run_id"])
    if new < need and last_correction > int(last.get("review_last_correction", "0") or 0):
        return TrainDecision(True, f"corrections from the review page since run {last['run_id']} ({faces} labelled "
                                   "faces)", faces, new, last["run_id"])
    if new < need:
        return TrainDecision(False, f"{new} new labelled faces since run {last['run_id']} ({before} -> {faces}); "
                                    f"training needs {need} (YOTSUBA_TRAIN_MIN_NEW_FACES)", faces, new, last["run_id"])
    return TrainDecision(True, f"{new} new labelled faces since run {last['run_id']} ({before} -> {faces})"
                               f"{left_out}", faces, new, last["run_id"])


@task(task_run_name="train {job.name}")
def train_model(settings: Settings, job: Job, overrides: dict[str, Any]) -> TrainResult:
    """Not retried: a failed training run is a bug or bad data to look at, not a flaky network."""
    return train_job(settings, job, **overrides)


def run_train(settings: Settings, job: Job, overrides: dict[str, Any] | None = None) -> TrainResult:
    result = train_model(settings, job, overrides or {})
    train_artifacts(job.name, result, run_url(settings, result))
    return result


def train_summary(result: TrainResult, url: str) -> dict[str, Any]:
    low, high = result.test.interval
    schedule = result.schedule
    return {"run_id": result.run_id, "run_url": url, "model_uri": result.model_uri,
            "registered_version": result.registered_version, "champion": result.champion,
            "champion_reason": result.champion_reason,
            "metrics": {k: round(v, 4) for k, v in sorted(result.metrics.items())}, "splits": result.splits,
            "test": {"correct": result.test.correct, "faces": result.test.total,
                     "accuracy": round(result.test.accuracy, 4), "ci95": [round(low, 4), round(high, 4)],
                     "described": result.test.describe()},
            "labels": result.labels, "labels_left_out": result.left_out, "labels_few_faces": result.few_faces,
            "schedule": dataclasses.asdict(schedule) | {"steps": schedule.steps} if schedule else None,
            "warnings": result.warnings(), "seconds": round(result.seconds, 1)}


@flow(name="train", log_prints=True)
@one_run_per_job
def train_flow(job_file: str, epochs: int | None = None) -> TrainResult:
    """Train a ResNet18 on the job's clean labelled faces; track the run and the model in MLflow."""
    from flows.preflight import check_mlflow

    configure_libraries()
    settings, job = load_job_for_flow(Path(job_file))
    check_mlflow(settings.tracking_uri(), settings.server_check_timeout)
    return run_train(settings, job, {"epochs": epochs} if epochs else {})
