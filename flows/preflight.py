"""Are the servers the settings name reachable? Asked before any long work starts, so that a run never
spends an hour scraping and detecting only to fail at its first MLflow call."""

from __future__ import annotations

import os

import requests

from tasks.errors import Failure
from tasks.redact import redact


class ServerUnreachable(Failure):
    """A server named by the settings did not answer; the message says which, where, and what to do."""


def _get(url: str, timeout: float) -> requests.Response:
    return requests.get(url, timeout=timeout)


def check_mlflow(tracking_uri: str, timeout: float = 5.0) -> None:
    """Only a tracking *server* can be down: a sqlite: or file: store is created on first use."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    url = f"{tracking_uri.rstrip('/')}/health"
    try:
        response = _get(url, timeout)
    except requests.RequestException as exc:
        raise ServerUnreachable(
            f"the MLflow tracking server at {redact(tracking_uri)} cannot be reached ({type(exc).__name__}). "
            "Start it (`mlflow server --host 127.0.0.1 --port 5000`, or `docker compose up mlflow`), or unset "
            "MLFLOW_TRACKING_URI to track into SQLite in the data directory. Nothing was run; nothing stored "
            "was touched."
        ) from None
    if response.status_code != 200:
        raise ServerUnreachable(
            f"the MLflow tracking server at {redact(tracking_uri)} answered HTTP {response.status_code} "
            f"on /health: is it an MLflow server? Nothing was run."
        )


def check_prefect(timeout: float = 5.0) -> None:
    """With PREFECT_API_URL set, every flow run is recorded there: it must answer first. Unset, Prefect
    starts its own local API (ephemeral mode) and there is nothing to check."""
    from prefect.settings import PREFECT_API_URL

    api_url = PREFECT_API_URL.value() or os.environ.get("PREFECT_API_URL")
    if not api_url:
        return
    try:
        response = _get(f"{api_url.rstrip('/')}/health", timeout)
    except requests.RequestException as exc:
        raise ServerUnreachable(
            f"the Prefect server at {redact(api_url)} (PREFECT_API_URL) cannot be reached "
            f"({type(exc).__name__}). Start it (`prefect server start`, or `docker compose up prefect-server`), "
            "or unset PREFECT_API_URL to run on Prefect's local API. Nothing was run; nothing stored was touched."
        ) from None
    if response.status_code != 200:
        raise ServerUnreachable(f"the Prefect server at {redact(api_url)} answered HTTP {response.status_code} "
                                "on /health. Nothing was run.")
