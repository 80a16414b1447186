"""What a person wants to see in the Prefect UI after a run: tables per label, failures by reason, and a
link to the MLflow run. Called inside flows only."""

from __future__ import annotations

import re
from typing import Any

from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact


def artifact_key(*parts: str) -> str:
    """Prefect keys allow lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


def scrape_artifacts(summary: Any) -> None:
    rows = [{"label": s.label, "source": s.kind, "subreddit": f"r/{s.subreddit}", "posts read": s.posts_read,
             "new candidates": s.new_candidates, "error": s.error or ""} for s in summary.sources]
    create_table_artifact(rows, key=artifact_key(summary.job, "scrape"),
                          description=f"**scrape {summary.job}**: {summary.new_candidates} new candidates, "
                                      f"{summary.rate_limited} rate-limited requests waited out")
    if summary.skipped or summary.errors:
        _reasons(summary.job, "scrape-skipped", "posts and links skipped, by reason", dict(summary.skipped),
                 summary.errors)


def download_artifacts(summary: Any) -> None:
    data = summary.to_dict()
    rows = [{"status": status, "candidates": count} for status, count in data["candidates"].items()]
    create_table_artifact(rows, key=artifact_key(summary.job, "download"),
                          description=f"**download {summary.job}**: {summary.urls} URLs, "
                                      f"{summary.bytes / 1e6:.1f} MB in {summary.seconds:.1f} s")
    failures = {f"rejected: {k}": v for k, v in data["rejected"].items()}
    failures.update({f"failed: {k}": v for k, v in data["failed"].items()})
    if failures:
        _reasons(summary.job, "download-failures", "downloads not kept, by reason", failures)


def prepare_artifacts(summary: Any) -> None:
    columns = ("labelled", "unlabelled", "duplicate", "grayscale", "cross_label")
    rows = [{"label": label, **{c: counts.get(c, 0) for c in columns}}
            for label, counts in sorted(summary.per_label.items())]
    create_table_artifact(rows, key=artifact_key(summary.job, "faces"),
                          description=f"**faces of {summary.job}**: {summary.processed} new images detected, "
                                      f"{summary.faces_found} faces, {summary.unreadable} unreadable, "
                                      f"{summary.read_failed} to read again next run; dataset "
                                      f"{summary.dataset_digest[:12]}")


def train_artifacts(job: str, result: Any, run_url: str) -> None:
    create_link_artifact(run_url, link_text=f"MLflow run {result.run_id}", key=artifact_key(job, "mlflow-run"),
                         description=f"**{job}**: test {result.test.describe()}; "
                                     f"model version {result.registered_version}: {result.champion_reason}"
                                     + "".join(f"; {line}" for line in result.warnings()))


def _reasons(job: str, key: str, title: str, counts: dict[str, int], errors: list[str] | None = None) -> None:
    lines = [f"## {job}: {title}", "", "| reason | count |", "|---|---:|"]
    lines += [f"| {reason} | {count} |" for reason, count in sorted(counts.items(), key=lambda kv: -kv[1])]
    if errors:
        lines += ["", "### errors", *[f"- {error}" for error in errors]]
    create_markdown_artifact("\n".join(lines), key=artifact_key(job, key))
