"""The train stage, wired from settings."""

from __future__ import annotations

import dataclasses

from flows.settings import Settings
from models.data import FaceRecord
from models.training import TrainResult, train
from tasks import catalog
from tasks.jobs import Job
from tasks.prepare import dataset_digest, labelled_faces


def train_job(settings: Settings, job: Job, **overrides) -> TrainResult:
    """Train on the job's clean labelled faces and track the run in MLflow."""
    config = dataclasses.replace(settings.train_config(), **overrides)
    conn = catalog.connect(settings.catalog_path)
    try:
        records = [FaceRecord(path, label, sha) for path, label, sha in labelled_faces(conn, job.name)]
        digest = dataset_digest(conn, job.name)
    finally:
        conn.close()
    pictures = sorted((settings.data_dir / "datasets" / job.name).glob("*.png"))
    report = settings.data_dir / "datasets" / job.name / "report.json"
    return train(job.name, settings.data_dir, records, config, settings.tracking_uri(), digest,
                 dataset_pictures=[*pictures, *([report] if report.exists() else [])],
                 extra_params=settings_params(settings))


def settings_params(settings: Settings) -> dict[str, str]:
    """Every non-secret setting, for MLflow params: what a person needs to reproduce the run."""
    secret = {"reddit_client_id", "reddit_client_secret", "reddit_user_agent", "imgur_client_id",
              "mlflow_tracking_uri"}  # a tracking URI can carry a password
    return {f"setting.{key}": str(value) for key, value in settings.model_dump().items()
            if key not in secret and not key.startswith("train_")}
