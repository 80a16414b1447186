"""The `nightly` flow: scrape, download, prepare, and train only when enough new labelled faces arrived.

Each stage is a subflow (its own run in the Prefect UI, with its own artifacts); the nightly run adds a
summary and, when it trained, a link to the MLflow run. The servers the settings name are checked before
any long work starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.artifacts import artifact_key
from flows.download import download_flow
from flows.jobfiles import load_job_for_flow
from flows.preflight import check_mlflow
from flows.prepare import prepare_flow_for
from flows.scrape import scrape_flow
from flows.train import TrainDecision, decide_training, run_url, train_flow
from models.training import TrainResult
from tasks.download import DownloadSummary
from tasks.prepare import PrepareSummary
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

    def to_dict(self) -> dict[str, Any]:
        from flows.train import train_summary

        return {"job": self.job, "scrape": self.scrape.to_dict(), "download": self.download.to_dict(),
                "prepare": self.prepare.to_dict(),
                "training": {"trained": self.decision.train, "reason": self.decision.reason,
                             "labelled_faces": self.decision.labelled_faces, "new_faces": self.decision.new_faces,
                             **(train_summary(self.train, self.run_url or "") if self.train else {})}}


@flow(name="nightly", log_prints=True)
def nightly(job_file: str = "examples/gotoubun.yaml", train: bool = True) -> NightlyResult:
    """Rescrape the job's sources, fetch and prepare what is new, and retrain when enough new faces came."""
    settings, job = load_job_for_flow(Path(job_file))
    if train:  # before an hour of scraping, not after it
        check_mlflow(settings.tracking_uri(), settings.server_check_timeout)
    scraped = scrape_flow(job_file)
    downloaded = download_flow(job_file)
    prepared = prepare_flow_for(settings)(job_file)
    decision = decide_training(settings, job) if train else TrainDecision(False, "training was not asked for "
                                                                                 "(train=false)", 0, 0)
    result = NightlyResult(job.name, scraped, downloaded, prepared, decision)
    if decision.train:
        print(f"training: {decision.reason}")
        result.train = train_flow(job_file)
        result.run_url = run_url(settings, result.train)
    else:
        print(f"training skipped: {decision.reason}")
    create_markdown_artifact(nightly_report(result), key=artifact_key(job.name, "nightly"),
                             description=f"nightly {job.name}")
    return result


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
    if result.scrape.errors:
        lines += ["", "## sources that failed", *[f"- {e}" for e in result.scrape.errors]]
    return "\n".join(lines)
