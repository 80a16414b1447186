"""The prepare stage, wired from settings."""

from __future__ import annotations

from flows.settings import Settings
from tasks import catalog
from tasks.jobs import Job
from tasks.prepare import PrepareSummary, ProgressCallback, prepare_job


def prepare(settings: Settings, job: Job, on_progress: ProgressCallback | None = None,
            workers: int | None = None) -> PrepareSummary:
    """Detect faces in new images of `job`, then rebuild its clean dataset view and pictures."""
    conn = catalog.connect(settings.catalog_path)
    try:
        # The cascade is fetched (and checked) only when some image needs detection.
        return prepare_job(conn, settings.data_dir, job, settings.cascade_file, settings.face_params(),
                           settings.clean_params(),
                           workers=workers if workers is not None else settings.prepare_workers,
                           on_progress=on_progress)
    finally:
        conn.close()
