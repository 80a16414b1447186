"""The `nightly` flow: scrape, download, prepare, and train only when enough new labelled faces arrived.

Each stage is a subflow (its own run in the Prefect UI, with its own artifacts); the nightly run adds a
summary and, when it trained, a link to the MLflow run. The servers the settings name are checked before
any long work starts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.artifacts import artifact_key
from flows.download import download_flow
from flows.jobfiles import load_job_for_flow, one_run_per_job
from flows.libraries import configure_libraries
from flows.preflight import check_mlflow
from flows.prepare import prepare_flow_for
from flows.scrape import scrape_flow
from flows.settings import Settings
from flows.train import TrainDecision, decide_training, run_url, train_flow
from models.training import TrainResult
from tasks import catalog
from tasks.download import DownloadSummary
from tasks.prepare import PrepareSummary
from tasks.redact import redact
from tasks.scrape import ScrapeSummary


@dataclass
class NightlyResult:
    job: str
    scrape: ScrapeSummary
    download: DownloadSummary
    prepare: PrepareSummary
    decision: TrainDecision
    train: TrainResult | None = None
    run_url: str | None = None
    review_url: str | None = None  # the review page's likely label errors for the job

    def to_dict(self) -> dict[str, Any]:
        from flows.train import train_summary

        return {"job": self.job, "scrape": self.scrape.to_dict(), "download": self.download.to_dict(),
                "prepare": self.prepare.to_dict(), "review_url": self.review_url,
                "training": {"trained": self.decision.train, "reason": self.decision.reason,
                             "labelled_faces": self.decision.labelled_faces, "new_faces": self.decision.new_faces,
                             **(train_summary(self.train, self.run_url or "") if self.train else {})}}


@flow(name="nightly", log_prints=True)
@one_run_per_job  # its subflows take the lock it holds
def nightly(job_file: str = "examples/gotoubun.yaml", train: bool = True) -> NightlyResult:
    """Rescrape the job's sources, fetch and prepare what is new, and retrain when enough new faces came."""
    configure_libraries()
    settings, job = load_job_for_flow(Path(job_file))
    started = time.time()
    if train:  # before an hour of scraping, not after it
        check_mlflow(settings.tracking_uri(), settings.server_check_timeout)
    scraped = scrape_flow(job_file)
    downloaded = download_flow(job_file)
    prepared = prepare_flow_for(settings)(job_file)
    decision = decide_training(settings, job) if train else TrainDecision(False, "training was not asked for "
                                                                                 "(train=false)", 0, 0)
    result = NightlyResult(job.name, scraped, downloaded, prepared, decision,
                           review_url=redact(settings.review_link(job.name)))
    if decision.train:
        print(f"training: {decision.reason}")
        result.train = train_flow(job_file)
        result.run_url = run_url(settings, result.train)
    else:
        print(f"training skipped: {decision.reason}")
    create_table_artifact(per_label_rows(settings, result, started), key=artifact_key(job.name, "per-label"),
                          description=f"**nightly {job.name}**, per label: what this run added")
    create_markdown_artifact(nightly_report(result), key=artifact_key(job.name, "nightly"),
                             description=f"nightly {job.name}")
    return result


def per_label_rows(settings: Settings, result: NightlyResult, started: float) -> list[dict[str, Any]]:
    """New candidates, new images and the dataset's faces, per label."""
    conn = catalog.connect(settings.catalog_path)
    try:
        downloaded = dict(conn.execute(
            """SELECT c.label, COUNT(*) FROM downloads d JOIN candidates c ON c.id = d.candidate_id
               WHERE c.job = ? AND d.status = 'downloaded' AND d.fetched_at >= ? GROUP BY c.label""",
            (result.job, started)).fetchall())
    finally:
        conn.close()
    new = result.scrape.new_by_label()
    labels = sorted(set(new) | set(downloaded) | set(result.prepare.per_label))
    return [{"label": label, "new candidates": sum(new.get(label, {}).values()),
             "new images": downloaded.get(label, 0),
             "labelled faces": result.prepare.per_label.get(label, {}).get("labelled", 0),
             "unlabelled faces": result.prepare.per_label.get(label, {}).get("unlabelled", 0),
             "removed (duplicate, grayscale, cross-label)": sum(
                 result.prepare.per_label.get(label, {}).get(k, 0) for k in ("duplicate", "grayscale", "cross_label"))}
            for label in labels]


def nightly_report(result: NightlyResult) -> str:
    d = result.download.to_dict()["candidates"]
    lines = [
        f"# nightly: {result.job}", "",
        "| stage | result |", "|---|---|",
        f"| scrape | {result.scrape.new_candidates} new candidates, {len(result.scrape.errors)} sources failed |",
        f"| download | {d['downloaded']} new images, {d['already_had'] + d['duplicate']} already stored, "
        f"{d['failed']} failed (retried next run) |",
        f"| prepare | {result.prepare.processed} images detected, {result.prepare.faces_found} faces |",
        f"| train | {'trained' if result.train else 'skipped'}: {result.decision.reason} |",
    ]
    if result.train is not None:
        acc = result.train.metrics.get("test/acc")
        lines += ["", f"MLflow run: [{result.train.run_id}]({result.run_url})"
                      + (f", test accuracy {acc:.3f}" if acc is not None else "")
                      + f"; model version {result.train.registered_version}: {result.train.champion_reason}"]
    if result.review_url:
        lines += ["", f"Likely label errors, to review (`yotsuba review JOB_FILE`): [{result.review_url}]"
                      f"({result.review_url})"]
    if result.scrape.errors:
        lines += ["", "## sources that failed", *[f"- {e}" for e in result.scrape.errors]]
    return "\n".join(lines)
