"""The prepare stage: the wiring from settings, and the `prepare` flow that fans detection out over batches.

Detection batches are pure (image bytes + parameters -> crops, boxes, hashes, colour score), so they are
cached on their inputs: a run that crashed after detecting, before recording, gets its batches back on the
rerun. Only the flow writes the catalog (one SQLite writer); the batches return paths and numbers.
"""

from __future__ import annotations

import datetime
import os
import time
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import INPUTS, TASK_SOURCE
from prefect.futures import as_completed
from prefect.states import State

from flows import progress
from flows.artifacts import artifact_key, prepare_artifacts
from flows.jobfiles import load_job_for_flow, one_run_per_job
from flows.runners import task_runner, uses_cluster
from flows.settings import Settings
from tasks import catalog
from tasks.faces import FaceParams
from tasks.jobs import Job
from tasks.prepare import (
    ImageResult,
    ImageTask,
    PrepareSummary,
    add_result,
    detection_todo,
    finish_prepare,
    job_images,
    needs_cascade,
    record_detection,
    run_tasks,
)


@task(retries=2, retry_delay_seconds=[5, 30], task_run_name="cascade")
def fetch_cascade(settings: Settings) -> Path:
    """Network IO (a first download from upstream, checked against its sha256), so it alone retries."""
    return settings.cascade_file()


@task(cache_policy=(INPUTS - "workers" - "batch_index") + TASK_SOURCE, cache_expiration=datetime.timedelta(days=7),
      persist_result=True, task_run_name="detect {batch_index}")
def detect_images(batch: list[ImageTask], cascade_path: Path | None, params: FaceParams, workers: int,
                  batch_index: int) -> list[ImageResult]:
    """Pure: stored images (by path) in, crop paths and numbers out. Over `workers` threads here; on a Dask
    cluster, one batch per worker process."""
    results = []
    for result in run_tasks(batch, cascade_path, params, workers):
        results.append(result)
        progress.report("prepare-image")
    return results


@task(task_run_name="clean {job.name}")
def clean_dataset(settings: Settings, job: Job, summary: PrepareSummary) -> PrepareSummary:
    """Dedupe, grayscale and cross-label checks over the whole job, then the dataset pictures."""
    conn = catalog.connect(settings.catalog_path)
    try:
        finish_prepare(conn, settings.data_dir, job, job_images(conn, job), settings.face_params(),
                       settings.clean_params(), summary)
    finally:
        conn.close()
    return summary


def _crops_exist(results: list[ImageResult]) -> bool:
    return all(Path(path).exists() for result in results for path in result.paths)


def run_prepare(settings: Settings, job: Job, workers: int | None = None) -> PrepareSummary:
    started = time.monotonic()
    summary = PrepareSummary(job.name)
    params, clean = settings.face_params(), settings.clean_params()
    conn = catalog.connect(settings.catalog_path)
    try:
        images = job_images(conn, job)
        summary.images = len(images)
        todo = detection_todo(conn, settings.data_dir, images, params, clean)
        cascade_path = fetch_cascade(settings) if needs_cascade(todo) else None
        size = settings.prepare_batch_size
        batches = [todo[i:i + size] for i in range(0, len(todo), size)]
        cluster = uses_cluster(settings)
        threads = 1 if cluster else (workers or settings.prepare_workers or os.cpu_count() or 1)
        progress.report("prepare", 0, len(todo))
        meter = create_progress_artifact(0.0, key=artifact_key(job.name, "detection-progress"),
                                         description=f"face detection over {len(todo)} new images") \
            if todo else None
        done = 0

        def record(batch: list[ImageTask], results: list[ImageResult]) -> None:
            nonlocal done
            for result in results:
                record_detection(conn, settings.data_dir, params, clean, result)
                add_result(summary, result)
            done += len(batch)
            if cluster:  # in-process batches report each image themselves
                progress.report("prepare", done, len(todo))
            if meter:
                update_progress_artifact(meter, 100.0 * done / len(todo))

        if cluster:  # every batch at once: the cluster spreads them over its workers
            futures = {detect_images.submit(batch, cascade_path, params, 1, index): batch
                       for index, batch in enumerate(batches)}
            for future in as_completed(list(futures)):
                future.wait()  # its final state held by the future (asked of the API, it can still read PENDING)
                record(futures[future], _fresh(future.state, futures[future], cascade_path, params, 1))
        else:  # one batch at a time, each over all cores
            for index, batch in enumerate(batches):
                state = detect_images(batch, cascade_path, params, threads, index, return_state=True)
                record(batch, _fresh(state, batch, cascade_path, params, threads))
    finally:
        conn.close()
    summary = clean_dataset(settings, job, summary)
    summary.seconds = time.monotonic() - started
    prepare_artifacts(summary)
    return summary


def _fresh(state: State, batch: list[ImageTask], cascade_path: Path | None, params: FaceParams,
           workers: int) -> list[ImageResult]:
    """A batch's results, never a stale cached one: a batch from the cache is detected again when its crop
    files are gone (a data directory wiped and rebuilt) or when it holds files that could not be read (no
    verdict: a file restored since must be detected, not handed back as unreadable)."""
    results: list[ImageResult] = state.result()
    if state.name != "Cached" or (_crops_exist(results) and not any(r.transient for r in results)):
        return results
    return detect_images.with_options(refresh_cache=True)(batch, cascade_path, params, workers, -1)


@flow(name="prepare", log_prints=True)
@one_run_per_job
def prepare_flow(job_file: str, workers: int | None = None) -> PrepareSummary:
    """Detect faces in new images, crop them, and rebuild the clean dataset (dedupe, grayscale, cross-label)."""
    settings, job = load_job_for_flow(Path(job_file))
    return run_prepare(settings, job, workers)


def prepare_flow_for(settings: Settings):
    """The prepare flow on the task runner the settings name (local threads and processes, or Dask)."""
    return prepare_flow.with_options(task_runner=task_runner(settings))
